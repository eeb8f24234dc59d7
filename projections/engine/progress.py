"""How far a running rebuild (or a reset's catch-up) has got: :class:`Progress`, kept by the
process that runs it and published every second in the versions table, where every
other process reads it (:func:`published_rebuild`)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from projections.engine.outcome import RebuildOutcome

HEARTBEAT_SECONDS = 1.0
"""How often a running rebuild publishes its progress."""
STALE_AFTER_SECONDS = 15.0
"""A published rebuild this long without news was interrupted (its process died)."""


@dataclass
class Progress:
    """How far a rebuild (or a reset's catch-up) has got."""

    name: str
    worker: str
    started_at: str
    phase: str = "copying"
    """``copying``, ``indexing``, ``swapping``, then ``done`` or ``failed``."""
    position: int = 0
    target: int = 0
    """The head of the log, last seen."""
    events: int = 0
    """Events of the log read into the copy so far (the copy's own and those it has
    nothing to do with: every event up to ``position``)."""
    total: int = 0
    """Events of the log up to ``target``: what ``events`` counts towards. Positions
    and events differ where PostgreSQL's positions have gaps."""
    events_per_second: float = 0.0
    _window: deque[tuple[float, int]] = field(default_factory=deque, repr=False)

    @property
    def eta_seconds(self) -> float | None:
        if self.position >= self.target or self.events >= self.total:
            return 0.0
        if not self.events_per_second:
            return None
        return round((self.total - self.events) / self.events_per_second, 1)

    def aim(self, target: int, events: int) -> None:
        """The log's head is now ``target``, with ``events`` more events up to it than
        the last target had."""
        self.target = target
        self.total = max(self.total + events, self.events)

    def advance(self, position: int, events: int) -> None:
        """The copy got to ``position``, past ``events`` more events of the log."""
        now = time.monotonic()
        self.position = position
        self.events += events
        self.total = max(self.total, self.events)
        self._window.append((now, events))
        while self._window and self._window[0][0] < now - 5.0:
            self._window.popleft()
        span = max(now - self._window[0][0], 1.0) if self._window else 1.0
        self.events_per_second = round(sum(n for _, n in self._window) / span, 1)

    def as_dict(self) -> dict[str, Any]:
        """Plain values for JSON (read from other threads while the rebuild goes on)."""
        answer = {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}
        return {**answer, "eta_seconds": self.eta_seconds}


ProgressCallback = Callable[[Progress], None]


def published_rebuild(
    row: Mapping[str, Any] | None, alive: bool | None
) -> tuple[dict[str, Any] | None, RebuildOutcome | None]:
    """The rebuild another process published in the versions table: (running, None)
    while it gives news, or (None, how it ended) once its process died. ``alive``:
    whether its lock is held (None: unknown; then news older than 15 s means dead)."""
    published = (row or {}).get("rebuild")
    if not published:
        return None, None
    beat = datetime.fromisoformat(published["heartbeat_at"]).timestamp()
    if alive or (alive is None and beat > time.time() - STALE_AFTER_SECONDS):
        return published, None
    return None, RebuildOutcome(
        worker=published["worker"],
        started_at=published["started_at"],
        position=published["position"],
        events=published.get("events"),
        error=f"interrupted at position {published['position']} (no news since"
        f" {published['heartbeat_at']}); the live copy was not touched",
        transient=True,
    )
