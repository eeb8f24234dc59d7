"""The tamper evidence of the log: the SHA-256 hash chain over its stored events.

The chain's links are defined in ``eventstore/links.py`` (the write side stores one
with every event); here is the chain head over a run of events, the values an auditor
keeps (:class:`Checkpoint`, :class:`Digest`), and how an export carries each event's
exact stored bytes and link so that it can be checked away from the store.

Pure: no database here.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Notification

from domain.errors import InvalidValue
from eventstore.links import GENESIS, link

__all__ = ["GENESIS", "Checkpoint", "Digest", "chain_head", "chain_link", "read_export"]


def chain_link(previous: bytes, event: Notification) -> bytes:
    """The next head of the chain: ``previous`` extended by one stored event."""
    return link(
        previous, event.id, event.originator_id, event.originator_version, event.topic, event.state
    )


def chain_head(events: Iterable[Notification]) -> tuple[int, bytes]:
    """How many events there are and the chain head over them, in the order given."""
    head, count = GENESIS, 0
    for event in events:
        head, count = chain_link(head, event), count + 1
    return count, head


@dataclass(frozen=True)
class Checkpoint:
    """The chain head over every event up to ``position``, and how many there were."""

    position: int
    events: int
    head: bytes


@dataclass(frozen=True)
class Digest:
    """A chain head to keep: later, ``verify(digest=head, upto=upto)`` proves nothing changed."""

    upto: int
    events: int
    head: str


def digest_bytes(digest: str) -> bytes:
    """The head a hex digest names; InvalidValue unless it is 64 hexadecimal digits."""
    try:
        value = bytes.fromhex(digest)
    except ValueError:
        value = b""
    if len(value) != 32:
        raise InvalidValue("digest", "a digest is 64 hexadecimal digits (a SHA-256 hash)")
    return value


def export_record(
    item: dict[str, object], stored: Notification, stored_link: bytes | None
) -> dict[str, object]:
    """One line of an export: the event as auditors see it, plus its exact stored bytes
    and the link stored with it (null if it has none)."""
    return {
        **item,
        "topic": stored.topic,
        "state": base64.b64encode(stored.state).decode(),
        "link": stored_link.hex() if stored_link is not None else None,
    }


def read_export(lines: Iterable[str | bytes]) -> Iterator[Notification]:
    """The stored events an export holds, exactly as they were stored."""
    for _, stored, _ in read_export_links(lines):
        yield stored


def read_export_links(
    lines: Iterable[str | bytes],
) -> Iterator[tuple[int, Notification, bytes | None]]:
    """Each event of an export with its position and the link exported with it."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            stored, stored_link = read_record(json.loads(line))
        except (ValueError, KeyError, TypeError) as error:
            raise InvalidValue(
                "export", f"line {number} is not an exported event: {error}"
            ) from None
        yield stored.id, stored, stored_link


def read_record(record: Mapping[str, Any]) -> tuple[Notification, bytes | None]:
    """The stored event and link of one :func:`export_record`; ValueError, KeyError or
    TypeError if it is not one."""
    stored = Notification(
        id=int(record["position"]),
        originator_id=UUID(record["aggregate_id"]),
        originator_version=int(record["version"]),
        topic=str(record["topic"]),
        state=base64.b64decode(record["state"]),
    )
    exported = record.get("link")
    return stored, bytes.fromhex(exported) if exported is not None else None
