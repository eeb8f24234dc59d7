"""Webhook fixtures: a receiver on the loopback address, and the real app on a real
store with small waits between attempts (a delivery is parked within milliseconds)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from standardwebhooks import Webhook

from projections.engine.feed import Source
from projections.integration.events import TOPICS, Translator, schemas
from tests.api.conftest import bearer, reads_own_writes
from tests.hardening.conftest import make_app

ADMIN = bearer("admin", sub="admin-1")
ATTEMPTS = 4
FAST = {
    "webhook_allowed_hosts": ["127.0.0.1"],
    "webhook_attempts": ATTEMPTS,
    "webhook_first_wait_seconds": 0.005,
    "webhook_max_wait_seconds": 0.02,
    "webhook_poll_seconds": 0.02,
}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Receiver:
    """A tiny HTTP server on 127.0.0.1: answers the next of ``answers`` (then 200) and
    remembers every request."""

    answers: list[int] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    @property
    def accepted(self) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.status == 200]

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> int:
        with self.lock:
            status = self.answers.pop(0) if self.answers else 200
            self.requests.append(Received(path, headers, body, status))
            return status


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiving = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status = receiving.answer(self.path, dict(self.headers.items()), body)
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiving.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield receiving
    server.shutdown()
    server.server_close()


def wait_until(condition: Callable[[], Any], timeout: float = 10.0) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        time.sleep(0.01)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    fixture = "sqlite_url" if request.param == "sqlite" else "pg_reused_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
def app(database_url: str, tmp_path: Path) -> FastAPI:
    return make_app(database_url, tmp_path, **FAST)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield reads_own_writes(test_client)


def subscribe(client: TestClient, url: str, *types: str, **more: Any) -> dict[str, Any]:
    response = client.post(
        "/api/webhooks", json={"url": url, "event_types": list(types), **more}, headers=ADMIN
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def deliveries(client: TestClient, subscription: dict[str, Any], **query: str) -> list[Any]:
    path = f"/api/webhooks/{subscription['id']}/deliveries"
    response = client.get(path, params=query, headers=ADMIN)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def caught_up(client: TestClient, subscription: dict[str, Any]) -> bool:
    """Whether the subscription has passed every event of the log."""
    response = client.get(f"/api/webhooks/{subscription['id']}", headers=ADMIN)
    return bool(response.json()["lag"] == 0)


def events(receiver: Receiver, secret: str) -> list[dict[str, Any]]:
    """Every accepted request's CloudEvent, once its signature is verified and it is
    valid against its type's JSON Schema."""
    received = [Webhook(secret).verify(r.body, r.headers) for r in receiver.accepted]
    for event in received:
        jsonschema_rs.validate(schemas()[event["type"]], event)
    return received


def contract(source: Source, after: int = 0) -> list[dict[str, Any]]:
    """The CloudEvents of the whole log after position ``after``, as the contract gives
    them to the JetStream publisher (default thresholds and source)."""
    translator = Translator()
    found = (
        translator.translate(n.id, source.mapper.to_domain_event(n))
        for n in source.read(0, 10**6, topics=TOPICS)
    )
    return [e.cloudevent() for e in found if e is not None and e.position > after]
