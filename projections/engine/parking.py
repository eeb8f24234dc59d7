"""Poison events: an event a read model's handler fails on is *parked*, not fatal.

The read model records the event (position, type, aggregate, error) in its copy's
``projection_parked`` table, in the transaction that also moves its tracking position
past it, and goes on with the next one: one bad event never stops a read model for
everyone. The later events of the same aggregate are parked *behind* it (the read
models' rows are keyed by aggregate: a cancellation applied before its order's placing
would be lost), the other events are applied as usual. Until the events are retried or
skipped the read model is ``degraded``.

* **Retry** (after a fix of the code): the event's handler, and those of the events
  parked behind it, are run again, in log order, and their rows written in ONE
  transaction with the deletion of their parked rows, so each is applied exactly once
  however often, and by however many processes, retry is asked for. If the event still
  fails, nothing is written and its parked row keeps the new error.
* **Skip**: the parked row is deleted and the skip recorded in ``projection_skipped``;
  the events behind it stay parked, each to be retried (or skipped) in turn.
* **Rebuilds** keep parked events parked and skipped ones skipped (the copy does not
  apply them; ``swap.py`` carries the parked rows over and says so in the comparison).
  Retry and skip take the read model's rebuild lock: never during a rebuild.
* A read model may choose ``on_failure = STOP`` instead (order over availability): it
  then stops at the event, as before parking existed, until fixed and restarted.

Retried late, an event is applied after the later events of OTHER aggregates. Sums over
aggregates (sales per day) do not mind; a row that needs another aggregate's row first
does: the catalogue's stock changes update a product's row, and find none while its
``Product.Added`` is parked. A read model that cannot live with that should choose
``stop``; a rebuild after the retry puts the catalogue right (and its comparison shows
what differed).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import Notification

from domain.errors import NotFound, RuleBroken
from eventstore.database import is_transient
from projections.engine.tables import LostOwnership

if TYPE_CHECKING:
    from projections.engine.base import ReadModel
    from projections.engine.feed import Source
    from projections.engine.tables import ReadModelStore

log = logging.getLogger("eventshop.projections")

PARK, STOP = "park", "stop"
"""What a read model does when a handler fails on an event (``ReadModel.on_failure``)."""
PARKED_TABLE = "projection_parked"
SKIPPED_TABLE = "projection_skipped"
_ERROR_CHARS = 2000


class NotParked(NotFound):
    """No such event is parked for that read model (never, or retried or skipped already)."""

    title = "Event not parked"


class StillFailing(RuleBroken):
    """A retried event failed again: nothing was written, it stays parked."""

    title = "Event still fails"


@dataclass(frozen=True)
class ParkedEvent:
    """An event of the log that a read model's handler failed on."""

    position: int
    topic: str
    aggregate_id: str
    aggregate_version: int
    error: str
    parked_at: str
    retries: int = 0
    """Failed retries since it was parked."""
    skipped: bool = False
    """Only in a rebuild's hold: skipped in the live copy, so neither applied nor parked."""

    @classmethod
    def of(cls, notification: Notification, error: BaseException | str) -> ParkedEvent:
        return cls(
            position=notification.id,
            topic=notification.topic,
            aggregate_id=str(notification.originator_id),
            aggregate_version=notification.originator_version,
            error=describe(error),
            parked_at=_now(),
        )

    @classmethod
    def behind(cls, notification: Notification, position: int) -> ParkedEvent:
        """A later event of an aggregate whose event at ``position`` is parked: parked
        too, so that the aggregate's events are applied in their order."""
        return cls.of(notification, f"held behind the parked event at position {position}")

    @property
    def type(self) -> str:
        """The event's class, as the audit log names it (``Order.Placed``)."""
        return self.topic.rsplit(":", 1)[-1]

    def as_dict(self) -> dict[str, Any]:
        answer = asdict(self)
        del answer["skipped"]
        return {**answer, "type": self.type}


def describe(error: BaseException | str) -> str:
    """An error as text a database can hold: no NUL (PostgreSQL refuses it), bounded."""
    if isinstance(error, _Failed):
        error = str(error)  # described already
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return text.replace("\x00", "\\x00")[:_ERROR_CHARS]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


# --- the tables (in the caller's transaction) ------------------------------------------------

_FIELDS = (
    *("position", "topic", "aggregate_id", "aggregate_version"),
    *("error", "parked_at", "retries"),
)
_COLUMNS = ", ".join(("name", *_FIELDS))
_VALUES = ", ".join(f":{column}" for column in ("name", *_FIELDS))


def parked_table(view: ReadModelStore) -> str:
    return view.qualify(view.table_prefix + PARKED_TABLE)


def skipped_table(view: ReadModelStore) -> str:
    return view.qualify(view.table_prefix + SKIPPED_TABLE)


def create_tables(view: ReadModelStore, cursor: Any) -> None:
    """The parked and skipped events of every read model of this copy, if missing."""
    columns = (
        "name TEXT NOT NULL, position BIGINT NOT NULL, topic TEXT NOT NULL,"
        " aggregate_id TEXT NOT NULL, aggregate_version BIGINT NOT NULL, error TEXT NOT NULL,"
        " parked_at TEXT NOT NULL, retries INTEGER NOT NULL DEFAULT 0"
    )
    cursor.execute(
        f"CREATE TABLE IF NOT EXISTS {parked_table(view)} ({columns}, PRIMARY KEY (name, position))"
    )
    cursor.execute(
        f"CREATE TABLE IF NOT EXISTS {skipped_table(view)} ({columns},"
        " skipped_at TEXT NOT NULL, skipped_by TEXT, PRIMARY KEY (name, position))"
    )


def write(view: ReadModelStore, cursor: Any, name: str, entries: Sequence[ParkedEvent]) -> None:
    """Park these events (a held one already parked here stays as it is)."""
    if not entries:
        return
    rows = [{**_row(entry), "name": name} for entry in entries]
    cursor.executemany(
        view.bind(f"INSERT INTO {parked_table(view)} ({_COLUMNS}) VALUES ({_VALUES})")
        + " ON CONFLICT (name, position) DO NOTHING",
        rows,
    )


def read(
    view: ReadModelStore, cursor: Any, name: str, position: int | None = None
) -> list[ParkedEvent]:
    """The events parked for ``name`` (or only the one at ``position``), in log order."""
    where, params = "name = :name", dict[str, Any](name=name)
    if position is not None:
        where, params["position"] = where + " AND position = :position", position
    cursor.execute(
        view.bind(f"SELECT {_COLUMNS} FROM {parked_table(view)} WHERE {where} ORDER BY position"),
        params,
    )
    return [_entry(row) for row in cursor.fetchall()]


def counts(view: ReadModelStore, cursor: Any) -> dict[str, int]:
    """Per read model with any, how many events are parked."""
    cursor.execute(f"SELECT name, count(*) AS n FROM {parked_table(view)} GROUP BY name")
    return {row["name"]: int(row["n"]) for row in cursor.fetchall()}


def blocked(view: ReadModelStore, cursor: Any, name: str) -> dict[str, int]:
    """Aggregates with an event parked for ``name``: the position of the first."""
    cursor.execute(
        view.bind(
            f"SELECT aggregate_id, min(position) AS position FROM {parked_table(view)}"
            " WHERE name = :name GROUP BY aggregate_id"
        ),
        {"name": name},
    )
    return {row["aggregate_id"]: int(row["position"]) for row in cursor.fetchall()}


def held(view: ReadModelStore, cursor: Any, name: str) -> dict[int, ParkedEvent]:
    """What a rebuild of ``name`` must not apply: its parked and its skipped events."""
    entries = {entry.position: entry for entry in read(view, cursor, name)}
    cursor.execute(
        view.bind(f"SELECT {_COLUMNS} FROM {skipped_table(view)} WHERE name = :name"),
        {"name": name},
    )
    for row in cursor.fetchall():
        entries[int(row["position"])] = replace(_entry(row), skipped=True)
    return entries


def clear(view: ReadModelStore, cursor: Any, name: str, *, skipped: bool = False) -> None:
    """Forget the parked (and, with ``skipped``, the skipped) events of ``name``."""
    tables = [parked_table(view), *([skipped_table(view)] if skipped else [])]
    for table in tables:
        cursor.execute(view.bind(f"DELETE FROM {table} WHERE name = :name"), {"name": name})


def _take(view: ReadModelStore, cursor: Any, name: str, position: int) -> ParkedEvent:
    found = read(view, cursor, name, position)
    if not found:
        raise NotParked(f"no event at position {position} is parked for {name}")
    _delete(view, cursor, name, [position])
    return found[0]


def _delete(view: ReadModelStore, cursor: Any, name: str, positions: Sequence[int]) -> None:
    cursor.executemany(
        view.bind(f"DELETE FROM {parked_table(view)} WHERE name = :name AND position = :position"),
        [{"name": name, "position": position} for position in positions],
    )


def _row(entry: ParkedEvent) -> dict[str, Any]:
    row = asdict(entry)
    del row["skipped"]
    return row


def _entry(row: Mapping[str, Any]) -> ParkedEvent:
    return ParkedEvent(
        position=int(row["position"]),
        topic=row["topic"],
        aggregate_id=row["aggregate_id"],
        aggregate_version=int(row["aggregate_version"]),
        error=row["error"],
        parked_at=row["parked_at"],
        retries=int(row["retries"]),
    )


# --- what operators do ---------------------------------------------------------------------


def listing(model: ReadModel) -> list[ParkedEvent]:
    """The events parked for ``model``, in log order."""
    with model.view.reading() as cursor:
        return read(model.view, cursor, model.name)


def retry(model: ReadModel, source: Source, position: int) -> ParkedEvent:
    """Apply the parked event at ``position`` now, and the events of its aggregate parked
    behind it, in their order, exactly once: their rows and the deletion of their parked
    rows in one transaction (a later one that fails again stays parked, with what follows
    it). :class:`NotParked` when it is not parked (any more); :class:`StillFailing` when
    it fails again (nothing written, the new error kept)."""
    view, name = model.view, model.name
    with view.reading() as cursor:
        entries = read(view, cursor, name)
    target = next((entry for entry in entries if entry.position == position), None)
    if target is None:
        raise NotParked(f"no event at position {position} is parked for {name}")
    positions = [
        e.position
        for e in entries
        if e.aggregate_id == target.aggregate_id and e.position >= position
    ]
    events = [n for p in positions for n in source.read(p - 1, 1, stop=p) if n.id == p]
    try:
        # Handled before the transaction (no I/O).
        prepared = model.prepare(events, source.mapper, hold={}, blocked={}, on_failure=PARK)
        if prepared.parked and prepared.parked[0].position == position:
            raise _Failed(prepared.parked[0].error)
        with view.writing() as cursor:
            # The tracking row's lock: the read model's feeder waits at its fence meanwhile.
            view.lock_position(cursor, source.application_name)
            if model.fence_version is not None:
                view.check_version(cursor, name, model.fence_version)
            now = [e.position for e in read(view, cursor, name) if e.position in positions]
            if position not in now:
                raise NotParked(f"no event at position {position} is parked for {name}")
            if now != positions:
                raise RuleBroken(f"the parked events of {name} changed meanwhile; try again")
            _delete(view, cursor, name, positions)
            model.write_rows(cursor, prepared)
            write(view, cursor, name, prepared.parked)
    except (NotParked, RuleBroken):
        raise
    except LostOwnership as error:  # Outdated: tables of another version's code
        raise RuleBroken(f"{name}: {error}; retry from a process of that version") from None
    except Exception as error:
        cause = getattr(error, "error", error)  # an EventFailed: the handler's own error
        if is_transient(cause) or not _still_parked(model, position, cause):
            raise
        raise StillFailing(
            f"the event at position {position} still fails in {name}: {describe(cause)}",
            position=position,
        ) from error
    log.warning(
        "projection %s: parked event %s retried and applied (with %s of its aggregate's"
        " behind it; %s parked again)",
        name,
        position,
        len(positions) - 1,
        len(prepared.parked),
    )
    return target


class _Failed(Exception):
    """A retried event's handler failed again (its error, as text)."""

    def __str__(self) -> str:
        return str(self.args[0])


def skip(model: ReadModel, source: Source, position: int, by: str | None) -> ParkedEvent:
    """Give up on the parked event at ``position``: delete its parked row, record the skip
    (who, when) in ``projection_skipped``. :class:`NotParked` when it is not parked."""
    view, name = model.view, model.name
    with view.writing() as cursor:
        view.lock_position(cursor, source.application_name)
        entry = _take(view, cursor, name, position)
        cursor.execute(
            view.bind(
                f"INSERT INTO {skipped_table(view)} ({_COLUMNS}, skipped_at, skipped_by)"
                f" VALUES ({_VALUES}, :skipped_at, :skipped_by)"
                " ON CONFLICT (name, position) DO NOTHING"
            ),
            {**_row(entry), "name": name, "skipped_at": _now(), "skipped_by": by},
        )
    log.warning("projection %s: parked event %s skipped by %s", name, position, by)
    return entry


def _still_parked(model: ReadModel, position: int, error: BaseException) -> bool:
    """Note the new error on the parked row: True if it is (still) parked."""
    view = model.view
    with view.writing() as cursor:
        cursor.execute(
            view.bind(
                f"UPDATE {parked_table(view)} SET error = :error, retries = retries + 1"
                " WHERE name = :name AND position = :position RETURNING position"
            ),
            {"error": describe(error), "name": model.name, "position": position},
        )
        return cursor.fetchone() is not None
