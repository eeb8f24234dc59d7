"""What a command did, and how it ended, for the callers of the service and its
observers (metrics)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from domain.errors import ConcurrencyConflict, DomainError, StaleVersion


@dataclass(frozen=True)
class Done:
    """What a command did: the aggregate it is about, and its last event's log position."""

    aggregate: Any
    position: int
    # True when answered from an earlier execution with the same idempotency key.
    replayed: bool = False

    @property
    def version(self) -> int:
        return int(self.aggregate.version)


class CommandObserver(Protocol):
    """Told what commands do, for metrics (api/observability.py); must not raise."""

    def command_retried(self, command: str) -> None:
        """A command lost a concurrency race and is run again."""

    def command_finished(self, command: str, outcome: str) -> None:
        """A command ended: ``ok``, ``replayed``, ``refused``, ``conflict`` or ``error``."""


def outcome_of(error: BaseException | None) -> str:
    """How a command that raised ``error`` (None: did not raise) ended, for observers."""
    if error is None:
        return "ok"
    if isinstance(error, ConcurrencyConflict | StaleVersion):
        return "conflict"
    return "refused" if isinstance(error, DomainError) else "error"
