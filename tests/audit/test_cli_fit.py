"""``eventshop audit`` at 80 columns (a standard terminal, and any pipe) and with
``--json`` for scripts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from cli.main import app
from commands.service import Shop
from eventstore.causes import caused_by
from projections.audit.auditor import Auditor
from tests.audit.conftest import History, Tamper

runner = CliRunner()


@pytest.fixture(autouse=True)
def configured(audit_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTSHOP_DATABASE_URL", audit_url)
    monkeypatch.setenv("EVENTSHOP_VAR_DIR", str(tmp_path))  # where the signing key is made


def run(*args: str) -> Result:
    # Rich takes the width from COLUMNS when it does not write to a terminal.
    return runner.invoke(app, ["audit", *args], env={"COLUMNS": "80"})


def fits(text: str) -> bool:
    return all(len(line) <= 80 for line in text.splitlines())


def test_history_at_80_columns_keeps_who_and_what(shop: Shop, history: History) -> None:
    with caused_by("support-desk-7", "staff", "req-handover-4711"):
        shop.deliver(history.order_id)
    result = run("history", str(history.order_id))
    assert result.exit_code == 0, result.output
    assert fits(result.stdout), result.stdout
    # At 80 columns these columns were squeezed to nothing: who and what disappeared.
    for whole in (
        "Order.Placed",
        "Order.Shipped",
        "Order.Delivered",
        "alice (customer)",
        "staff-2 (staff)",
        "support-desk-7",
        "req-ship",
        "req-handover-4711",
        '"carrier":',
        '"tracking_number":',
        '"TRACK-1"',
    ):
        assert whole in result.stdout, whole
    stock = run("history", str(history.stock_id))
    assert stock.exit_code == 0 and fits(stock.stdout)
    assert "staff-1 (staff)" in stock.stdout and "req-catalogue" in stock.stdout


def test_history_json_is_one_document_of_every_event(auditor: Auditor, history: History) -> None:
    result = run("history", str(history.order_id), "--json")
    assert result.exit_code == 0, result.output
    items = json.loads(result.stdout)
    assert [item["type"] for item in items] == [
        item["type"] for item in auditor.history(history.order_id)
    ]
    shipped = items[-1]
    assert set(shipped) == {
        "aggregate_id",
        "aggregate_type",
        "data",
        "metadata",
        "position",
        "timestamp",
        "type",
        "version",
    }
    assert shipped["metadata"]["actor"] == "staff-2"
    assert shipped["metadata"]["correlation_id"] == "req-ship"
    assert shipped["data"]["carrier"] == "DHL"
    assert shipped["timestamp"].startswith("20") and "T" in shipped["timestamp"]
    # Refused: the same exit code and no document on stdout.
    missing = run("history", "00000000-0000-0000-0000-000000000000", "--json")
    assert missing.exit_code == 2 and missing.stdout == ""


def test_state_digest_and_checkpoint_json(auditor: Auditor, history: History) -> None:
    state = run("state", str(history.cart_id), "--version", "2", "--json")
    assert state.exit_code == 0
    assert json.loads(state.stdout) == json.loads(
        json.dumps(auditor.state(history.cart_id, version=2))
    )
    digest = run("digest", "--upto", "12", "--json")
    assert json.loads(digest.stdout) == {
        "upto": 12,
        "events": 12,
        "head": auditor.digest(upto=12).head,
    }
    export = run("export", "--after", "3", "--until", "5", "--json")
    assert [json.loads(line)["position"] for line in export.stdout.splitlines()] == [4, 5]
    checkpoint = json.loads(run("checkpoint", "--json").stdout)
    assert list(checkpoint) == ["last_checkpoint"]


def test_verify_json_keeps_the_exit_codes(history: History, tamper: Tamper) -> None:
    unanchored = run("verify", "--json")
    assert unanchored.exit_code == 3
    assert json.loads(unanchored.stdout)["status"] == "unanchored"
    receipts = run("receipts", "--issue", "--json")
    assert [r["position"] for r in json.loads(receipts.stdout)] == [19]
    verified = run("verify", "--json")
    assert verified.exit_code == 0
    found = json.loads(verified.stdout)
    assert found["status"] == "verified" and found["verified_upto"] == 19
    key = json.loads(run("public-key", "--json").stdout)
    assert key["public_key"].startswith("-----BEGIN PUBLIC KEY-----")
    assert len(key["key_id"]) == 16

    tamper.flip_byte(10, 2)
    tampered = run("verify", "--json")
    assert tampered.exit_code == 1
    assert json.loads(tampered.stdout)["position"] == 10


def test_a_product_and_its_stock_are_found_by_sku(auditor: Auditor, history: History) -> None:
    product = run("history", "--sku", "MUG-1", "--json")
    assert product.exit_code == 0, product.output
    assert {item["aggregate_id"] for item in json.loads(product.stdout)} == {
        str(history.product_id)
    }
    stock = run("state", "--sku", "MUG-1", "--stock", "--json")
    assert stock.exit_code == 0, stock.output
    assert json.loads(stock.stdout)["id"] == str(history.stock_id)
    table = run("history", "--sku", "MUG-1", "--stock")
    assert table.exit_code == 0 and "Stock" in table.stdout and "staff-1 (staff)" in table.stdout
    # Unknown, malformed, or both an id and a SKU: refused, exit 2.
    missing = run("history", "--sku", "MUG-404")
    assert missing.exit_code == 2 and "no product MUG-404 in the log" in missing.stderr
    assert run("history", "--sku", "mug 1").exit_code == 2
    assert run("history", str(history.order_id), "--sku", "MUG-1").exit_code == 2
    assert run("history", str(history.order_id), "--stock").exit_code == 2
