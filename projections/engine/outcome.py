"""How a rebuild (or a reset) ended: :class:`RebuildOutcome`, with the :class:`Comparison`
of the live tables and the new copy at the swap.

The rebuilder returns it, records it as JSON (``as_dict``) in the versions table, from
where every process's ``status()`` serves it as ``last_rebuild``; ``from_dict`` reads it
back, whichever version of the code wrote it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class TableComparison:
    """One table, live copy against new copy: rows and an order-independent checksum
    (None where the copy has no such table)."""

    live_rows: int | None = None
    new_rows: int | None = None
    live_checksum: str | None = None
    new_checksum: str | None = None

    @property
    def equal(self) -> bool:
        return (self.live_rows, self.live_checksum) == (self.new_rows, self.new_checksum)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "equal": self.equal}


@dataclass(frozen=True)
class Comparison:
    """The live tables against the new copy, in the swap's transaction."""

    live_position: int
    new_position: int
    tables: dict[str, TableComparison] = field(default_factory=dict)
    live_parked: int = 0
    """Events parked in the live copy at the swap."""
    new_parked: int = 0
    """Events parked in the new copy: those the live copy had parked when the rebuild
    started (kept parked, not applied), and those the new code failed on."""
    kept_parked: int = 0
    """Of ``new_parked``, those kept parked from the live copy."""
    parked_equal: bool = True
    """Whether both copies had the same events parked."""

    @property
    def differences(self) -> list[str]:
        """The tables whose rows differ."""
        return [name for name, table in self.tables.items() if not table.equal]

    @property
    def equal(self) -> bool:
        """Same rows in every table and the same events parked, at the same position."""
        return (
            not self.differences
            and self.live_position == self.new_position
            and self.parked_equal
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "equal": self.equal,
            "live_position": self.live_position,
            "new_position": self.new_position,
            "differences": self.differences,
            "tables": {name: table.as_dict() for name, table in self.tables.items()},
            "parked": {
                "live": self.live_parked,
                "new": self.new_parked,
                "kept": self.kept_parked,
                "equal": self.parked_equal,
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Comparison:
        known = {f.name for f in fields(TableComparison)}
        parked = data.get("parked") or {}
        return cls(
            live_position=int(data["live_position"]),
            new_position=int(data["new_position"]),
            tables={
                name: TableComparison(**{k: v for k, v in table.items() if k in known})
                for name, table in data.get("tables", {}).items()
            },
            live_parked=int(parked.get("live", 0)),
            new_parked=int(parked.get("new", 0)),
            kept_parked=int(parked.get("kept", 0)),
            parked_equal=bool(parked.get("equal", True)),
        )


@dataclass(frozen=True)
class RebuildOutcome:
    """How a rebuild or a reset ended. ``error`` is None when it succeeded; a rebuild
    that succeeded has its ``comparison``; a reset has ``reset`` and no comparison."""

    worker: str | None
    """Who ran it (``host:pid:id``)."""
    started_at: str | None = None
    finished_at: str | None = None
    """None: it never finished (its process died; ``error`` says where)."""
    version: int | None = None
    """The version of the read model's code that built the new tables."""
    previous_version: int | None = None
    """The version of the tables it replaced."""
    position: int | None = None
    """The position of the log the new tables were at when swapped in (or it got to)."""
    events: int | None = None
    """Events of the log the new tables hold."""
    seconds: float | None = None
    events_per_second: float | None = None
    phases: dict[str, float] = field(default_factory=dict)
    """Seconds spent in each phase: ``copy``, ``indexes``, ``swap``."""
    comparison: Comparison | None = None
    error: str | None = None
    transient: bool = False
    """Whether the error is worth another try (the database's, or a stop)."""
    reset: bool = False
    """A reset: the live tables emptied and fed again, not a blue/green rebuild."""

    def as_dict(self) -> dict[str, Any]:
        """Plain values for JSON (what ``status()["last_rebuild"]`` holds)."""
        answer = {f.name: getattr(self, f.name) for f in fields(self)}
        answer["phases"] = dict(self.phases)
        answer["comparison"] = None if self.comparison is None else self.comparison.as_dict()
        return answer

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RebuildOutcome:
        """An outcome as ``as_dict`` recorded it (keys it lacks take their defaults)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values.setdefault("worker", None)
        comparison = values.get("comparison")
        values["comparison"] = None if comparison is None else Comparison.from_dict(comparison)
        values["phases"] = dict(values.get("phases") or {})
        return cls(**values)
