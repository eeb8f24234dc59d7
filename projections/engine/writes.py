"""How read-model handlers write: row operations gathered per batch, then written set-wise.

Handlers describe what an event does to rows (insert, update, upsert, delete) instead of
running a statement each. A batch of the log collects these operations, merging those on
the same row in order (an insert then two updates of that order become one insert of the
final row), and writes them at the end with one statement per table and kind of change:
on PostgreSQL, new rows by COPY and the other changes by ``unnest`` of one array per
column, so that a batch of thousands of events costs a handful of statements instead of
thousands. SQLite, in process, gets the same operations as prepared statements, row by
row.

The result is always what running the operations one by one, in order, would give:

* operations on different rows commute, so they are written in any order within a round:
  deletes, then inserts, then updates, then the insert half of upserts;
* whenever an operation cannot be merged with what is pending for its row, or could be
  reordered wrongly, it starts a new round, written after the ones before;
* ``execute`` (a statement of its own, e.g. one that reads other rows) ends a round too.

Recording does no I/O, so a batch's handlers run before its transaction opens (and,
in a rebuild, while the batch before it is being written).

A row is named by its table's key (``ReadModel.keys``). An update may instead name it by
another unique column (``by=``, e.g. the catalogue's rows by stock id): such updates are
written after the inserts, and must change other columns than the updates made through
the key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from operator import itemgetter
from typing import Any

Row = dict[str, Any]


class _Op:
    """What is pending for one row: a delete of the stored row, then a row to insert
    (only if none is stored, for an upsert), and changes to apply to a stored row."""

    __slots__ = ("add", "delete", "row", "set", "upsert")

    def __init__(self) -> None:
        self.delete = False
        self.row: Row | None = None
        self.upsert = False
        self.set: Row = {}
        self.add: Row = {}

    def change(self, set_: Mapping[str, Any], add: Mapping[str, Any]) -> None:
        """Apply an update to the pending state: to the row to insert, and to the stored
        row's changes (unless it is deleted, or known not to exist)."""
        if self.row is not None:
            self.row.update(set_)
            for column, delta in add.items():
                self.row[column] += delta
        if self.row is None and self.delete:
            return  # the stored row is deleted: an update finds nothing
        if self.row is not None and not self.upsert:
            return  # a plain insert: the row is new, the changes went into it
        for column, value in set_.items():
            self.set[column] = value
            self.add.pop(column, None)
        for column, delta in add.items():
            if column in self.set:
                self.set[column] += delta
            else:
                self.add[column] = self.add.get(column, 0) + delta


class _Round:
    """Operations that can be written together: at most one merged operation per row."""

    __slots__ = ("by", "deferred", "pending", "upserted")

    def __init__(self) -> None:
        self.pending: dict[str, dict[tuple[Any, ...], _Op]] = {}
        self.by: dict[str, dict[tuple[tuple[str, ...], tuple[Any, ...]], _Op]] = {}
        self.deferred: dict[str, list[Any]] = {}
        """Per deferred statement, its runs' parameters (or, set-wise, its values)."""
        self.upserted: set[str] = set()
        """Tables with an upsert in this round."""

    @property
    def empty(self) -> bool:
        return not (self.pending or self.by or self.deferred)


class Writes:
    """The row operations of one batch (see the module), written by ``write``.

    Recording them does no I/O: a batch's handlers can run before its transaction."""

    def __init__(
        self,
        dialect: str,
        tables: Mapping[str, str],
        keys: Mapping[str, tuple[str, ...]],
        compile_: Callable[[str], str],
        column_types: Callable[[Any, str], dict[str, str]],
    ) -> None:
        self._dialect = dialect
        self._tables = tables
        self._keys = keys
        self._compile = compile_
        self._column_types = column_types
        self._planned: list[_Statement] = []
        self._rounds: list[_Round] = []
        self._round()
        self._getters: dict[str, Callable[[Mapping[str, Any]], tuple[Any, ...]]] = {}

    # --- across processes ----------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        # Statements only: a batch handled in a worker process is written by the parent's
        # read model, which binds them to its own tables (``bind``).
        self.seal()
        return {"dialect": self._dialect, "keys": self._keys, "planned": self._planned}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["dialect"], {}, state["keys"], _unbound, _unbound)  # type: ignore[misc]
        self._planned = state["planned"]

    def bind(
        self,
        dialect: str,
        tables: Mapping[str, str],
        compile_: Callable[[str], str],
        column_types: Callable[[Any, str], dict[str, str]],
    ) -> None:
        """Write into these tables, in this dialect (what the constructor was given)."""
        self._dialect, self._tables = dialect, tables
        self._compile, self._column_types = compile_, column_types

    def _round(self) -> None:
        """Start a new round: the operations before it are written first."""
        if not self._rounds or not self._rounds[-1].empty:
            self._rounds.append(_Round())
        latest = self._rounds[-1]
        self._pending, self._by, self._deferred = latest.pending, latest.by, latest.deferred
        self._upserted = latest.upserted

    # --- what handlers call ------------------------------------------------------------

    def insert(self, table: str, row: Mapping[str, Any]) -> None:
        """A new row (its key must not be stored yet). A later ``add`` in the same batch
        adds to the row itself: it must hold a number in every column added to."""
        op = self._op(table, row, inserting=True)
        if op.row is not None or op.set or op.add:
            self._round()
            op = self._op(table, row, inserting=True)
        op.row = dict(row)

    def update(
        self,
        table: str,
        key: Mapping[str, Any],
        set: Mapping[str, Any] | None = None,
        add: Mapping[str, Any] | None = None,
        *,
        by: tuple[str, ...] | None = None,
    ) -> None:
        """Change the stored row named by ``key`` (nothing if there is none): ``set``
        columns to values, ``add`` deltas to numeric columns. ``by``: ``key`` names the
        row by these unique columns instead of the table's key."""
        set_, add_ = set or {}, add or {}
        if by is not None and by != self._keys[table]:
            if table in self._upserted:
                self._round()  # an upsert's insert is written after the updates
            ops = self._by.setdefault(table, {})
            op = ops.setdefault((by, tuple(key[c] for c in by)), _Op())
        else:
            op = self._op(table, key)
        op.change(set_, add_)

    def upsert(
        self,
        table: str,
        row: Mapping[str, Any],
        set: Mapping[str, Any] | None = None,
        add: Mapping[str, Any] | None = None,
    ) -> None:
        """Insert ``row`` if its key is not stored; else change the stored row as
        ``update`` would, with ``set`` and ``add``."""
        set_, add_ = set or {}, add or {}
        op = self._op(table, row, inserting=True)
        if op.row is not None and not op.upsert:
            op.change(set_, add_)  # inserted in this batch: it exists now
        elif op.delete:
            op.row = dict(row)  # deleted in this batch: inserted afresh
        elif op.row is not None:  # an upsert before: its row, or the stored one, exists
            op.change(set_, add_)
        else:  # nothing, or an update of a row that may not exist
            op.change(set_, add_)
            op.row, op.upsert = dict(row), True
            self._upserted.add(table)

    def delete(self, table: str, key: Mapping[str, Any]) -> None:
        """Delete the row named by ``key``, if any."""
        op = self._op(table, key)
        stored = op.delete or op.upsert or op.set or op.add or op.row is None
        op.row, op.upsert, op.set, op.add = None, False, {}, {}
        op.delete = bool(stored)
        if not stored:  # inserted in this batch, never written: nothing to do at all
            del self._pending[table][self._key(table, key)]

    def defer(self, template: str, params: Mapping[str, Any]) -> None:
        """Run this statement at the end of the round, after its rows are written; all
        deferred runs of one statement go together. For statements whose runs commute
        with each other and with the other writes of a batch (e.g. taking a cancelled
        order's amounts back out of sums)."""
        self._deferred.setdefault(template, []).append(params)

    def defer_for(self, template: str, value: str) -> None:
        """Like ``defer``, set-wise: run ``template`` ONCE at the end of the round, where
        ``{values}`` stands for every value deferred for it in the round (a subquery of one
        text column; a value deferred twice is listed once). For a statement that would
        otherwise run once per value: one statement per batch instead of thousands."""
        if _VALUES not in template:
            raise ValueError(f"a set-wise statement names its values as {_VALUES}: {template}")
        self._deferred.setdefault(template, []).append(value)

    def execute(self, template: str, params: Mapping[str, Any] | None = None) -> None:
        """Run a statement after every operation recorded so far, before any later one."""
        self.defer(template, params or {})
        self._round()

    # --- writing -------------------------------------------------------------------------

    def write(self, cursor: Any) -> None:
        """Write every round, in order, in ``cursor``'s transaction; once (a batch whose
        transaction failed is prepared again from its events)."""
        self.seal()
        planned, self._planned = self._planned, []
        for statement in planned:
            self._execute(cursor, statement)

    def seal(self) -> None:
        """Turn what is recorded so far into statements: the Python half of writing,
        done where the batch was handled (a worker process sends them to its parent)."""
        rounds, self._rounds = self._rounds, []
        self._round()
        for round_ in rounds:
            self._plan(round_.pending, round_.by, round_.deferred)

    def _plan(
        self,
        pending: dict[str, dict[tuple[Any, ...], _Op]],
        by: dict[str, dict[tuple[tuple[str, ...], tuple[Any, ...]], _Op]],
        deferred: dict[str, list[Any]],
    ) -> None:
        for table, ops in pending.items():
            key = self._keys[table]
            self._delete(table, key, [k for k, op in ops.items() if op.delete])
            inserts = [op.row for op in ops.values() if op.row is not None and not op.upsert]
            self._insert(table, inserts, ignore=False)  # type: ignore[arg-type]
            self._update(table, key, [(k, op) for k, op in ops.items() if op.set or op.add])
        for table, ops_by in by.items():
            for columns in {columns for columns, _ in ops_by}:
                changes = [(values, op) for (c, values), op in ops_by.items() if c == columns]
                self._update(table, columns, changes)
        for table, ops in pending.items():
            upserts = [op.row for op in ops.values() if op.upsert and op.row is not None]
            self._insert(table, upserts, ignore=True)  # type: ignore[arg-type]
        for template, runs in deferred.items():
            if _VALUES in template:
                values = list(dict.fromkeys(runs))
                param: Any
                if self._dialect == "postgres":
                    subquery, param = "SELECT unnest(CAST(:values AS text[]))", values
                else:
                    subquery, param = "SELECT value FROM json_each(:values)", json.dumps(values)
                template, runs = template.replace(_VALUES, subquery), [{"values": param}]
            self._planned.append((_DEFERRED, template, (), runs))

    def _execute(self, cursor: Any, statement: _Statement) -> None:
        kind, table, columns, data = statement
        if kind == _DEFERRED:
            cursor.executemany(self._compile(table), data)
            return
        name = self._tables[table]
        if kind == _COPY:
            with cursor.copy(f"COPY {name} ({_names(columns)}) FROM STDIN") as copy:
                for row in data:
                    copy.write_row(row)
            return
        if "{rows}" in kind:  # one typed array per column, unnested as the rows ``v``
            types = self._column_types(cursor, table)
            arrays = ", ".join(f"%b::{types[c]}[]" for c in columns)
            rows = f"unnest({arrays}) AS v({_names(columns)})"
            cursor.execute(kind.format(table=name, rows=rows), data)
        else:
            cursor.executemany(kind.format(table=name), data)

    def _op(self, table: str, row: Mapping[str, Any], *, inserting: bool = False) -> _Op:
        if inserting and self._by and self._by.get(table):
            self._round()  # updates by another key are written after the inserts
        ops = self._pending.get(table)
        if ops is None:
            ops = self._pending[table] = {}
        key = self._key(table, row)
        op = ops.get(key)
        if op is None:
            op = ops[key] = _Op()
        return op

    def _key(self, table: str, row: Mapping[str, Any]) -> tuple[Any, ...]:
        getter = self._getters.get(table)
        if getter is None:
            getter = self._getters[table] = _tuple_getter(self._keys[table])
        return getter(row)

    def _delete(self, table: str, key: tuple[str, ...], keys: list[tuple[Any, ...]]) -> None:
        if not keys:
            return
        if self._dialect == "postgres":
            match = " AND ".join(f't."{c}" = v."{c}"' for c in key)
            sql = f"DELETE FROM {{table}} AS t USING {{rows}} WHERE {match}"
            self._planned.append((sql, table, key, _columns(keys, len(key))))
        else:
            match = " AND ".join(f'"{c}" = ?' for c in key)
            self._planned.append((f"DELETE FROM {{table}} WHERE {match}", table, key, keys))

    def _insert(self, table: str, rows: list[Row], *, ignore: bool) -> None:
        shapes: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        for row in rows:
            shapes.setdefault(tuple(row), []).append(tuple(row.values()))
        for columns, values in shapes.items():
            names = _names(columns)
            if self._dialect != "postgres":
                marks = ", ".join("?" for _ in columns)
                sql = f"INSERT INTO {{table}} ({names}) VALUES ({marks})"
                sql += " ON CONFLICT DO NOTHING" if ignore else ""
                self._planned.append((sql, table, columns, values))
            elif ignore:
                sql = (
                    f"INSERT INTO {{table}} ({names}) SELECT * FROM {{rows}} ON CONFLICT DO NOTHING"
                )
                self._planned.append((sql, table, columns, _columns(values, len(columns))))
            else:  # COPY: about twice as fast as INSERT ... SELECT FROM unnest
                self._planned.append((_COPY, table, columns, values))

    def _update(
        self, table: str, key: tuple[str, ...], changes: list[tuple[tuple[Any, ...], _Op]]
    ) -> None:
        shapes: dict[tuple[tuple[str, ...], tuple[str, ...]], list[tuple[Any, ...]]] = {}
        for values, op in changes:
            shape = (tuple(op.set), tuple(op.add))
            shapes.setdefault(shape, []).append((*values, *op.set.values(), *op.add.values()))
        for (set_, add), rows in shapes.items():
            if self._dialect == "postgres":
                assignments = [f'"{c}" = v."{c}"' for c in set_]
                assignments += [f'"{c}" = t."{c}" + v."{c}"' for c in add]
                match = " AND ".join(f't."{c}" = v."{c}"' for c in key)
                columns = (*key, *set_, *add)
                sql = f"UPDATE {{table}} AS t SET {', '.join(assignments)}"
                sql += f" FROM {{rows}} WHERE {match}"
                self._planned.append((sql, table, columns, _columns(rows, len(columns))))
            else:
                assignments = [f'"{c}" = ?' for c in set_] + [f'"{c}" = "{c}" + ?' for c in add]
                match = " AND ".join(f'"{c}" = ?' for c in key)
                sql = f"UPDATE {{table}} SET {', '.join(assignments)} WHERE {match}"
                reordered = [(*r[len(key) :], *r[: len(key)]) for r in rows]
                self._planned.append((sql, table, key, reordered))


# A statement as plain data, which pickles fast: (what, logical table (or a deferred
# statement's template), columns, data). What: COPY the rows in; a deferred statement run
# per params; or SQL with ``{table}``, run once over arrays of the columns unnested as
# ``{rows}`` (PostgreSQL), or run per row (SQLite).
_Statement = tuple[str, str, tuple[str, ...], Any]
_COPY, _DEFERRED = "copy", "deferred"
_VALUES = "{values}"


def _unbound(*args: Any) -> Any:
    raise RuntimeError("these writes were unpickled: bind() them to a read model's tables")


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as one list per column (what ``unnest`` takes)."""
    return [[row[i] for row in rows] for i in range(width)] if rows else [[]] * width


def _names(columns: tuple[str, ...]) -> str:
    return ", ".join(f'"{column}"' for column in columns)


def _tuple_getter(columns: tuple[str, ...]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """A fast ``row -> tuple of these columns' values``."""
    if len(columns) > 1:
        return itemgetter(*columns)  # type: ignore[return-value]
    (column,) = columns
    return lambda row: (row[column],)
