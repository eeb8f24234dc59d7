"""Limits and errors everywhere: bounded input, capped pages, RFC 9457 for every failure,
a request id on every response and in every log line.

The app is the real one on SQLite, plus a few routes added here only: one that raises,
one that logs, one list and one that takes a timestamp, to check what the app gives
every route (the 500 mapping, the logs, the shared pagination and timestamp types).
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, FastAPI, Query
from fastapi.testclient import TestClient

from api.deps import Instant, Page
from api.observability import RequestIdFilter, configure_logging, json_formatter
from tests.api.conftest import fields_of, problem_of
from tests.hardening.conftest import ALICE, STAFF, World, make_app

probes = APIRouter(prefix="/test-only")
log = logging.getLogger("eventshop.test-only")
ITEMS = list(range(1, 1201))


@probes.get("/boom")
def boom() -> None:
    raise RuntimeError("password=hunter2 at /srv/eventshop/secret.py line 7")


@probes.get("/chatty")
def chatty() -> dict[str, str]:
    log.warning("a line from inside a route")
    return {"said": "something"}


@probes.get("/list")
def listing(page: Page) -> dict[str, Any]:
    keyset = page.keyset("numbers", 1)
    after = keyset.after[0] if keyset.after else 0
    rows = [{"n": n} for n in ITEMS if n > after][: keyset.fetch]
    return keyset.page(rows, key=lambda row: [row["n"]], shape=lambda row: row)


@probes.get("/since")
def since(moment: Annotated[Instant, Query()]) -> dict[str, str]:
    return {"moment": moment.isoformat()}


@pytest.fixture
def app(sqlite_url: str, tmp_path: Path) -> FastAPI:
    the_app = make_app(sqlite_url, tmp_path)
    the_app.include_router(probes)
    return the_app


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def world(client: TestClient) -> World:
    return World(client)


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Every log record, formatted as `eventshop serve` formats it, while the test runs."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(json_formatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield buffer
    root.removeHandler(handler)
    root.setLevel(level)


def records(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


# --- errors everywhere -----------------------------------------------------------------------


def test_an_unknown_route_is_a_404_problem(client: TestClient) -> None:
    response = client.get("/no/such/thing", headers=STAFF)
    assert problem_of(response, 404)["instance"] == "/no/such/thing"
    assert response.headers["X-Request-ID"]


def test_a_wrong_method_is_a_405_problem(client: TestClient) -> None:
    response = client.put("/api/carts", json={}, headers=ALICE)
    problem_of(response, 405)
    assert response.headers["Allow"] == "POST"


def test_a_crash_is_a_500_that_leaks_nothing(client: TestClient, log_lines: io.StringIO) -> None:
    response = client.get("/test-only/boom", headers={"X-Request-ID": "crash-1"})
    problem = problem_of(response, 500)
    for secret in ("hunter2", "RuntimeError", "secret.py", "Traceback", "/srv/"):
        assert secret not in response.text
    assert set(problem) == {"type", "title", "status", "detail", "instance"}
    assert "crash-1" in problem["detail"]
    assert response.headers["X-Request-ID"] == "crash-1"
    # The details go to the log, under the id the client was given.
    (error,) = [r for r in records(log_lines) if r["level"] == "ERROR"]
    assert error["request_id"] == "crash-1"
    assert "hunter2" in error["exc_info"]


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status"),
    [
        ("GET", "/health/live", None, {}, 200),
        ("GET", "/api/products/NOPE", None, STAFF, 404),
        ("GET", "/api/products/NOPE", None, {}, 401),
        ("GET", "/api/stock/NOPE", None, ALICE, 403),
        ("DELETE", "/api/carts", None, ALICE, 405),
        ("POST", "/api/products", "{not json", STAFF, 400),
        ("POST", "/api/products", {"sku": "x"}, STAFF, 422),
        ("POST", "/api/products", "x" * 70_000, STAFF, 413),
        ("GET", "/test-only/boom", None, {}, 500),
        ("GET", "/metrics", None, {}, 200),
    ],
)
def test_every_answer_has_a_request_id(
    client: TestClient, method: str, path: str, body: Any, headers: dict[str, str], status: int
) -> None:
    content = body if isinstance(body, str) else None
    as_json = body if not isinstance(body, str) else None
    response = client.request(
        method,
        path,
        json=as_json,
        content=content,
        headers={**headers, "Content-Type": "application/json"},
    )
    assert response.status_code == status
    assert len(response.headers["X-Request-ID"]) == 32
    if status >= 400:
        problem_of(response, status)


def test_every_log_line_is_json_with_the_request_id(
    client: TestClient, world: World, log_lines: io.StringIO
) -> None:
    answers = [
        client.get("/test-only/chatty", headers={"X-Request-ID": "chatty-1"}),
        client.get("/test-only/boom"),
        client.post("/api/products", json={"sku": "A"}, headers=STAFF),
        client.get("/nowhere"),
    ]
    ids = {response.headers["X-Request-ID"] for response in answers}
    # The test's own HTTP client logs too; the server's lines are the ones that count.
    lines = [line for line in records(log_lines) if line["logger"] != "httpx"]
    assert lines
    for line in lines:
        assert {"timestamp", "level", "logger", "message", "request_id"} <= line.keys()
        assert line["request_id"] in ids, line
    # From inside a route (a worker thread) as well as from the middleware.
    said = [line for line in lines if line["message"] == "a line from inside a route"]
    assert [line["request_id"] for line in said] == ["chatty-1"]
    access = [line for line in lines if line["logger"] == "eventshop.access"]
    assert {line["request_id"] for line in access} == ids
    assert {line["route"] for line in access} >= {"/test-only/chatty", "unmatched"}


def test_serve_logs_json_lines(log_lines: io.StringIO) -> None:
    root = logging.getLogger()
    kept, level = root.handlers[:], root.level
    buffer = io.StringIO()
    try:
        configure_logging("INFO", stream=buffer)
        logging.getLogger("uvicorn.error").info("started")
        # Uvicorn's second report of an error the app already logged is dropped.
        logging.getLogger("uvicorn.error").error("Exception in ASGI application\n")
        logging.getLogger("eventshop.api").warning("outside a request")
    finally:
        root.handlers[:] = kept
        root.setLevel(level)
    lines = records(buffer)
    assert [(line["logger"], line["message"], line["request_id"]) for line in lines] == [
        ("uvicorn.error", "started", None),
        ("eventshop.api", "outside a request", None),
    ]
    assert lines[0]["level"] == "INFO" and lines[0]["timestamp"].endswith("+00:00")


# --- bounded input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/carts/{cart}/items", {"sku": "{sku}", "quantity": 1001}, "quantity"),
        ("/api/carts/{cart}/items", {"sku": "{sku}", "quantity": 0}, "quantity"),
        ("/api/carts/{cart}/items", {"sku": "{sku}", "quantity": 10**30}, "quantity"),
        ("/api/carts/{cart}/items", {"sku": "{sku}", "quantity": 1.5}, "quantity"),
        ("/api/carts/{cart}/items", {"sku": "A" * 33, "quantity": 1}, "sku"),
        ("/api/carts/{cart}/items", {"sku": "{sku}", "quantity": 1, "x": 1}, "x"),
        ("/api/carts/not-a-uuid/items", {"sku": "{sku}", "quantity": 1}, "cart_id"),
        ("/api/stock/{sku}/receipts", {"quantity": 1001}, "quantity"),
        ("/api/stock/{sku}/adjustments", {"delta": 0, "reason": "count"}, "delta"),
        ("/api/stock/{sku}/adjustments", {"delta": -1001, "reason": "count"}, "delta"),
        ("/api/stock/{sku}/adjustments", {"delta": 1, "reason": "r" * 201}, "reason"),
        ("/api/stock/bad%20sku/receipts", {"quantity": 1}, "sku"),
        ("/api/products", {"sku": "N-1", "name": "n" * 201, "price": "1.00"}, "name"),
        ("/api/products", {"sku": "N-1", "name": "N", "price": "1000000.01"}, "price"),
        ("/api/products", {"sku": "N-1", "name": "N", "price": "1.001"}, "price"),
        ("/api/products", {"sku": "N-1", "name": "N", "price": 1.5}, "price"),
    ],
)
def test_out_of_bounds_input_is_a_422_naming_the_field(
    client: TestClient, world: World, path: str, body: dict[str, Any], field: str
) -> None:
    cart_id, sku = world.cart()
    head = client.app.state.shop.head()  # type: ignore[attr-defined]
    fill = {"cart": cart_id, "sku": sku}
    body = {k: v.format(**fill) if isinstance(v, str) else v for k, v in body.items()}
    who = ALICE if "/carts/" in path else STAFF
    problem = problem_of(client.post(path.format(**fill), json=body, headers=who), 422)
    assert field in fields_of(problem)
    assert client.app.state.shop.head() == head  # type: ignore[attr-defined]


# --- lists and timestamps --------------------------------------------------------------------


def test_a_list_pages_by_default_fifty_at_most_five_hundred(client: TestClient) -> None:
    first = client.get("/test-only/list").json()
    assert [item["n"] for item in first["items"]] == list(range(1, 51))
    following = client.get("/test-only/list", params={"cursor": first["next_cursor"]}).json()
    assert following["items"][0] == {"n": 51}
    largest = client.get("/test-only/list", params={"limit": 500}).json()
    assert len(largest["items"]) == 500
    for limit in (501, 0, -1, "many"):
        problem = problem_of(client.get("/test-only/list", params={"limit": limit}), 422)
        assert fields_of(problem) == {"limit"}


@pytest.mark.parametrize(
    "cursor",
    ["not base64!", "x" * 1025, "eyJ4IjoxfQ", "WyJvdGhlciIsMV0"],
    ids=["characters", "too-long", "not-a-key", "another-lists"],
)
def test_a_cursor_this_list_did_not_hand_out_is_refused(client: TestClient, cursor: str) -> None:
    problem = problem_of(client.get("/test-only/list", params={"cursor": cursor}), 422)
    assert fields_of(problem) == {"cursor"}


def test_a_timestamp_must_name_its_offset(client: TestClient) -> None:
    aware = client.get("/test-only/since", params={"moment": "2026-01-02T03:04:05+01:00"})
    assert aware.json() == {"moment": "2026-01-02T03:04:05+01:00"}
    # A number would be read as a Unix timestamp (found by schemathesis: 0.99).
    for bad in ("2026-01-02T03:04:05", "yesterday", "2026-13-01T00:00:00Z", "0.99", "0"):
        problem = problem_of(client.get("/test-only/since", params={"moment": bad}), 422)
        assert fields_of(problem) == {"moment"}
