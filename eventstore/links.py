"""The hash link written with every event: ``link(n) = SHA-256(link(n-1) ‖ event n)``.

Both sides need it: the write side computes the links of the events it appends, under
the lock that orders positions and in the same transaction (``commands/group_commit.py``,
``commands/idempotency.py``); the auditor recomputes them (``projections/audit``).

An event is hashed with its position, aggregate id, version, topic and stored state
bytes, the variable-length fields length-prefixed, so that no two events hash alike by
shifting bytes between fields. Changing a byte, deleting, inserting or moving an event
changes its link and every one after it; positions that legitimately skip (PostgreSQL
sequences do after a failed write) are harmless, as the chain covers the positions that
exist. The links live in their own table, ``audit_links`` (position, link), beside the
log: an event deleted without its link, or inserted without one, shows.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from functools import lru_cache
from typing import Any
from uuid import UUID

LINKS_TABLE = "audit_links"
GENESIS = bytes(32)
"""The link before the first event."""

_U32, _U64, _VERSION_TOPIC = struct.Struct(">I"), struct.Struct(">Q"), struct.Struct(">QI")


def link(
    previous: bytes, position: int, originator_id: Any, version: int, topic: str, state: bytes
) -> bytes:
    """The link of the event at ``position``, following ``previous``."""
    oid = originator_id.bytes if isinstance(originator_id, UUID) else str(originator_id).encode()
    encoded_topic = _encoded(topic)
    return hashlib.sha256(
        b"".join(
            (
                previous,
                _U64.pack(position),
                _U32.pack(len(oid)),
                oid,
                _VERSION_TOPIC.pack(version, len(encoded_topic)),
                encoded_topic,
                _U32.pack(len(state)),
                state,
            )
        )
    ).digest()


@lru_cache(maxsize=1024)
def _encoded(topic: str) -> bytes:
    # A log has few distinct topics; encoding each once saves time on every link.
    return topic.encode()


def chain(
    previous: bytes | None, events: Iterable[tuple[int, Any]]
) -> tuple[list[int], list[bytes]]:
    """The positions and links of ``events`` ((position, stored event) in position order)
    after the link ``previous`` (None: the first events of the log)."""
    head = previous if previous is not None else GENESIS
    positions, links = [], []
    for position, event in events:
        uuid = event.originator_id
        oid = uuid if isinstance(uuid, UUID) else UUID(str(uuid))
        head = link(head, position, oid, event.originator_version, event.topic, event.state)
        positions.append(position)
        links.append(head)
    return positions, links


SQLITE_TABLE = (
    f"CREATE TABLE IF NOT EXISTS {LINKS_TABLE} (position INTEGER PRIMARY KEY, link BLOB NOT NULL)"
)
