"""Tamper evidence: every event's link, the receipts that anchor them, and verify.

Each test runs on SQLite and PostgreSQL (``audit_url``); tampering is plain SQL on the
database, as an attacker with access to it would do.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from commands.service import Shop
from domain.errors import InvalidValue
from eventshop.bootstrap import link_log
from projections.audit.auditor import Auditor
from projections.audit.chain import GENESIS, chain_head
from projections.audit.receipts import Receipt, Signer
from tests.audit.conftest import KEYS, SIGNER, History, Tamper, contents
from tests.conftest import settings_for


def test_a_log_no_receipt_covers_is_unanchored_not_ok(auditor: Auditor, history: History) -> None:
    result = auditor.verify(KEYS)
    assert (result.status, result.events, result.upto, result.verified_upto) == (
        "unanchored",
        19,
        19,
        0,
    )
    assert not result.ok and result.exit_code == 3


def test_a_receipt_verifies_up_to_it_and_verify_writes_nothing(
    shop: Shop, auditor: Auditor, history: History, audit_url: str
) -> None:
    receipt = auditor.issue_receipt(SIGNER)
    assert receipt is not None and receipt.position == 19
    before = contents(audit_url)
    result = auditor.verify(KEYS)
    assert (result.status, result.verified_upto, result.anchors) == ("verified", 19, 1)
    assert contents(audit_url) == before
    shop.receive_stock("TEA-1", 1)
    later = auditor.verify(KEYS)
    assert (later.status, later.verified_upto, later.upto) == ("unanchored", 19, 20)


def _flip(tamper: Tamper, position: int) -> None:
    tamper.flip_byte(position, len(tamper.state(position)) // 2)


TAMPERING: dict[str, Callable[[Tamper, int], None]] = {
    "state": _flip,
    "topic": Tamper.set_topic,
    "version": Tamper.set_version,
    "aggregate": Tamper.set_aggregate,
    "delete": Tamper.delete,
    "swap": lambda tamper, position: tamper.swap(position, position + 1),
}


@pytest.mark.parametrize(
    ("how", "position"),
    [
        ("state", 1),
        ("state", 10),
        ("state", 19),
        ("topic", 1),
        ("version", 10),
        ("aggregate", 19),
        ("delete", 10),
        ("delete", 19),
        ("swap", 1),
        ("swap", 18),
    ],
)
def test_verify_names_the_exact_position(
    auditor: Auditor, history: History, tamper: Tamper, how: str, position: int
) -> None:
    auditor.issue_receipt(SIGNER)
    TAMPERING[how](tamper, position)
    result = auditor.verify(KEYS)
    assert (result.status, result.position, result.exit_code) == ("tampered", position, 1)


def test_an_inserted_event_is_named(auditor: Auditor, history: History, tamper: Tamper) -> None:
    inserted = tamper.insert_copy(4)
    result = auditor.verify(KEYS)
    assert (result.status, result.position) == ("tampered", inserted)
    assert "no link" in result.detail


def test_a_rewritten_and_relinked_log_is_caught_by_the_receipt(
    shop: Shop, auditor: Auditor, history: History, tamper: Tamper
) -> None:
    auditor.issue_receipt(SIGNER)  # at 19
    for _ in range(3):
        shop.receive_stock("TEA-1", 1)
    auditor.issue_receipt(SIGNER)  # at 22
    _flip(tamper, 20)
    tamper.relink(auditor, 19)
    result = auditor.verify(KEYS)
    # Every link matches its event again: only the receipt after the change can tell.
    assert (result.status, result.position, result.after) == ("tampered", 22, 19)
    _flip(tamper, 5)
    tamper.relink(auditor, 0)
    result = auditor.verify(KEYS)
    assert (result.status, result.position, result.after) == ("tampered", 19, 0)


def test_the_newest_event_deleted_with_its_link_is_caught_by_its_receipt(
    auditor: Auditor, history: History, tamper: Tamper
) -> None:
    auditor.issue_receipt(SIGNER)
    tamper.delete(19)
    tamper.delete_link(19)
    result = auditor.verify(KEYS)
    assert (result.status, result.position) == ("tampered", 19)


def test_a_receipt_another_key_signed_or_altered_proves_nothing(
    auditor: Auditor, history: History
) -> None:
    genuine = auditor.issue_receipt(SIGNER)
    assert genuine is not None
    forged = Signer(Ed25519PrivateKey.generate()).sign(19, genuine.link)
    result = auditor.verify(KEYS, receipts=[forged])
    assert (result.status, result.position, result.exit_code) == ("bad receipt", 19, 4)
    altered = Receipt(18, genuine.link, genuine.time, genuine.key_id, genuine.signature)
    assert auditor.verify(KEYS, receipts=[altered]).status == "bad receipt"
    assert auditor.verify(KEYS, receipts=[genuine]).status == "verified"


def test_a_digest_anchors_like_a_receipt(auditor: Auditor, history: History) -> None:
    digest = auditor.digest(upto=12)
    result = auditor.verify(KEYS, digest.head, upto=12)
    assert (result.status, result.verified_upto, result.events) == ("verified", 12, 12)
    other = auditor.digest(upto=11).head
    assert auditor.verify(KEYS, other, upto=12).status == "tampered"
    with pytest.raises(InvalidValue) as bad_digest:
        auditor.verify(KEYS, "not-hex", upto=3)
    assert bad_digest.value.field == "digest"


def test_the_digest_is_the_chain_over_the_stored_events(auditor: Auditor, history: History) -> None:
    count, head = chain_head(auditor.stream())
    assert auditor.digest().head == head.hex() and count == 19
    assert auditor.links.last() == (19, head)
    assert auditor.digest(upto=0).head == GENESIS.hex()
    with pytest.raises(InvalidValue) as beyond:
        auditor.digest(upto=auditor.head() + 1)
    assert beyond.value.field == "upto"


def test_a_log_written_before_links_is_linked_once_from_its_checkpoints(
    shop: Shop, auditor: Auditor, history: History, tamper: Tamper, audit_url: str
) -> None:
    assert auditor.checkpoint() is not None  # heads at 4, 8, 12, 16, as workers kept them
    tamper._run("DELETE FROM {l}")  # as before links existed
    _flip(tamper, 10)  # changed then: the checkpoint at 12 no longer matches
    report = link_log(settings_for(audit_url))
    assert report is not None
    assert (report.first, report.last, report.events) == (1, 19, 19)
    assert (report.anchored_upto, report.checkpoints, report.mismatch_at) == (8, 2, 12)
    assert "positions 9-19 were linked as found" in report.detail
    assert link_log(settings_for(audit_url)) is None  # once
    assert auditor.verify(KEYS).status == "unanchored"
    shop.receive_stock("TEA-1", 1)  # the writer chains on from the migrated links
    assert auditor.verify(KEYS).upto == 20
