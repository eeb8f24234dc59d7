"""The sealing of personal fields and the data keys' cache, on their own."""

from __future__ import annotations

import json
import os
import pickle
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from domain.order import ERASED_ADDRESS, Order
from domain.personal import ERASED
from eventshop import bootstrap
from eventstore import log, personal
from eventstore.keys import MemoryKeyTable, SQLiteKeyTable
from eventstore.personal import KeyRing, MasterKeyMismatch
from tests.conftest import settings_for
from tests.personal.support import ALICE_ADDRESS, ALICE_EMAIL, encodings


class Clock:
    """Stands in for ``time.monotonic`` in eventstore.personal: time moves when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(personal.time, "monotonic", fake)
    return fake


def placed_event(customer: str = "alice") -> Any:
    return Order.place(
        customer,
        uuid4(),
        {"MUG-1": (1, Decimal("12.50"))},
        ALICE_ADDRESS,
        ALICE_EMAIL,
        currency="EUR",
        payment_due_at=datetime.now(UTC),
    ).collect_events()[0]


def test_personal_fields_are_stored_sealed_and_read_back() -> None:
    keys = KeyRing(MemoryKeyTable(), os.urandom(32))
    mapper = log.mapper(keys)
    event = placed_event()
    stored = mapper.to_stored_event(event)
    assert not any(form in stored.state for form in encodings(ALICE_EMAIL))
    assert not any(form in stored.state for form in encodings(ALICE_ADDRESS.line1))
    read = mapper.to_domain_event(stored)
    assert (read.email, read.shipping_address) == (ALICE_EMAIL, ALICE_ADDRESS.as_dict())
    # Without the keys (or once destroyed), the fields read as erased.
    blind = log.mapper().to_domain_event(stored)
    assert (blind.email, blind.shipping_address) == (ERASED, ERASED_ADDRESS)
    keys.destroy("alice")
    assert mapper.to_domain_event(stored).email == ERASED


def test_a_sealed_value_moved_to_another_event_reads_as_erased() -> None:
    keys = KeyRing(MemoryKeyTable(), os.urandom(32))
    mapper = log.mapper(keys)
    first = mapper.to_stored_event(placed_event())
    second = mapper.to_stored_event(placed_event())
    moved = json.loads(second.state)
    moved["__sealed__"] = json.loads(first.state)["__sealed__"]
    forged = second.__class__(
        second.originator_id, second.originator_version, second.topic, json.dumps(moved).encode()
    )
    assert mapper.to_domain_event(forged).email == ERASED


def test_encryption_switched_off_stores_plain_text_and_still_reads_sealed_events() -> None:
    keys = KeyRing(MemoryKeyTable(), os.urandom(32))
    sealed = log.mapper(keys).to_stored_event(placed_event())
    plain_mapper = log.mapper(keys, encrypt=False)
    plain = plain_mapper.to_stored_event(placed_event())
    assert ALICE_EMAIL.encode() in plain.state
    assert plain_mapper.to_domain_event(sealed).email == ALICE_EMAIL


def test_keys_wrapped_by_another_master_key_are_refused(tmp_path: Path) -> None:
    table = SQLiteKeyTable(str(tmp_path / "keys.db"), wait=1.0)
    table.create_table()
    key_id, _ = KeyRing(table, os.urandom(32)).key_for("alice")
    with pytest.raises(MasterKeyMismatch, match="EVENTSHOP_PERSONAL_DATA_MASTER_KEY"):
        KeyRing(table, os.urandom(32)).key(key_id)


def test_a_key_cached_elsewhere_is_served_at_most_its_lifetime(
    clock: Clock, tmp_path: Path
) -> None:
    """Two processes on one store: the one that did not erase stops using the key once its
    cached copy expires, which is why an erasure waits that long before it answers."""
    table = SQLiteKeyTable(str(tmp_path / "keys.db"), wait=1.0)
    table.create_table()
    master = os.urandom(32)
    eraser = KeyRing(table, master, ttl=5.0)
    other = KeyRing(SQLiteKeyTable(table.path, wait=1.0), master, ttl=5.0)
    key_id, _ = eraser.key_for("alice")
    assert other.key(key_id) is not None  # cached in the other process from now on
    clock.now += 1.0
    assert eraser.destroy("alice") == [key_id]
    assert eraser.key(key_id) is None  # the eraser forgets at once
    assert other.key(key_id) is not None  # ... the other only when its copy expires
    clock.now += 4.0
    assert other.key(key_id) is None
    # A fresh key for a later order; the destroyed one never comes back.
    new_id, _ = eraser.key_for("alice")
    assert new_id != key_id and other.key(key_id) is None


def test_the_cache_is_bounded(clock: Clock) -> None:
    table = MemoryKeyTable()
    keys = KeyRing(table, os.urandom(32), size=2)
    ids = [keys.key_for(f"c{n}")[0] for n in range(3)]
    assert len(keys._by_id._entries) == 2
    assert all(keys.key(key_id) is not None for key_id in ids)


def test_a_key_ring_travels_to_a_rebuild_worker(tmp_path: Path) -> None:
    table = SQLiteKeyTable(str(tmp_path / "keys.db"), wait=1.0)
    table.create_table()
    keys = KeyRing(table, os.urandom(32))
    copy = pickle.loads(pickle.dumps(log.mapper(keys)))
    sealed = log.mapper(keys).to_stored_event(placed_event())
    assert copy.to_domain_event(sealed).email == ALICE_EMAIL
    with pytest.raises(TypeError, match="memory"):
        pickle.dumps(KeyRing(MemoryKeyTable(), os.urandom(32)))


def test_a_process_with_another_master_key_says_so_and_reads_no_sealed_field(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A host given another master key than the deployment's (or none, generating its own
    under var/) says so when it starts, and fails every read of a sealed field rather than
    show it as erased; readers of the bytes alone (verify) still work."""
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    first = bootstrap.open_keys(settings_for(url, personal_data_master_key=None))
    key_id, _ = first.key_for("alice")
    first.close()
    with caplog.at_level("ERROR", logger="eventshop.personal"):
        other = bootstrap.open_keys(
            settings_for(url, personal_data_master_key=personal.new_master_key())
        )
    assert "same EVENTSHOP_PERSONAL_DATA_MASTER_KEY" in caplog.text
    with pytest.raises(MasterKeyMismatch):
        other.key(key_id)
    other.close()


def test_an_unset_master_key_is_generated_once_under_var(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    settings = settings_for(url, var_dir=tmp_path / "var", personal_data_master_key=None)
    first = bootstrap.open_keys(settings)
    key_id, _ = first.key_for("alice")
    first.close()
    assert (tmp_path / "var" / "personal-data-master-key").stat().st_mode & 0o777 == 0o600
    again = bootstrap.open_keys(settings)
    assert again.key(key_id) is not None
    again.close()
