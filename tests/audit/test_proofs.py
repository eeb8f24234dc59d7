"""Inclusion proofs on SQLite and PostgreSQL: fetched over HTTP against a signed receipt,
checked offline with the public key alone, and no longer holding once the event or the
links under the receipt were changed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from api.auth import mint
from cli.main import app as cli_app
from commands.service import Shop
from eventshop.settings import Settings
from projections.audit import merkle
from projections.audit.auditor import Auditor
from projections.audit.proofs import InclusionProof, check_proof
from projections.audit.receipts import (
    RECEIPTS_TABLE,
    Receipt,
    Tree,
    public_key,
    public_pem,
    trusted,
)
from tests.audit.conftest import KEYS, SIGNER, Tamper, make_history

SECRET = "test-secret-of-the-proof-tests-0123456789"
AUDITOR = {"Authorization": f"Bearer {mint(SECRET, 'audit-1', ['auditor'])}"}
STAFF = {"Authorization": f"Bearer {mint(SECRET, 'staff-1', ['staff'])}"}


@pytest.fixture
def client(shop: Shop, audit_url: str, tmp_path: Path) -> Iterator[TestClient]:
    # Receipts only when asked for (POST), so that the test knows where they are.
    settings = Settings(
        database_url=audit_url,
        jwt_secret=SECRET,
        var_dir=tmp_path,
        run_projections=False,
        audit_receipt_events=10**6,
        audit_receipt_seconds=3600,
    )
    with TestClient(create_app(settings, shop=shop)) as test_client:
        yield test_client


def get_proof(client: TestClient, position: int, receipt: int | None = None) -> Any:
    params = {"receipt": receipt} if receipt is not None else {}
    return client.get(f"/api/audit/events/{position}/proof", params=params, headers=AUDITOR)


def keys_of(client: TestClient) -> dict[str, Any]:
    served = client.get("/api/audit/public-key", headers=STAFF).json()
    return trusted([public_key(served["public_key"])])


def test_a_middle_event_proves_against_a_receipt_offline_until_it_is_tampered_with(
    client: TestClient, shop: Shop, tamper: Tamper, auditor: Auditor
) -> None:
    make_history(shop)
    first = client.post("/api/audit/receipts", headers=AUDITOR).json()
    shop.receive_stock("TEA-1", 1)
    second = client.post("/api/audit/receipts", headers=AUDITOR).json()
    assert (first["position"], second["position"]) == (19, 20)
    # The tree the writer extended leaf by leaf is the tree of every link up to there.
    links = [stored for _, stored in auditor.links.between(0, None, 100)]
    for receipt in (first, second):
        size = receipt["position"]
        assert receipt["tree_size"] == size
        assert receipt["tree_root"] == merkle.root(links[:size]).hex()

    answer = get_proof(client, 9, receipt=19)
    assert answer.status_code == 200, answer.json()
    body = answer.json()
    assert body["holds"] is True, body["detail"]
    assert (body["leaf_index"], body["tree_size"], body["receipt"]["position"]) == (8, 19, 19)
    assert len(body["audit_path"]) == 5  # ceil(log2(19))
    assert body["event"]["type"] == "Cart.ItemAdded" and body["root"] == first["tree_root"]
    # Offline: the proof and the public key, nothing else.
    keys = keys_of(client)
    proof = InclusionProof.from_json(json.loads(answer.text))
    assert check_proof(proof, keys) is None
    assert "not trusted" in (check_proof(proof, KEYS) or "")

    # Every event proves against the newest receipt (the default), the last one included.
    for position in range(1, 21):
        every = get_proof(client, position).json()
        assert every["holds"] and every["leaf_index"] == position - 1, every
        assert check_proof(InclusionProof.from_json(every), keys) is None

    tamper.flip_byte(9, 5)
    changed = get_proof(client, 9, receipt=19).json()
    assert changed["holds"] is False and "not the one that was linked" in changed["detail"]
    assert check_proof(InclusionProof.from_json(changed), keys) == changed["detail"]
    # Passing the stored link off with the tampered bytes does not help either.
    changed["event"]["link"] = None
    assert "do not lead to the root" in (check_proof(InclusionProof.from_json(changed), keys) or "")
    assert get_proof(client, 10, receipt=19).json()["holds"] is True  # the others still prove

    # Rewriting every link from there on, as someone with the database can: the links and
    # the event agree again, but not with the tree the receipt signed.
    tamper.relink(auditor, 8)
    relinked = get_proof(client, 12, receipt=19).json()
    assert relinked["holds"] is False and "were rewritten" in relinked["detail"]
    forged = InclusionProof.from_json(relinked)
    assert check_proof(forged, keys) is not None
    # Nor does claiming the receipt's root for the rewritten path.
    claimed = {**relinked, "root": first["tree_root"]}
    assert "do not lead to the root" in (check_proof(InclusionProof.from_json(claimed), keys) or "")


def test_the_proof_route_answers_problems(client: TestClient, shop: Shop, auditor: Auditor) -> None:
    assert get_proof(client, 1).status_code == 404  # an empty log: no event
    make_history(shop)
    no_receipt = get_proof(client, 3)
    assert no_receipt.status_code == 404 and no_receipt.json()["type"].endswith(
        "/problems/receipt-not-found"
    )
    # A receipt made before proofs (v1: no tree) still verifies, but proves nothing.
    auditor.receipts.add(SIGNER.sign(*auditor.links.between(11, 12, 1)[0]))
    assert auditor.verify(KEYS).verified_upto == 12
    client.post("/api/audit/receipts", headers=AUDITOR)
    cases = {
        (999, None): (404, "event-not-found"),
        (3, 7): (404, "receipt-not-found"),
        (15, 12): (422, "not-covered"),
        (3, 12): (409, "unprovable"),
    }
    for (position, receipt), (status, kind) in cases.items():
        answer = get_proof(client, position, receipt)
        problem = answer.json()
        assert (answer.status_code, problem["type"].rpartition("/")[2]) == (status, kind)
        assert answer.headers["content-type"] == "application/problem+json"
        page = client.get(problem["type"].removeprefix("http://testserver"))
        assert page.status_code == 200 and f"(HTTP {status})" in page.text
    assert get_proof(client, 0).status_code == 422
    assert client.get("/api/audit/events/3/proof", headers=STAFF).status_code == 403
    assert get_proof(client, 3, receipt=19).json()["holds"] is True


def test_positions_that_skip_are_leaves_by_rank(
    shop: Shop, auditor: Auditor, tamper: Tamper
) -> None:
    make_history(shop)
    # A log as a PostgreSQL sequence leaves it after a failed write: nothing at 5, and
    # the link at 6 follows the one at 4.
    tamper.delete(5)
    tamper.relink(auditor, 4)
    assert auditor.verify(KEYS).status == "unanchored"
    receipt = auditor.issue_receipt(SIGNER)
    assert receipt is not None and (receipt.position, receipt.tree_size) == (19, 18)
    proof = auditor.proof(9, 19)
    assert proof.leaf_index == 7 and check_proof(proof, KEYS) is None
    assert check_proof(auditor.proof(4), KEYS) is None
    assert check_proof(auditor.proof(6), KEYS) is None


def test_a_receipt_signs_its_tree(shop: Shop, auditor: Auditor) -> None:
    make_history(shop)
    receipt = auditor.issue_receipt(SIGNER)
    assert receipt is not None and receipt.tree is not None and receipt.problem(KEYS) is None
    stripped = Receipt(
        *[getattr(receipt, f) for f in ("position", "link", "time", "key_id")], receipt.signature
    )
    assert stripped.problem(KEYS) is not None  # a v2 receipt is not a v1 one
    resized = Receipt.from_json({**receipt.as_json(), "tree_size": receipt.position - 1})
    assert resized.problem(KEYS) is not None
    old = SIGNER.sign(receipt.position, receipt.link)  # as receipts were made before
    assert old.tree is None and old.problem(KEYS) is None
    assert Receipt.from_json({k: v for k, v in old.as_json().items() if "tree" not in k}) == old


def test_prove_and_check_proof_on_the_command_line(
    shop: Shop,
    audit_url: str,
    auditor: Auditor,
    tamper: Tamper,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EVENTSHOP_DATABASE_URL", audit_url)
    monkeypatch.setenv("EVENTSHOP_VAR_DIR", str(tmp_path))
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        result = runner.invoke(cli_app, ["audit", *args], env={"COLUMNS": "200"})
        return result.exit_code, result.output

    def stdout(*args: str) -> str:
        result = runner.invoke(cli_app, ["audit", *args], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        return result.stdout

    make_history(shop)
    code, output = run("prove", "9")
    assert code == 2 and "no receipt" in output
    code, output = run("receipts", "--issue")
    assert code == 0
    key_file = tmp_path / "public.pem"
    key_file.write_text(stdout("public-key"))
    code, output = run("prove", "9", "--receipt", "19")
    assert code == 0 and "proved" in output and "leaf" in output, output
    proof_file = tmp_path / "proof.json"
    proof_file.write_text(stdout("prove", "9", "--json"))
    assert json.loads(proof_file.read_text())["leaf_index"] == 8
    code, output = run("check-proof", str(proof_file), "--public-key", str(key_file))
    assert code == 0 and "proved" in output, output
    other = tmp_path / "other.pem"
    other.write_text(public_pem(SIGNER.public))
    code, output = run("check-proof", str(proof_file), "--public-key", str(other))
    assert code == 1 and "not trusted" in output
    tamper.flip_byte(9, 5)
    code, output = run("prove", "9", "--receipt", "19")
    assert code == 1 and "fails" in output
    (tmp_path / "junk.json").write_text("{}")
    code, output = run("check-proof", str(tmp_path / "junk.json"), "--public-key", str(key_file))
    assert code == 2 and "not an inclusion proof" in output


def test_verify_rebuilds_the_tree_each_receipt_signs(shop: Shop, auditor: Auditor) -> None:
    make_history(shop)
    position, stored = auditor.links.last() or (0, b"")
    wrong = Tree(position, merkle.root([stored] * position))
    auditor.receipts.add(SIGNER.sign(position, stored, tree=wrong))
    result = auditor.verify(KEYS)
    assert (result.status, result.position) == ("bad receipt", 19), result.detail
    assert "not the tree over the 19 links" in result.detail


def test_a_receipts_table_made_before_proofs_gets_its_tree_columns(
    shop: Shop, auditor: Auditor, tamper: Tamper
) -> None:
    make_history(shop)
    old = SIGNER.sign(*auditor.links.between(11, 12, 1)[0])
    table = RECEIPTS_TABLE if tamper.sqlite else f'"{tamper.schema}".{RECEIPTS_TABLE}'
    tamper._run(f"DROP TABLE {table}")
    tamper._run(
        f"CREATE TABLE {table} (position bigint PRIMARY KEY, link bytea NOT NULL,"
        " time text NOT NULL, key_id text NOT NULL, signature bytea NOT NULL)"
    )
    tamper._run(
        f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?)",
        old.position,
        old.link,
        old.time,
        old.key_id,
        old.signature,
    )
    auditor.create_tables()
    auditor.create_tables()  # once the columns are there, nothing more to do
    assert auditor.all_receipts() == [old]
    assert auditor.issue_receipt(SIGNER) is not None
    assert auditor.verify(KEYS).status == "verified"
