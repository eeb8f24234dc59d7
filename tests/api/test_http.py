"""What every route shares: problem details, request ids, body limit, OpenAPI, health."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from commands.service import Shop
from tests.api.conftest import ALICE, STAFF, on_sqlite, problem_of

PRODUCT = {"sku": "MUG", "name": "Mug", "price": "1.00"}


@on_sqlite
def test_an_unknown_route_is_a_problem(client: TestClient) -> None:
    problem = problem_of(client.get("/api/nothing-here", headers=STAFF), 404)
    assert problem["instance"] == "/api/nothing-here"


@on_sqlite
def test_a_method_the_route_lacks_is_not_allowed(client: TestClient) -> None:
    response = client.delete("/api/products/MUG", headers=STAFF)
    problem_of(response, 405)
    # Both routes of the path: Starlette named only the first one's (PATCH).
    assert response.headers["Allow"] == "GET, PATCH"
    assert client.get("/api/carts/x/items/MUG", headers=STAFF).headers["Allow"] == "DELETE, PUT"
    assert client.post("/health/live").headers["Allow"] == "GET"


@on_sqlite
def test_every_response_carries_a_request_id(client: TestClient) -> None:
    for response in (
        client.get("/health/live"),
        client.get("/api/products/MUG", headers=STAFF),
        client.post("/api/products", json={}, headers=STAFF),
    ):
        assert len(response.headers["X-Request-ID"]) == 32
    first, second = client.get("/health/live"), client.get("/health/live")
    assert first.headers["X-Request-ID"] != second.headers["X-Request-ID"]


@on_sqlite
def test_a_clients_request_id_is_echoed_if_sane(client: TestClient) -> None:
    sane = client.get("/health/live", headers={"X-Request-ID": "trace-1.2:3"})
    assert sane.headers["X-Request-ID"] == "trace-1.2:3"
    insane = client.get("/health/live", headers={"X-Request-ID": "x" * 500})
    assert len(insane.headers["X-Request-ID"]) == 32


@on_sqlite
def test_a_declared_body_over_the_limit_is_too_large(
    client: TestClient, app: FastAPI, shop: Shop
) -> None:
    limit = app.state.settings.max_body_bytes
    response = client.post(
        "/api/products",
        content=b" " * (limit + 1),
        headers={**STAFF, "Content-Type": "application/json"},
    )
    problem = problem_of(response, 413)
    assert str(limit) in problem["detail"]
    assert response.headers["X-Request-ID"]
    assert shop.head() == 0


@on_sqlite
def test_a_streamed_body_over_the_limit_is_too_large(
    client: TestClient, app: FastAPI, shop: Shop
) -> None:
    limit = app.state.settings.max_body_bytes

    def chunks() -> Iterator[bytes]:
        # A generator has no length: it is sent chunked, without Content-Length.
        for _ in range(limit // 1000 + 2):
            yield b" " * 1000

    response = client.post(
        "/api/products", content=chunks(), headers={**STAFF, "Content-Type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    problem = problem_of(response, 413)
    assert str(limit) in problem["detail"]
    assert shop.head() == 0


@on_sqlite
def test_a_body_just_under_the_limit_is_read(client: TestClient, app: FastAPI) -> None:
    limit = app.state.settings.max_body_bytes
    body = b'{"sku": "MUG", "name": "Mug", "price": "1.00"}'
    padded = body + b" " * (limit - len(body))
    response = client.post(
        "/api/products", content=padded, headers={**STAFF, "Content-Type": "application/json"}
    )
    assert response.status_code == 201, response.text


@on_sqlite
def test_an_unexpected_error_is_a_500_that_tells_nothing_of_the_internals(
    app: FastAPI, shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("password=hunter2 in /srv/secret.py")

    monkeypatch.setattr(shop, "add_product", broken)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post(
            "/api/products", json=PRODUCT, headers={**STAFF, "X-Request-ID": "req-500"}
        )
    problem = problem_of(response, 500)
    assert "hunter2" not in response.text and "RuntimeError" not in response.text
    assert "req-500" in problem["detail"]
    assert response.headers["X-Request-ID"] == "req-500"


@on_sqlite
def test_liveness(client: TestClient) -> None:
    response = client.get("/health/live")
    assert (response.status_code, response.json()["status"]) == (200, "live")


def test_readiness_follows_the_store(client: TestClient, shop: Shop) -> None:
    client.post("/api/products", json=PRODUCT, headers=STAFF)
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "position": shop.head()}
    shop.close()  # the store no longer answers
    problem = problem_of(client.get("/health/ready"), 503)
    assert "store" in problem["detail"]


@on_sqlite
def test_the_openapi_document_describes_bodies_and_problems(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    checkout = schema["paths"]["/api/carts/{cart_id}/checkout"]["post"]
    body = checkout["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert body.endswith("/CheckOut")
    assert checkout["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/OrderResult"
    )
    for status in ("400", "401", "403", "404", "409", "412", "413", "422"):
        content = checkout["responses"][status]["content"]
        assert list(content) == ["application/problem+json"]
        assert content["application/problem+json"]["schema"]["$ref"].endswith("/Problem")
    price = schema["components"]["schemas"]["AddProduct"]["properties"]["price"]
    assert price["type"] == "string"
    assert any(p["name"] == "if-match" for p in checkout["parameters"])


@on_sqlite
def test_every_command_of_the_contract_is_routed(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    routed = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    assert routed >= {
        ("POST", "/api/products"),
        ("PATCH", "/api/products/{sku}"),
        ("GET", "/api/products/{sku}"),
        ("POST", "/api/stock/{sku}/receipts"),
        ("POST", "/api/stock/{sku}/adjustments"),
        ("GET", "/api/stock/{sku}"),
        ("POST", "/api/carts"),
        ("POST", "/api/carts/{cart_id}/items"),
        ("PUT", "/api/carts/{cart_id}/items/{sku}"),
        ("DELETE", "/api/carts/{cart_id}/items/{sku}"),
        ("POST", "/api/carts/{cart_id}/checkout"),
        ("GET", "/api/carts/{cart_id}"),
        ("POST", "/api/orders/{order_id}/payment"),
        ("POST", "/api/orders/{order_id}/shipment"),
        ("POST", "/api/orders/{order_id}/delivery"),
        ("POST", "/api/orders/{order_id}/cancellation"),
        ("GET", "/api/orders/{order_id}"),
        ("GET", "/health/live"),
        ("GET", "/health/ready"),
    }


@on_sqlite
def test_the_docs_pages_are_served_with_their_assets(client: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        response = client.get(page)
        assert response.status_code == 200
        # Every script and style the page loads is the app's own (no CDN: works offline).
        loaded = re.findall(r'(?:src|href)=["\']([^"\']+)', response.text)
        assert loaded, page
        for url in loaded:
            assert url.startswith("/docs/assets/"), url
            assert client.get(url).status_code == 200, url
    assert "swagger" in client.get("/docs").text.lower()


def test_stored_events_name_the_caller_and_the_request(client: TestClient, shop: Shop) -> None:
    response = client.post("/api/products", json=PRODUCT, headers={**STAFF, "X-Request-ID": "r-7"})
    assert response.status_code == 201
    stored = shop.recorder.select_notifications(start=1, limit=10)
    causes = [shop.mapper.decode(record)[1] for record in stored]  # type: ignore[attr-defined]
    assert len(causes) == 2  # the product and its stock
    for cause in causes:
        assert cause is not None
        assert (cause.actor, cause.role, cause.correlation_id) == ("staff-1", "staff", "r-7")


@on_sqlite
def test_a_body_declared_as_other_than_json_is_refused_with_415(
    client: TestClient, shop: Shop
) -> None:
    head = shop.head()
    body = json.dumps(PRODUCT).encode()
    for declared in ("application/x-www-form-urlencoded", "text/plain", "application/jsonx", None):
        headers = {**STAFF, **({"Content-Type": declared} if declared else {})}
        answer = client.post("/api/products", content=body, headers=headers)
        problem = problem_of(answer, 415)
        assert "Content-Type: application/json" in problem["detail"]
        assert answer.headers["Accept"] == "application/json"
    assert shop.head() == head  # nothing recorded
    for declared in ("application/json; charset=utf-8", "Application/JSON"):
        headers = {**STAFF, "Content-Type": declared}
        answer = client.post("/api/products", content=body, headers=headers)
        assert answer.status_code == 201, (declared, answer.text)
        body = json.dumps({**PRODUCT, "sku": f"MUG-{shop.head()}"}).encode()
    # A body-less command needs no Content-Type.
    assert client.post("/api/carts", headers=ALICE).status_code == 201
