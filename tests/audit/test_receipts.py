"""Receipts over HTTP: the writer signs them as the log grows, auditors list, ask for and
check them, and verify streams its progress and result."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import mint
from commands.service import Shop
from eventshop.settings import Settings
from projections.audit.receipts import Receipt, public_key, trusted
from tests.audit.conftest import History, Tamper, make_history

SECRET = "test-secret-of-the-receipt-tests-0123456789"
AUDITOR = {"Authorization": f"Bearer {mint(SECRET, 'audit-1', ['auditor'])}"}
STAFF = {"Authorization": f"Bearer {mint(SECRET, 'staff-1', ['staff'])}"}


@pytest.fixture
def app(shop: Shop, audit_url: str, tmp_path: Path) -> FastAPI:
    # A serve-only deployment: no worker, nothing but the app; a receipt every 5 events.
    settings = Settings(
        database_url=audit_url,
        jwt_secret=SECRET,
        var_dir=tmp_path,
        run_projections=False,
        audit_receipt_events=5,
        audit_receipt_seconds=3600,
    )
    return create_app(settings, shop=shop)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def verify_lines(client: TestClient, **params: Any) -> list[dict[str, Any]]:
    response = client.get("/api/audit/verify", params=params, headers=AUDITOR)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in response.text.splitlines()]


def test_the_writer_signs_receipts_as_the_log_grows(
    client: TestClient, shop: Shop, tamper: Tamper
) -> None:
    assert client.post("/api/audit/receipts", headers=AUDITOR).status_code == 409  # empty log
    make_history(shop)
    deadline = time.monotonic() + 5
    while not (items := client.get("/api/audit/receipts", headers=AUDITOR).json()["items"]):
        assert time.monotonic() < deadline, "no receipt after 19 events (one is due every 5)"
        time.sleep(0.02)
    key = client.get("/api/audit/public-key", headers=STAFF).json()
    keys = trusted([public_key(key["public_key"])])
    for item in items:
        receipt = Receipt.from_json(item)
        assert receipt.key_id == key["key_id"] and receipt.problem(keys) is None

    issued = client.post("/api/audit/receipts", headers=AUDITOR)
    assert issued.status_code == 201 and issued.json()["position"] == 19
    client.app.state.auditor.batch = 7  # type: ignore[attr-defined]
    *progress, last = verify_lines(client)
    assert [p["progress"]["position"] for p in progress] == [7, 14]
    assert last["result"]["status"] == "verified" and last["result"]["verified_upto"] == 19

    tamper.flip_byte(7, 3)
    result = verify_lines(client)[-1]["result"]
    assert (result["status"], result["position"]) == ("tampered", 7)
    shop.receive_stock("TEA-1", 1)
    assert client.post("/api/audit/receipts", headers=AUDITOR).json()["position"] == 20
    every = [
        i["position"] for i in client.get("/api/audit/receipts", headers=AUDITOR).json()["items"]
    ]
    assert every[-2:] == [19, 20] and every == sorted(every)
    page = client.get("/api/audit/receipts", params={"limit": 1}, headers=AUDITOR).json()
    rest = client.get(
        "/api/audit/receipts", params={"cursor": page["next_cursor"]}, headers=AUDITOR
    ).json()
    assert [i["position"] for i in page["items"] + rest["items"]] == every
    assert rest["next_cursor"] is None


def test_verify_over_http_says_unanchored_without_a_receipt(
    client: TestClient, history: History
) -> None:
    result = verify_lines(client, upto=3)[-1]["result"]
    assert (result["status"], result["upto"], result["verified_upto"]) == ("unanchored", 3, 0)
