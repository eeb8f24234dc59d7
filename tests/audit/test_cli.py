"""``eventshop audit``: history, state, export and verify on the configured store."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cli.main import app
from commands.service import Shop
from projections.audit.auditor import Auditor
from projections.audit.chain import chain_head, read_export
from tests.audit.conftest import ADDRESS, History, Tamper

runner = CliRunner()


@pytest.fixture(autouse=True)
def configured(audit_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTSHOP_DATABASE_URL", audit_url)


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["audit", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_history_shows_each_event_and_its_cause(history: History) -> None:
    code, output = run("history", str(history.order_id))
    assert code == 0, output
    for text in ("Order.Placed", "Order.Paid", "Order.Shipped", "staff-2", "req-ship"):
        assert text in output


def test_state_at_a_version_or_a_moment(auditor: Auditor, history: History) -> None:
    code, output = run("state", str(history.cart_id), "--version", "2")
    assert code == 0, output
    assert json.loads(output) == auditor.state(history.cart_id, version=2)
    moment = auditor.history(history.cart_id)[2]["timestamp"].isoformat()
    code, output = run("state", str(history.cart_id), "--at", moment)
    assert code == 0 and json.loads(output)["version"] == 3
    code, output = run("state", "00000000-0000-0000-0000-000000000000")
    assert code == 2 and "does not exist" in output


def test_export_writes_one_line_per_event(auditor: Auditor, history: History) -> None:
    code, output = run("export")
    assert code == 0
    lines = output.splitlines()
    assert len(lines) == 19
    assert list(read_export(lines)) == list(auditor.stream())
    code, output = run("export", "--after", "3", "--until", "5")
    assert [json.loads(line)["position"] for line in output.splitlines()] == [4, 5]


def test_verify_passes_then_names_the_first_bad_position(
    auditor: Auditor, history: History, tamper: Tamper
) -> None:
    code, output = run("verify")
    assert code == 0 and "OK" in output
    digest = auditor.digest(upto=12).head
    code, output = run("digest", "--upto", "12")
    assert code == 0 and digest in output
    code, output = run("verify", "--digest", digest, "--upto", "12")
    assert code == 0, output

    tamper.flip_byte(10, 2)
    code, output = run("verify")
    # The CLI keeps a checkpoint every 1000 events: none here, so only the digest tells.
    assert code == 0
    code, output = run("verify", "--digest", digest, "--upto", "12")
    assert code == 1 and "MISMATCH at position 12" in output
    _, head = chain_head(auditor.stream(0, 12))
    assert head.hex() != digest


def test_verify_wants_the_position_of_a_digest(history: History) -> None:
    code, output = run("verify", "--digest", "ab" * 32)
    assert code == 2 and "--upto" in output


def test_history_prints_what_customers_typed_literally(shop: Shop, history: History) -> None:
    # Read as Rich markup, the first crashed the command (exit 1) and the second printed
    # a terminal hyperlink.
    reasons = "late [/bold] and [link=https://evil.example]click[/link]"
    cart = shop.open_cart("alice").aggregate
    shop.add_to_cart(cart.id, "TEA-1", 1, owner="alice")
    order = shop.check_out(cart.id, ADDRESS, "ada@example.com", owner="alice").aggregate
    shop.cancel(order.id, reasons, owner="alice")
    code, output = run("history", str(order.id))
    assert code == 0, output
    assert "[/bold]" in output and "[link=https://evil.example]click[/link]" in output
    assert "\x1b]8;" not in output
