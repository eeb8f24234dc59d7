"""The tamper evidence of the log: a SHA-256 hash chain over its stored events.

Link *n* hashes link *n-1* with the event's position, aggregate id, version, topic and
stored state bytes (variable-length fields length-prefixed, so no two events hash alike
by shifting bytes between fields). Changing a byte, deleting, inserting or moving an
event changes every head from there on; positions that legitimately skip (PostgreSQL
sequences do after a failed write) are harmless because the chain covers whichever
positions exist.

Pure: no database here. The values a chain yields (:class:`Checkpoint`, :class:`Digest`,
:class:`Verification`), how a recomputed head is compared with a recorded one, and how
an export is read back into stored events, so that it can be checked away from the store.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from uuid import UUID

from eventsourcing.persistence import Notification

from domain.errors import InvalidValue

GENESIS = bytes(32)
"""The head of the chain over no events."""
# The given digest of a verification names a head, not how many events it covers.
ANY_COUNT = -1

_U32, _U64, _VERSION_TOPIC = struct.Struct(">I"), struct.Struct(">Q"), struct.Struct(">QI")


def chain_link(previous: bytes, event: Notification) -> bytes:
    """The next head of the chain: ``previous`` extended by one stored event."""
    oid = event.originator_id
    oid_bytes = oid.bytes if isinstance(oid, UUID) else str(oid).encode()
    topic = _encoded_topic(event.topic)
    state = event.state
    return hashlib.sha256(
        b"".join(
            (
                previous,
                _U64.pack(event.id),
                _U32.pack(len(oid_bytes)),
                oid_bytes,
                _VERSION_TOPIC.pack(event.originator_version, len(topic)),
                topic,
                _U32.pack(len(state)),
                state,
            )
        )
    ).digest()


@lru_cache(maxsize=1024)
def _encoded_topic(topic: str) -> bytes:
    # A log has few distinct topics; encoding each once saves time on every link.
    return topic.encode()


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


@dataclass(frozen=True)
class Verification:
    """The outcome of recomputing the chain against the checkpoints and a given digest.

    ``first_bad`` is the first position whose recorded head no longer matches: the
    change lies after ``last_good`` and at or before ``first_bad``.
    """

    ok: bool
    upto: int
    events: int
    head: str
    compared: int
    first_bad: int | None = None
    last_good: int = 0
    detail: str = "the log matches every checkpoint"


def digest_bytes(digest: str) -> bytes:
    """The head a hex digest names; InvalidValue unless it is 64 hexadecimal digits."""
    try:
        value = bytes.fromhex(digest)
    except ValueError:
        value = b""
    if len(value) != 32:
        raise InvalidValue("digest", "a digest is 64 hexadecimal digits (a SHA-256 hash)")
    return value


def compare(
    expected: Checkpoint, count: int, head: bytes, last_good: int, compared: int, upto: int
) -> Verification | None:
    """None when the chain recomputed up to ``expected.position`` (``count`` events, ending
    in ``head``) matches what was recorded there; else the failed verification."""
    if head == expected.head and expected.events in (count, ANY_COUNT):
        return None
    if expected.events not in (count, ANY_COUNT):
        what = f"{count} events up to it where {expected.events} were recorded: events were"
        detail = f"{what} deleted or inserted"
    else:
        detail = "an event was changed, deleted, inserted or moved"
    return Verification(
        False,
        upto,
        count,
        head.hex(),
        compared + 1,
        first_bad=expected.position,
        last_good=last_good,
        detail=(
            f"the log differs at or before position {expected.position}"
            f" (after position {last_good}): {detail}"
        ),
    )


def export_record(item: dict[str, object], stored: Notification) -> dict[str, object]:
    """One line of an export: the event as auditors see it, plus its exact stored bytes."""
    return {**item, "topic": stored.topic, "state": base64.b64encode(stored.state).decode()}


def read_export(lines: Iterable[str | bytes]) -> Iterator[Notification]:
    """The stored events an export holds, exactly as they were stored."""
    for line in lines:
        if not line.strip():
            continue
        record = json.loads(line)
        yield Notification(
            id=record["position"],
            originator_id=UUID(record["aggregate_id"]),
            originator_version=record["version"],
            topic=record["topic"],
            state=base64.b64decode(record["state"]),
        )
