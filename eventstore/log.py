"""The shop's event log as both sides see it: its name, its table and its mapper.

The write side appends to the log through ``commands.service.Shop`` (an eventsourcing
``Application``); the read side (read models, audit) reads it with a recorder of its
own. Both must agree on where the log is and how a stored event is decoded: that is
what this module holds, so that neither side needs the other to read it.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.persistence import DatetimeAsISO, DecimalAsStr, Mapper, UUIDAsHex

from eventstore.causes import CausedMapper
from eventstore.personal import KeyRing, Sealer
from eventstore.transcoder import ShopTranscoder
from eventstore.url import StoreURL

# The eventsourcing application name of the write side: it names the log's table and
# the upstream every tracking record refers to.
LOG_NAME = "Shop"


def events_table(store: StoreURL) -> str:
    """The name of the table holding the log (what the library calls it for LOG_NAME)."""
    return f"{LOG_NAME.lower()}_events" if store.is_postgres else "stored_events"


def transcoder() -> ShopTranscoder:
    """The transcoder of stored events: JSON with UUIDs, decimals and datetimes."""
    transcoder = ShopTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    return transcoder


def mapper(keys: KeyRing | None = None, *, encrypt: bool = True, **kwargs: Any) -> Mapper[UUID]:
    """The mapper of stored events: each one carries who caused it (``eventstore.causes``);
    personal fields are sealed with their subject's key from ``keys``
    (``eventstore.personal``; without keys, sealed fields read as erased; with
    ``encrypt`` off, new events are stored in plain text).

    ``kwargs`` are the library's mapper options (``cipher``, ``compressor``).
    """
    codec = transcoder()
    sealer = Sealer(keys, codec.encode, codec.decode, encrypt=encrypt)
    return CausedMapper(transcoder=codec, sealer=sealer, **kwargs)
