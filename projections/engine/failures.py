"""How feeding a read model fails: :class:`EventFailed` (an event, or a batch from it),
told apart from the database's own failures (``transient``)."""

from __future__ import annotations

import pickle
from typing import Any

from eventsourcing.persistence import Notification

from eventstore.database import is_transient


class EventFailed(Exception):
    """A read model failed on one event of the log: a poison event, or a database outage.

    Not ``exact``: the failure came from a batch starting at that event, and which event
    of the batch caused it is not known (``ReadModel.apply_split`` then finds it).
    """

    def __init__(
        self, model: str, notification: Notification, error: BaseException, *, exact: bool = True
    ) -> None:
        where = "on event" if exact else "in a batch from event"
        super().__init__(
            f"projection {model!r} failed {where} {notification.id} ({notification.topic},"
            f" {notification.originator_id} v{notification.originator_version}):"
            f" {type(error).__name__}: {error}"
        )
        self.model = model
        self.notification = notification
        self.error = error
        self.exact = exact

    def __reduce__(self) -> tuple[Any, ...]:
        # Raised in a worker process that handles a rebuild's batch, it is re-raised in the
        # parent: pickle what the constructor takes (an error that cannot be pickled is
        # sent as its text).
        error = self.error
        try:
            pickle.dumps(error)
        except Exception:
            error = RuntimeError(f"{type(error).__name__}: {error}")
        return (_event_failed, (self.model, self.notification, error, self.exact))

    def as_dict(self) -> dict[str, Any]:
        n = self.notification
        return {
            "position": n.id,
            "topic": n.topic,
            "originator_id": str(n.originator_id),
            "originator_version": n.originator_version,
            "error": f"{type(self.error).__name__}: {self.error}",
        }


class Unblocked(Exception):
    """A run was prepared against other parked events than there are now."""


def transient(error: BaseException) -> bool:
    """Worth trying again as is: the database failed, not the read model's code (an
    ``EventFailed`` is judged by its own error)."""
    return is_transient(error.error if isinstance(error, EventFailed) else error)


def _event_failed(
    model: str, notification: Notification, error: BaseException, exact: bool
) -> EventFailed:
    failed = EventFailed(model, notification, error, exact=exact)
    failed.__cause__ = error
    return failed
