"""Tamper evidence: any change to the stored log is found by verify and moves the digest."""

from __future__ import annotations

import pytest

from commands.service import Shop
from domain.errors import InvalidValue
from eventshop.bootstrap import open_auditor
from projections.audit.auditor import Auditor
from projections.audit.chain import GENESIS, chain_head, read_export
from tests.audit.conftest import History, Tamper


def kept(auditor: Auditor) -> tuple[str, int]:
    """Record checkpoints and take a digest of the whole log, as an auditor would."""
    assert auditor.verify().ok
    digest = auditor.digest()
    return digest.head, digest.upto


def test_an_untouched_log_verifies_and_keeps_checkpoints(
    auditor: Auditor, history: History
) -> None:
    result = auditor.verify()
    assert result.ok and result.first_bad is None
    assert result.events == auditor.head() == 19
    assert auditor.checkpoints.last() is not None
    # Checkpoints every 4 events: positions 4, 8, 12, 16; verifying again compares them.
    again = auditor.verify()
    assert again.ok and again.compared == 4 and again.last_good == 16


def test_the_digest_is_the_chain_over_the_stored_events(auditor: Auditor, history: History) -> None:
    count, head = chain_head(auditor.stream())
    assert auditor.digest().head == head.hex() and count == 19
    assert auditor.digest(upto=0).head == GENESIS.hex()
    assert auditor.digest(upto=5).head != auditor.digest(upto=6).head
    assert auditor.verify(auditor.digest(upto=7).head, upto=7).ok


def test_checkpoint_extends_incrementally_like_a_full_verify(shop: Shop, history: History) -> None:
    incremental = open_auditor(shop, checkpoint_every=4)
    first = incremental.checkpoint()
    assert first is not None and first.position == 16
    shop.receive_stock("TEA-1", 1)
    shop.receive_stock("TEA-1", 1)
    latest = incremental.checkpoint()
    assert latest is not None and latest.position == 20 and latest.events == 20
    _, head = chain_head(incremental.stream(0, 20))
    assert latest.head == head
    assert incremental.verify().ok


@pytest.mark.parametrize("where", ["first", "middle", "last"])
@pytest.mark.parametrize("position", [1, 10, 16])
def test_changing_any_byte_of_a_stored_event_is_found(
    auditor: Auditor, history: History, tamper: Tamper, position: int, where: str
) -> None:
    digest, upto = kept(auditor)
    size = len(tamper.state(position))
    tamper.flip_byte(position, {"first": 0, "middle": size // 2, "last": size - 1}[where])

    result = auditor.verify()
    assert not result.ok
    # The change lies after the last good checkpoint and at or before the first bad one.
    assert result.first_bad == min(p for p in (4, 8, 12, 16) if p >= position)
    assert result.last_good < position
    assert auditor.digest(upto).head != digest
    against_digest = auditor.verify(digest, upto)
    assert not against_digest.ok


def test_a_change_after_the_last_checkpoint_is_found_by_the_digest(
    auditor: Auditor, history: History, tamper: Tamper
) -> None:
    digest, upto = kept(auditor)
    tamper.flip_byte(18, 5)
    assert auditor.verify().ok  # no checkpoint covers position 18 yet
    result = auditor.verify(digest, upto)
    assert not result.ok and result.first_bad == upto and result.last_good == 16


def test_with_a_checkpoint_per_event_verify_names_the_exact_position(
    shop: Shop, history: History, tamper: Tamper
) -> None:
    exact = open_auditor(shop, checkpoint_every=1)
    assert exact.verify().ok
    tamper.flip_byte(11, 3)
    result = exact.verify()
    assert (result.ok, result.first_bad, result.last_good) == (False, 11, 10)


def test_deleting_an_event_is_found(auditor: Auditor, history: History, tamper: Tamper) -> None:
    digest, upto = kept(auditor)
    tamper.delete(6)
    result = auditor.verify()
    assert (result.ok, result.first_bad, result.last_good) == (False, 8, 4)
    assert "deleted or inserted" in result.detail
    assert auditor.digest(upto).head != digest
    assert not auditor.verify(digest, upto).ok


def test_deleting_the_event_a_checkpoint_sits_on_is_found(
    auditor: Auditor, history: History, tamper: Tamper
) -> None:
    kept(auditor)
    tamper.delete(8)
    result = auditor.verify()
    assert (result.ok, result.first_bad) == (False, 8)


def test_deleting_the_last_event_is_found_by_the_digest(
    auditor: Auditor, history: History, tamper: Tamper
) -> None:
    digest, upto = kept(auditor)
    tamper.delete(19)
    assert auditor.head() == 18
    assert auditor.verify().ok  # every checkpoint still holds: only the digest can tell
    result = auditor.verify(digest, upto)
    assert (result.ok, result.first_bad, result.last_good) == (False, 19, 16)


@pytest.mark.parametrize(("first", "second"), [(5, 6), (2, 17), (15, 16)])
def test_swapping_two_events_is_found(
    auditor: Auditor, history: History, tamper: Tamper, first: int, second: int
) -> None:
    digest, upto = kept(auditor)
    tamper.swap(first, second)
    assert auditor.head() == upto  # the same positions, in another order
    result = auditor.verify()
    assert not result.ok and result.last_good < first <= (result.first_bad or 0)
    assert auditor.digest(upto).head != digest
    assert not auditor.verify(digest, upto).ok


def test_swapping_the_contents_of_two_events_is_found(
    auditor: Auditor, history: History, tamper: Tamper
) -> None:
    digest, upto = kept(auditor)
    first, second = tamper.state(9), tamper.state(10)
    tamper.set_state(9, second)
    tamper.set_state(10, first)
    assert not auditor.verify().ok
    assert auditor.digest(upto).head != digest


def test_a_failed_verify_keeps_no_new_checkpoints(
    shop: Shop, history: History, tamper: Tamper
) -> None:
    auditor = open_auditor(shop, checkpoint_every=4)
    assert auditor.verify(upto=8).ok
    tamper.flip_byte(3, 0)
    assert not auditor.verify().ok
    last = auditor.checkpoints.last()
    assert last is not None and last.position == 8


def test_an_export_verifies_offline_against_the_digest(auditor: Auditor, history: History) -> None:
    digest = auditor.digest()
    count, head = chain_head(read_export(auditor.export()))
    assert (count, head.hex()) == (digest.events, digest.head)


def test_a_malformed_digest_or_position_is_refused(auditor: Auditor, history: History) -> None:
    with pytest.raises(InvalidValue) as bad_digest:
        auditor.verify("not-hex", upto=3)
    assert bad_digest.value.field == "digest"
    with pytest.raises(InvalidValue) as beyond:
        auditor.digest(upto=auditor.head() + 1)
    assert beyond.value.field == "upto"
