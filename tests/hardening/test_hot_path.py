"""What the command path keeps while it got cheaper: a remembered token is still checked
(key, expiry), a command's checks answer in the same order, the service runs in a worker
thread with the request's idempotency key and cause, and the one middleware in front
(api/edge.py) still counts, limits and tags every answer."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.auth import InvalidToken, decode, mint
from commands import idempotency
from commands.service import Shop
from eventstore.causes import current_cause
from tests.api.conftest import SECRET, problem_of
from tests.hardening.conftest import ALICE, STAFF, make_app

OTHER_KEY = "another-secret-of-at-least-32-bytes-0123"


@pytest.fixture
def app(sqlite_url: str, tmp_path: Path) -> FastAPI:
    return make_app(sqlite_url, tmp_path)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def mug(client: TestClient) -> str:
    response = client.post(
        "/api/products", json={"sku": "MUG", "name": "Mug", "price": "9.00"}, headers=STAFF
    )
    assert response.status_code == 201, response.text
    return "MUG"


# --- tokens ----------------------------------------------------------------------------


def test_a_remembered_token_is_refused_once_it_expires() -> None:
    token = mint(SECRET, "alice", ["customer"], ttl_seconds=1)
    assert decode(SECRET, token).sub == "alice"
    assert decode(SECRET, token).sub == "alice"  # remembered
    expires = int(time.time()) + 1
    while time.time() < expires:
        time.sleep(0.05)
    with pytest.raises(InvalidToken, match="expired"):
        decode(SECRET, token)


def test_a_remembered_token_is_only_good_with_its_key() -> None:
    token = mint(SECRET, "alice", ["customer"])
    assert decode(SECRET, token).roles == frozenset({"customer"})
    with pytest.raises(InvalidToken, match="Signature verification failed"):
        decode(OTHER_KEY, token)


def test_a_refused_token_stays_refused() -> None:
    forged = mint(OTHER_KEY, "alice", ["staff"])
    for _ in range(2):
        with pytest.raises(InvalidToken, match="Signature verification failed"):
            decode(SECRET, forged)


# --- a command's checks ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        # A malformed If-Match is refused before the token is even looked at, as it was
        # when the version and the caller were two dependencies.
        ({"If-Match": "three"}, 400),
        ({**ALICE, "If-Match": "three"}, 400),
        ({"If-Match": '"1"'}, 401),
        ({**ALICE, "If-Match": '"1"'}, 403),
        ({**STAFF, "If-Match": '"9"'}, 412),
    ],
)
def test_a_commands_checks_answer_in_order(
    client: TestClient, mug: str, headers: dict[str, str], status: int
) -> None:
    response = client.post(f"/api/stock/{mug}/receipts", json={"quantity": 1}, headers=headers)
    problem_of(response, status)


def test_the_service_runs_off_the_event_loop_with_the_requests_key_and_cause(
    client: TestClient, shop: Shop, mug: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, str | None, str | None, str | None]] = []
    receive = shop.receive_stock

    def spy(*args: object, **kwargs: object) -> object:
        request = idempotency.current_request()
        cause = current_cause()
        seen.append(
            (
                threading.current_thread().name,
                request.key if request else None,
                cause.actor,
                cause.correlation_id,
            )
        )
        return receive(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(shop, "receive_stock", spy)
    headers = {**STAFF, "Idempotency-Key": "k-1", "X-Request-ID": "req-1"}
    first = client.post(f"/api/stock/{mug}/receipts", json={"quantity": 2}, headers=headers)
    again = client.post(f"/api/stock/{mug}/receipts", json={"quantity": 2}, headers=headers)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert again.json()["on_hand"] == 2
    assert [s[1:] for s in seen] == [("k-1", "staff-1", "req-1")] * 2
    assert all(name != threading.main_thread().name for name, *_ in seen)


# --- the edge ----------------------------------------------------------------------------


def test_every_answer_is_counted_by_route_and_status(client: TestClient, mug: str) -> None:
    for _ in range(3):
        client.post(f"/api/stock/{mug}/receipts", json={"quantity": 1}, headers=STAFF)
    client.post(f"/api/stock/{mug}/receipts", json={"quantity": 1}, headers=ALICE)
    client.post("/api/products", content=b"x" * 70_000, headers=STAFF)
    text = client.get("/metrics").text
    route = 'route="/api/stock/{sku}/receipts"'
    assert f'eventshop_http_requests_total{{method="POST",{route},status="200"}} 3.0' in text
    assert f'eventshop_http_requests_total{{method="POST",{route},status="403"}} 1.0' in text
    # Refused before any route matched.
    assert 'route="unmatched",status="413"} 1.0' in text
    assert f'eventshop_http_request_duration_seconds_count{{method="POST",{route}}} 4.0' in text


def test_a_request_id_the_client_gives_that_is_not_sane_is_replaced(client: TestClient) -> None:
    response = client.get("/health/live", headers={"X-Request-ID": "no spaces allowed"})
    assert response.headers["X-Request-ID"] != "no spaces allowed"
    assert len(response.headers["X-Request-ID"]) == 32
