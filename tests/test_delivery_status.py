"""GET /api/deliveries and its metrics (issue 17, item 5), on real PostgreSQL, a real
NATS server (127.0.0.1:4222) and a webhook receiver on the loopback address: with the
receiver down (or NATS unreachable) the status shows the lag, the failure and the
parked deliveries; after the recovery, lag 0 and the last success."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from bench.common import free_port
from eventshop.bootstrap import open_publisher
from projections.integration.jetstream import Target
from tests.api.conftest import reads_own_writes
from tests.conftest import settings_for
from tests.hardening.conftest import World, make_app
from tests.integration.test_jetstream import NATS_URL, consumed, expected
from tests.integration.test_jetstream import target as target  # a fixture
from tests.webhooks.conftest import ADMIN, deliveries, subscribe, wait_until

PLACED, PAID = "eventshop.order.placed", "eventshop.order.paid"
ATTEMPTS = 4
# Slow enough retries that a delivery is seen being retried on a loaded machine (3 s of
# retrying in all), fast enough to park soon.
RETRYING = {
    "webhook_allowed_hosts": ["127.0.0.1"],
    "webhook_attempts": ATTEMPTS,
    "webhook_first_wait_seconds": 0.5,
    "webhook_max_wait_seconds": 0.5,
    "webhook_poll_seconds": 0.02,
}


class Switch:
    """A receiver on 127.0.0.1 that answers 503 while ``down``, else 200."""

    def __init__(self) -> None:
        self.down = True
        self.received: list[str] = []
        switch = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = 503 if switch.down else 200
                if status == 200:
                    switch.received.append(self.headers["webhook-id"])
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def switch() -> Iterator[Switch]:
    receiver = Switch()
    yield receiver
    receiver.close()


def channels(client: TestClient) -> dict[str, dict[str, Any]]:
    answer = client.get("/api/deliveries", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    return {item["name"]: item for item in answer.json()["items"]}


def scraped(client: TestClient, metric: str, **labels: str) -> float | None:
    """One sample of GET /metrics (None: absent)."""
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == metric and sample.labels == labels:
                return float(sample.value)
    return None


def test_a_webhook_receiver_down_shows_lag_failures_and_parked_then_recovers(
    pg_reused_url: str, tmp_path: Path, switch: Switch
) -> None:
    app = make_app(pg_reused_url, tmp_path, **RETRYING)
    with TestClient(app) as raw:
        client = reads_own_writes(raw)
        subscription = subscribe(client, switch.url, PLACED, PAID)
        name = f"webhooks/{subscription['id']}"
        World(client).order("paid")

        # The first delivery is being retried: the subscription is behind the log.
        behind: dict[str, Any] = {}

        def retrying() -> bool:
            behind.update(channels(client)[name])
            return behind["state"] == "retrying"

        wait_until(retrying)
        assert behind["channel"] == "webhook" and behind["target"] == switch.url
        assert behind["lag_events"] > 0 and behind["lag_seconds"] > 0
        assert behind["position"] + behind["lag_events"] == behind["head"]
        assert behind["retrying"] == 1 and behind["parked"] == 0
        assert "503" in behind["last_error"] and behind["last_failure_at"] is not None
        assert behind["last_success_at"] is None and behind["worker"]

        # Each delivery parked after its last attempt; the subscription went past them.
        wait_until(lambda: channels(client)[name]["parked"] == 2, timeout=20)
        wait_until(lambda: channels(client)[name]["lag_events"] == 0)
        parked = channels(client)[name]
        assert (parked["state"], parked["retrying"], parked["lag_seconds"]) == ("degraded", 0, 0)
        labels = {"channel": "webhook", "subscription": subscription["id"]}
        assert scraped(client, "eventshop_delivery_parked", **labels) == 2
        assert scraped(client, "eventshop_delivery_lag_events", **labels) == 0
        assert scraped(client, "eventshop_delivery_state", **labels, state="degraded") == 1
        success = "eventshop_delivery_last_success_timestamp_seconds"
        assert scraped(client, success, **labels) is None

        # The receiver is back: both are redelivered on request.
        switch.down = False
        for delivery in deliveries(client, subscription):
            path = f"/api/webhooks/{subscription['id']}/deliveries/{delivery['id']}/redeliver"
            assert client.post(path, headers=ADMIN).status_code == 202
        wait_until(lambda: len(switch.received) == 2)
        wait_until(lambda: not deliveries(client, subscription, status="pending"))
        recovered = channels(client)[name]
        assert (recovered["state"], recovered["lag_events"], recovered["lag_seconds"]) == (
            "live",
            0,
            0,
        )
        assert recovered["last_success_at"] > recovered["last_failure_at"]
        assert recovered["parked"] == recovered["retrying"] == 0
        assert scraped(client, "eventshop_delivery_parked", **labels) == 0
        assert (
            scraped(client, success, **labels)
            == datetime.fromisoformat(recovered["last_success_at"]).timestamp()
        )

        # Unsubscribed: gone from the status, with its health row.
        client.delete(f"/api/webhooks/{subscription['id']}", headers=ADMIN)
        assert name not in channels(client)
        assert name not in app.state.deliveries.health.read()


@contextlib.contextmanager
def publishing(url: str, var_dir: Path, target: Target) -> Iterator[Any]:
    # Beside the app, as a worker of its deployment: with its var/ (its master key).
    publisher = open_publisher(
        settings_for(url, var_dir=var_dir),
        target=target,
        poll_interval=0.02,
        standby_interval=0.05,
    )
    publisher.heartbeat_interval = 0.05
    try:
        publisher.start()
        yield publisher
    finally:
        publisher.close()


def test_jetstream_unreachable_shows_lag_and_the_failure_then_lag_0(
    pg_reused_url: str, tmp_path: Path, target: Target
) -> None:
    # The API only reads the status: the publisher runs beside it, as in a worker.
    app = make_app(pg_reused_url, tmp_path, nats_url=NATS_URL)
    with TestClient(app) as raw:
        client = reads_own_writes(raw)
        never_ran = channels(client)["jetstream"]
        assert (never_ran["state"], never_ran["position"]) == ("not_running", 0)
        assert never_ran["lag_events"] == never_ran["head"]

        World(client).order("paid")
        unreachable = Target(f"nats://127.0.0.1:{free_port()}", target.stream, target.prefix)
        with publishing(pg_reused_url, tmp_path, unreachable):
            wait_until(lambda: channels(client)["jetstream"]["state"] == "retrying")
        down = channels(client)["jetstream"]
        assert down["lag_events"] == down["head"] > 0 and down["lag_seconds"] > 0
        assert down["last_error"] and down["last_failure_at"] and down["retrying"] == 1
        labels = {"channel": "jetstream", "subscription": ""}
        assert scraped(client, "eventshop_delivery_lag_events", **labels) == down["lag_events"]

        with publishing(pg_reused_url, tmp_path, target) as publisher:
            shop = app.state.shop
            assert publisher.wait_for(shop.head())
            wait_until(lambda: channels(client)["jetstream"]["last_success_at"] is not None)
            up = channels(client)["jetstream"]
            assert (up["state"], up["lag_events"], up["lag_seconds"]) == ("live", 0, 0)
            assert up["position"] == up["head"] == shop.head()
            assert up["target"] == f"stream {target.stream}, subjects {target.prefix}.>"
            assert up["last_success_at"] > up["last_failure_at"]
            assert scraped(client, "eventshop_delivery_lag_events", **labels) == 0
            assert scraped(client, "eventshop_delivery_state", **labels, state="live") == 1
        assert [e["id"] for e in consumed(target)] == expected(shop)
