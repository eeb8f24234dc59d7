"""Who caused each stored event, and in answer to which request.

Every event is stored with a small record of its cause: the actor (a token's subject,
or ``"system"``), the actor's role(s), and the correlation id of the request that
made it. The record lives in the stored event's state under a reserved key, added
by :class:`CausedMapper` on write and taken off again on read, so domain events and
aggregates never see it while auditors read it back from the stored record.

The cause of the current unit of work is held in a context variable. The HTTP edge
opens one per request (:func:`caused_by`, with the request id) and fills in the
caller once the token is checked (:func:`identify`). The record is a mutable object
shared by reference because FastAPI runs sync dependencies and routes in worker
threads, each on a *copy* of the request's context: a value ``set()`` in a
dependency would not reach the route, but a change to the shared object does.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Mapper, StoredEvent

from eventstore.personal import SEALED_KEY, Sealer

# The key under which the cause is stored; no domain event has an attribute by that name.
CAUSE_KEY = "__cause__"
SYSTEM = "system"


@dataclass
class Cause:
    """Who caused the events of one unit of work, and in answer to which request."""

    actor: str = SYSTEM
    role: str | None = None
    correlation_id: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        # Spelled out: dataclasses.asdict deep-copies field by field, once per stored event.
        return {"actor": self.actor, "role": self.role, "correlation_id": self.correlation_id}


_current: ContextVar[Cause | None] = ContextVar("eventshop_cause", default=None)


def current_cause() -> Cause:
    """The cause events written now are stamped with (``system`` when nobody set one)."""
    return _current.get() or Cause()


@contextmanager
def caused_by(
    actor: str = SYSTEM, role: str | None = None, correlation_id: str | None = None
) -> Iterator[Cause]:
    """Stamp the events written inside the block with this cause.

    The HTTP request-id middleware opens one per request with just the correlation id;
    :func:`identify` fills in the caller later. Scripts and tests name an actor directly.
    """
    cause = Cause(actor, role, correlation_id)
    token = _current.set(cause)
    try:
        yield cause
    finally:
        _current.reset(token)


def identify(actor: str, roles: Iterable[str]) -> None:
    """Record the authenticated caller as the actor of the current request's events.

    Several roles are kept as one comma-separated string (``"auditor,staff"``).
    """
    role = ",".join(sorted(roles)) or None
    cause = _current.get()
    if cause is None:
        # No request scope is open (a script, a test): only this context sees it.
        _current.set(Cause(actor, role))
    else:
        cause.actor, cause.role = actor, role


class CausedMapper(Mapper[UUID]):
    """A mapper that stores each event's cause with it and strips it when reading back.

    With a ``sealer`` (``eventstore/personal.py``) it also encrypts the personal fields
    an event class declares before storing, and decrypts them (or shows them erased)
    when reading back; without one, sealed fields read as erased.
    """

    def __init__(self, *args: Any, sealer: Sealer | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sealer = sealer or Sealer(None, self.transcoder.encode, self.transcoder.decode)

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        # Encode a stand-in carrying the cause, so the caller's event stays untouched.
        stand_in = object.__new__(type(domain_event))
        state = {**vars(domain_event), CAUSE_KEY: current_cause().as_dict()}
        self.sealer.seal(type(domain_event), state)
        object.__setattr__(stand_in, "__dict__", state)
        return super().to_stored_event(stand_in)

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[UUID]:
        return self.decode(stored_event)[0]

    def decode(self, stored_event: StoredEvent) -> tuple[DomainEventProtocol[UUID], Cause | None]:
        """The domain event and its cause (None for an event stored without one)."""
        domain_event = super().to_domain_event(stored_event)
        state = vars(domain_event)
        stored: dict[str, Any] | None = state.pop(CAUSE_KEY, None)
        if SEALED_KEY in state:
            self.sealer.unseal(type(domain_event), state)
        return domain_event, Cause(**stored) if stored is not None else None
