"""``eventshop audit``: history, state, export and verify on the configured store."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from cli.main import app
from commands.service import Shop
from projections.audit.auditor import Auditor
from projections.audit.chain import read_export
from projections.audit.receipts import private_key, public_pem
from tests.audit.conftest import ADDRESS, SIGNER, History, Tamper

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


def test_verify_says_unanchored_verified_or_tampered_with_its_exit_code(
    auditor: Auditor,
    history: History,
    tamper: Tamper,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EVENTSHOP_VAR_DIR", str(tmp_path))  # where the signing key is made
    code, output = run("verify")
    assert code == 3 and "unanchored" in output
    code, output = run("receipts", "--issue")
    assert code == 0 and [r["position"] for r in json.loads(output)] == [19]
    code, output = run("verify")
    assert code == 0 and "verified" in output, output
    digest = auditor.digest(upto=12).head
    code, output = run("digest", "--upto", "12")
    assert code == 0 and digest in output
    code, output = run("verify", "--digest", digest, "--upto", "12")
    assert code == 0, output

    tamper.flip_byte(10, 2)
    code, output = run("verify")
    assert code == 1 and "tampered at position 10" in output
    code, output = run("verify", "--digest", digest, "--upto", "12")
    assert code == 1 and "tampered at position 10" in output


def test_an_export_verifies_offline_and_a_changed_byte_is_named(
    auditor: Auditor, history: History, tmp_path: Path
) -> None:
    receipt = auditor.issue_receipt(SIGNER)
    assert receipt is not None
    export, receipts, key = tmp_path / "log.ndjson", tmp_path / "receipts.json", tmp_path / "k"
    lines = list(auditor.export())
    export.write_text("".join(lines))
    receipts.write_text(json.dumps([receipt.as_json()]))
    key.write_text(public_pem(SIGNER.public))
    offline = ("verify", "--export", str(export), "--receipts", str(receipts))
    code, output = run(*offline, "--public-key", str(key))
    assert code == 0 and "verified up to position 19" in output, output

    other = Ed25519PrivateKey.generate().public_key()
    code, output = run(*offline, "--public-key", public_pem(other))
    assert code == 4 and "bad receipt at position 19" in output

    record = json.loads(lines[11])
    state = bytearray(base64.b64decode(record["state"]))
    state[len(state) // 2] ^= 0x01
    record["state"] = base64.b64encode(bytes(state)).decode()
    lines[11] = json.dumps(record) + "\n"
    export.write_text("".join(lines))
    code, output = run(*offline, "--public-key", str(key))
    assert code == 1 and "tampered at position 12" in output


def test_keygen_writes_a_key_once(tmp_path: Path) -> None:
    path = tmp_path / "signing.pem"
    code, output = run("keygen", "--out", str(path))
    assert code == 0 and "key id" in output
    assert path.stat().st_mode & 0o777 == 0o600
    assert private_key(str(path)) is not None
    code, output = run("keygen", "--out", str(path))
    assert code == 2 and "not overwritten" in output


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
