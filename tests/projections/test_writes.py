"""The promise of ``Writes``: the rows after writing a batch of row operations at once
are those that applying them one by one, in order, would give; on SQLite and PostgreSQL.

A pure-Python model (key -> row) applies generated operations one at a time; the same
operations then go through ONE ``Writes`` recorded whole and written once, and through
another written after every operation, each into a table of its own: all three agree.
Hypothesis generates long sequences on a few rows; every sequence of up to ``SHORT``
operations on one row is also checked, exhaustively; and a few tricky sequences by hand.
"""

from __future__ import annotations

import itertools
import pickle
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql
from psycopg.rows import dict_row

from eventstore.url import StoreURL
from projections.engine.postgres_recorder import _PARAM
from projections.engine.writes import Writes

Row = dict[str, Any]
Key = tuple[str, int]
Op = tuple[Any, ...]

KEY = ("k1", "k2")
COLUMNS = ("k1", "k2", "u", "a", "b", "c")
KEYS: list[Key] = [(k1, k2) for k1 in ("x", "y") for k2 in (1, 2)]
DDL = (
    "CREATE TABLE {name} (k1 TEXT NOT NULL, k2 INTEGER NOT NULL, u TEXT NOT NULL UNIQUE,"
    " a BIGINT NOT NULL, b TEXT, c BIGINT NOT NULL, PRIMARY KEY (k1, k2))"
)
# Updates through the key change ``a`` and ``b``; updates by ``u`` (another unique column)
# change ``c`` only: the module's rule is that the two kinds change different columns.
DOUBLE = "UPDATE {t} SET a = a * 2 + 1 WHERE k1 = :k1"
"""A statement of its own (``execute``) that commutes with none of the row operations."""


# --- the databases -----------------------------------------------------------------------


class SQLite:
    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)

    def qualify(self, name: str) -> str:
        return f'"{name}"'

    def column_types(self, cursor: Any, qualified: str) -> dict[str, str]:
        raise AssertionError("column types are for PostgreSQL only")

    @contextmanager
    def writing(self) -> Iterator[Any]:
        """A write transaction, as ``SQLiteReadModelRecorder.writing``."""
        cursor = self.conn.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        try:
            yield cursor
        except BaseException:
            self.conn.rollback()
            raise
        self.conn.commit()

    def rows(self, name: str) -> list[Row]:
        cursor = self.conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM {self.qualify(name)} ORDER BY k1, k2"
        )
        return [dict(zip(COLUMNS, row, strict=True)) for row in cursor.fetchall()]

    def close(self) -> None:
        self.conn.close()


class Postgres:
    dialect = "postgres"

    def __init__(self, url: str) -> None:
        self.schema = StoreURL.parse(url).schema
        dsn = StoreURL.parse(url).dsn()
        self.conn = psycopg.connect(dsn, autocommit=True, row_factory=dict_row)
        self._types: dict[str, dict[str, str]] = {}

    def qualify(self, name: str) -> str:
        return sql.Identifier(self.schema, name).as_string(self.conn)

    def column_types(self, cursor: Any, qualified: str) -> dict[str, str]:
        """As ``ReadModel.column_types``: on the writing cursor, cached per table."""
        types = self._types.get(qualified)
        if types is None:
            cursor.execute(
                "SELECT attname AS name, format_type(atttypid, atttypmod) AS type"
                " FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
                " AND NOT attisdropped",
                (qualified,),
            )
            types = {row["name"]: row["type"] for row in cursor.fetchall()}
            self._types[qualified] = types
        return types

    @contextmanager
    def writing(self) -> Iterator[Any]:
        """A write transaction, as ``ReadModel.commit`` opens one."""
        with self.conn.transaction():
            yield self.conn.cursor()

    def rows(self, name: str) -> list[Row]:
        cursor = self.conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM {self.qualify(name)} ORDER BY k1, k2"
        )
        return [dict(row) for row in cursor.fetchall()]

    def close(self) -> None:
        self.conn.close()


Database = SQLite | Postgres


def create(db: Database, *names: str) -> None:
    with db.writing() as cursor:
        for name in names:
            cursor.execute(DDL.format(name=db.qualify(name)))


def reset(db: Database, names: tuple[str, ...], rows: list[Row]) -> None:
    """Empty the tables, then store ``rows`` in each (committed)."""
    marks = ", ".join("?" if db.dialect == "sqlite" else "%s" for _ in COLUMNS)
    with db.writing() as cursor:
        for name in names:
            table = db.qualify(name)
            cursor.execute(f"DELETE FROM {table}")
            if rows:
                cursor.executemany(
                    f"INSERT INTO {table} ({', '.join(COLUMNS)}) VALUES ({marks})",
                    [tuple(row[c] for c in COLUMNS) for row in rows],
                )


def binding(db: Database, name: str) -> tuple[Any, ...]:
    """What a ``Writes`` for table ``name`` (known to handlers as ``t``) is bound to."""
    tables = {"t": db.qualify(name)}

    def compile_(template: str) -> str:
        statement = template.format_map(tables)
        return _PARAM.sub(r"%(\1)s", statement) if db.dialect == "postgres" else statement

    def column_types(cursor: Any, table: str) -> dict[str, str]:
        return db.column_types(cursor, tables[table])

    return db.dialect, tables, compile_, column_types


def make_writes(db: Database, name: str) -> Writes:
    """An empty ``Writes`` for table ``name``, as ``ReadModel.writes`` makes it (with
    ``write``, the place to adapt to its API)."""
    dialect, tables, compile_, column_types = binding(db, name)
    return Writes(dialect, tables, {"t": KEY}, compile_, column_types)


def sent(writes: Writes, db: Database, name: str) -> Writes:
    """``writes`` as a rebuild's worker process sends them and its parent binds them."""
    received = pickle.loads(pickle.dumps(writes))
    received.bind(*binding(db, name))
    return received


def write(writes: Writes, cursor: Any) -> None:
    """Write everything recorded so far, in ``cursor``'s transaction."""
    writes.write(cursor)


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[SQLite]:
    db = SQLite(tmp_path / "writes.db")
    yield db
    db.close()


@pytest.fixture
def postgres_db(pg_url: str) -> Iterator[Postgres]:
    db = Postgres(pg_url)
    yield db
    db.close()


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest) -> Database:
    """A database with an empty table ``t``."""
    database: Database = request.getfixturevalue(f"{request.param}_db")
    create(database, "t")
    return database


# --- operations and the model --------------------------------------------------------------


def row_of(key: Key, a: int = 0, b: str | None = None, c: int = 0) -> Row:
    k1, k2 = key
    return {"k1": k1, "k2": k2, "u": f"{k1}{k2}", "a": a, "b": b, "c": c}


def key_of(key: Key) -> Row:
    return {"k1": key[0], "k2": key[1]}


def change(row: Row, set_: Row, add: Row) -> None:
    """``UPDATE ... SET column = value, column = column + delta``."""
    row.update(set_)
    for column, delta in add.items():
        row[column] += delta


def step(model: dict[Key, Row], op: Op) -> None:
    """Apply one operation to the model, as one statement would."""
    kind = op[0]
    if kind == "insert":
        row = op[1]
        key = (row["k1"], row["k2"])
        assert key not in model, "generated an insert of a stored key"
        model[key] = {"b": None, **row}
    elif kind == "update":
        _, key, set_, add, _by_key = op
        if key in model:
            change(model[key], set_, add)
    elif kind == "upsert":
        _, row, set_, add = op
        key = (row["k1"], row["k2"])
        if key in model:
            change(model[key], set_, add)
        else:
            model[key] = {"b": None, **row}
    elif kind == "delete":
        model.pop(op[1], None)
    elif kind == "by":
        _, u, delta = op
        for row in model.values():
            if row["u"] == u:
                row["c"] += delta
    elif kind == "execute":
        for row in model.values():
            if row["k1"] == op[1]:
                row["a"] = row["a"] * 2 + 1
    else:
        raise AssertionError(kind)


def run(writes: Writes, op: Op) -> None:
    """Record one operation, as a handler would."""
    kind = op[0]
    if kind == "insert":
        writes.insert("t", op[1])
    elif kind == "update":
        _, key, set_, add, by_key = op
        writes.update("t", key_of(key), set=set_, add=add, by=KEY if by_key else None)
    elif kind == "upsert":
        _, row, set_, add = op
        writes.upsert("t", row, set=set_, add=add)
    elif kind == "delete":
        writes.delete("t", key_of(op[1]))
    elif kind == "by":
        _, u, delta = op
        writes.update("t", {"u": u}, add={"c": delta}, by=("u",))
    elif kind == "execute":
        writes.execute(DOUBLE, {"k1": op[1]})
    else:
        raise AssertionError(kind)


def expected(model: dict[Key, Row]) -> list[Row]:
    return [{c: model[key][c] for c in COLUMNS} for key in sorted(model)]


# --- generating valid sequences ----------------------------------------------------------

numbers = st.integers(-3, 9)
deltas = st.integers(-3, 3)
# ``c`` is only ever added to: it also takes values beyond 32 bits (BIGINT arrays, COPY).
counts = numbers | st.sampled_from([2**31, -(2**33), 2**40])
# Empty and NULL differ; and texts that COPY's text format must escape.
texts = st.sampled_from([None, "", "p", "q", "\\N", "tab\there", "back\\slash", "new\nline"])
# Most operations on one row, so that long runs of them meet in one round.
keys = st.just(KEYS[0]) | st.sampled_from(KEYS)


def draw_row(data: st.DataObject, key: Key) -> Row:
    """A row to insert; sometimes without ``b`` (NULL), and with its columns in another
    order, so that inserts of one batch come in several shapes."""
    row = row_of(key, data.draw(numbers), data.draw(texts), data.draw(counts))
    if data.draw(st.booleans()):
        del row["b"]
    if data.draw(st.booleans()):
        row = dict(reversed(row.items()))
    return row


def draw_changes(data: st.DataObject) -> tuple[Row, Row]:
    """``set`` and ``add`` of an update through the key: ``b`` and/or ``a``, never one
    column in both."""
    set_: Row = {}
    add: Row = {}
    if data.draw(st.booleans()):
        set_["b"] = data.draw(texts)
    how = data.draw(st.sampled_from(["set", "add", "none"]))
    if how == "set":
        set_["a"] = data.draw(numbers)
    elif how == "add":
        add["a"] = data.draw(deltas)
    return set_, add


KINDS = ("insert", "update", "upsert", "delete", "by", "execute")
# Swarm testing: each example uses some kinds of operation only, so that some run long
# without what starts a new round (updates by ``u`` meeting upserts or inserts, execute).
swarms = st.just(list(KINDS)) | st.lists(st.sampled_from(KINDS), min_size=1, unique=True)


def draw_op(data: st.DataObject, model: dict[Key, Row], swarm: list[str]) -> Op:
    free = [key for key in KEYS if key not in model]
    kinds = [kind for kind in swarm if kind != "insert" or free] or ["delete"]
    kind = data.draw(st.sampled_from(kinds))
    if kind == "insert":
        return ("insert", draw_row(data, data.draw(st.sampled_from(free))))
    if kind == "update":
        return ("update", data.draw(keys), *draw_changes(data), data.draw(st.booleans()))
    if kind == "upsert":
        return ("upsert", draw_row(data, data.draw(keys)), *draw_changes(data))
    if kind == "delete":
        return ("delete", data.draw(keys))
    if kind == "by":
        return ("by", row_of(data.draw(keys))["u"], data.draw(counts.filter(bool)))
    return ("execute", data.draw(st.sampled_from(["x", "y"])))


def check_one_write_equals_one_by_one(db: Database, data: st.DataObject) -> None:
    stored = data.draw(st.lists(keys, unique=True), label="stored keys")
    initial = [
        row_of(key, data.draw(numbers), data.draw(texts), data.draw(counts)) for key in stored
    ]
    model = {(row["k1"], row["k2"]): dict(row) for row in initial}
    swarm = data.draw(swarms, label="kinds")
    ops: list[Op] = []
    for _ in range(data.draw(st.integers(1, 40), label="operations")):
        op = draw_op(data, model, swarm)
        step(model, op)
        ops.append(op)
    data.draw(st.just(ops), label="ops")

    reset(db, ("batch", "stepwise"), initial)
    # As a batch of the log: recorded before its transaction, written at once.
    writes = make_writes(db, "batch")
    for op in ops:
        run(writes, op)
    with db.writing() as cursor:
        write(writes, cursor)
    # Each operation written before the next is recorded.
    writes = make_writes(db, "stepwise")
    with db.writing() as cursor:
        for op in ops:
            run(writes, op)
            write(writes, cursor)

    assert db.rows("stepwise") == expected(model), "written after every operation"
    assert db.rows("batch") == expected(model), "written at once"


@pytest.fixture
def sqlite_tables(sqlite_db: SQLite) -> SQLite:
    create(sqlite_db, "batch", "stepwise")
    return sqlite_db


@pytest.fixture
def postgres_tables(postgres_db: Postgres) -> Postgres:
    create(postgres_db, "batch", "stepwise")
    return postgres_db


# The fixtures run once per test, not per example: every example empties the tables.
SETTINGS: dict[str, Any] = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
}


# Fewer examples on PostgreSQL: what it adds is the dialect, which every short sequence
# (below) also meets, exhaustively; the merging of operations is the same on both.
@settings(max_examples=100, **SETTINGS)
@given(data=st.data())
def test_one_write_gives_the_operations_one_by_one_on_sqlite(
    sqlite_tables: SQLite, data: st.DataObject
) -> None:
    check_one_write_equals_one_by_one(sqlite_tables, data)


@settings(max_examples=30, **SETTINGS)
@given(data=st.data())
def test_one_write_gives_the_operations_one_by_one_on_postgres(
    postgres_tables: Postgres, data: st.DataObject
) -> None:
    check_one_write_equals_one_by_one(postgres_tables, data)


# --- every short sequence on one row -----------------------------------------------------


def one_row_ops(key: Key) -> list[Op]:
    """Every kind of operation on the row ``key``, with values that tell them apart."""
    k1 = key[0]
    return [
        ("insert", row_of(key, a=1, b="i", c=1)),
        ("update", key, {"b": "s"}, {}, False),
        ("update", key, {}, {"a": 10}, False),
        ("update", key, {"a": 100}, {}, True),
        ("upsert", row_of(key, a=1000, b="u", c=2), {"b": "v"}, {"a": 10000}),
        ("delete", key),
        ("by", row_of(key)["u"], 7),
        ("execute", k1),
    ]


def short_sequences(length: int) -> Iterator[tuple[bool, list[int]]]:
    """(stored or not, indexes into ``one_row_ops``) of every valid sequence up to
    ``length`` operations."""
    count = len(one_row_ops(KEYS[0]))
    for stored_ in (False, True):
        for n in range(1, length + 1):
            for choice in itertools.product(range(count), repeat=n):
                exists = stored_
                valid = True
                for index in choice:
                    kind = one_row_ops(KEYS[0])[index][0]
                    valid = valid and not (kind == "insert" and exists)
                    exists = (exists or kind in ("insert", "upsert")) and kind != "delete"
                if valid:
                    yield stored_, list(choice)


SHORT = 3
"""Sequences up to this long are checked exhaustively (4: some 9,000 of them, 15 s)."""


def test_every_short_sequence_on_one_row_gives_the_operations_one_by_one(db: Database) -> None:
    # Given, per sequence, a row of its own, stored or not
    cases = [
        ((f"s{n}", 1), stored_, choice)
        for n, (stored_, choice) in enumerate(short_sequences(SHORT))
    ]
    initial = [row_of(key, a=3, b="o", c=5) for key, stored_, _ in cases if stored_]
    reset(db, ("t",), initial)
    model = {(row["k1"], row["k2"]): dict(row) for row in initial}
    # When each sequence is recorded in a Writes of its own, all written in one transaction
    # (every other one sent through another process first)
    batches = []
    for n, (key, _, choice) in enumerate(cases):
        writes = make_writes(db, "t")
        for index in choice:
            op = one_row_ops(key)[index]
            step(model, op)
            run(writes, op)
        batches.append(sent(writes, db, "t") if n % 2 else writes)
    with db.writing() as cursor:
        for writes in batches:
            write(writes, cursor)
    # Then every row is what its operations give one by one
    got = {(row["k1"], row["k2"]): row for row in db.rows("t")}
    wrong = [
        (stored_, [one_row_ops(key)[i] for i in choice], got.get(key), model.get(key))
        for key, stored_, choice in cases
        if got.get(key) != (None if key not in model else expected({key: model[key]})[0])
    ]
    assert not wrong, f"{len(wrong)} of {len(cases)} sequences differ, e.g. {wrong[:3]}"


# --- tricky sequences, one batch each ----------------------------------------------------


class Counting:
    """A cursor that counts the statements sent through it."""

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor
        self.statements: list[str] = []

    def execute(self, query: str, *args: Any, **kwargs: Any) -> Any:
        self.statements.append(query)
        return self.cursor.execute(query, *args, **kwargs)

    def executemany(self, query: str, *args: Any, **kwargs: Any) -> Any:
        self.statements.append(query)
        return self.cursor.executemany(query, *args, **kwargs)

    def copy(self, query: str, *args: Any, **kwargs: Any) -> Any:
        self.statements.append(query)
        return self.cursor.copy(query, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cursor, name)


def batch(db: Database, *steps: Callable[[Writes], None]) -> list[str]:
    """Record the steps in one ``Writes``, then write them at once; the statements sent."""
    writes = make_writes(db, "t")
    for recorded in steps:
        recorded(writes)
    with db.writing() as raw:
        cursor = Counting(raw)
        write(writes, cursor)
    return cursor.statements


def stored(db: Database, *rows: Row) -> None:
    reset(db, ("t",), list(rows))


X1, X2, Y1 = ("x", 1), ("x", 2), ("y", 1)


def test_an_insert_updated_then_deleted_in_one_batch_writes_nothing(db: Database) -> None:
    # Given an empty table
    # When one batch inserts a row, updates it and deletes it
    statements = batch(
        db,
        lambda w: w.insert("t", row_of(X1, a=1)),
        lambda w: w.update("t", key_of(X1), set={"b": "p"}, add={"a": 2}),
        lambda w: w.delete("t", key_of(X1)),
    )
    # Then no statement is sent, and the table stays empty
    assert statements == []
    assert db.rows("t") == []


def test_a_stored_row_deleted_then_inserted_is_replaced(db: Database) -> None:
    # Given a stored row
    stored(db, row_of(X1, a=1, b="p", c=1))
    # When one batch deletes it and inserts a row of the same key (then changes that)
    batch(
        db,
        lambda w: w.delete("t", key_of(X1)),
        lambda w: w.insert("t", row_of(X1, a=5)),
        lambda w: w.update("t", key_of(X1), add={"a": 1}),
    )
    # Then the table holds the new row only
    assert db.rows("t") == [row_of(X1, a=6)]


def test_two_upserts_of_a_missing_row_insert_the_first_and_change_it_by_the_second(
    db: Database,
) -> None:
    # Given a table without the row
    stored(db, row_of(Y1, a=1))
    # When one batch upserts it twice
    batch(
        db,
        lambda w: w.upsert("t", row_of(X1, a=1, b="p"), set={"b": "q"}, add={"a": 1}),
        lambda w: w.upsert("t", row_of(X1, a=100, b="r"), set={"b": "s"}, add={"a": 10}),
    )
    # Then the first inserted it, and the second changed it
    assert db.rows("t") == [row_of(X1, a=11, b="s"), row_of(Y1, a=1)]


def test_an_update_then_an_upsert_of_a_stored_row_set_then_add(db: Database) -> None:
    # Given a stored row
    stored(db, row_of(X1, a=1, b="p"))
    # When one batch sets a column, then an upsert adds to it and sets it again
    batch(
        db,
        lambda w: w.update("t", key_of(X1), set={"a": 10}),
        lambda w: w.upsert("t", row_of(X1, a=100), add={"a": 5}),
        lambda w: w.update("t", key_of(X1), add={"a": 1}, set={"b": "q"}),
        lambda w: w.upsert("t", row_of(X1, a=100), set={"b": "r"}, add={"a": 2}),
    )
    # Then the changes apply in order to the stored row; the upserts' rows are unused
    assert db.rows("t") == [row_of(X1, a=18, b="r")]


def test_a_set_after_an_upserts_add_wins_on_a_stored_row(db: Database) -> None:
    # Given a stored cart line (QuantityChanged after ItemAdded of the same line)
    stored(db, row_of(X1, a=3))
    # When one batch adds to its quantity by an upsert, then sets the quantity
    batch(
        db,
        lambda w: w.upsert("t", row_of(X1, a=2), add={"a": 2}),
        lambda w: w.update("t", key_of(X1), set={"a": 7}),
    )
    # Then the quantity is the one set
    assert db.rows("t") == [row_of(X1, a=7)]


def test_a_set_after_an_upserts_add_wins_on_a_missing_row(db: Database) -> None:
    # Given no such cart line
    # When one batch upserts it, then sets its quantity, then adds to it
    batch(
        db,
        lambda w: w.upsert("t", row_of(X1, a=2), add={"a": 2}),
        lambda w: w.update("t", key_of(X1), set={"a": 7}),
        lambda w: w.upsert("t", row_of(X1, a=2), add={"a": 2}),
    )
    # Then the row is inserted with the quantity set, then added to
    assert db.rows("t") == [row_of(X1, a=9)]


def test_updates_by_another_key_find_rows_inserted_in_the_batch(db: Database) -> None:
    # Given a stored row
    stored(db, row_of(Y1, c=1))
    # When one batch inserts and upserts rows, and changes them by their unique column
    batch(
        db,
        lambda w: w.insert("t", row_of(X1, c=1)),
        lambda w: w.update("t", {"u": "x1"}, add={"c": 10}, by=("u",)),
        lambda w: w.upsert("t", row_of(X2, c=2), add={"c": 100}),
        lambda w: w.update("t", {"u": "x2"}, add={"c": 10}, by=("u",)),
        lambda w: w.update("t", {"u": "y1"}, add={"c": 10}, by=("u",)),
        lambda w: w.update("t", key_of(X1), set={"b": "p"}),
        lambda w: w.update("t", {"u": "x1"}, add={"c": 10}, by=("u",)),
    )
    # Then every change found its row
    assert db.rows("t") == [row_of(X1, b="p", c=21), row_of(X2, c=12), row_of(Y1, c=11)]


@pytest.mark.parametrize("by", [None, ("u",)])
def test_an_update_of_a_missing_row_before_its_insert_finds_nothing(
    db: Database, by: tuple[str, ...] | None
) -> None:
    # Given no such row
    # When one batch updates it (through its key, or by its unique column), then inserts it
    batch(
        db,
        lambda w: w.update("t", key_of(X1), set={"b": "p"}, add={"a": 5}),
        lambda w: w.update("t", {"u": "x1"} if by else key_of(X1), add={"c": 10}, by=by),
        lambda w: w.insert("t", row_of(X1, a=1, c=1)),
    )
    # Then the updates found nothing: the row is as inserted
    assert db.rows("t") == [row_of(X1, a=1, c=1)]


def test_a_deleted_row_updated_then_upserted_is_the_upserts_row(db: Database) -> None:
    # Given a stored row
    stored(db, row_of(X1, a=1, b="p"))
    # When one batch deletes it, updates it, then upserts it
    batch(
        db,
        lambda w: w.delete("t", key_of(X1)),
        lambda w: w.update("t", key_of(X1), set={"b": "q"}, add={"a": 5}),
        lambda w: w.upsert("t", row_of(X1, a=2, b="r"), set={"b": "s"}, add={"a": 1}),
    )
    # Then the update found nothing, and the upsert inserted its row
    assert db.rows("t") == [row_of(X1, a=2, b="r")]


def test_an_update_by_another_key_before_a_delete_and_insert_changes_the_old_row(
    db: Database,
) -> None:
    # Given a stored row
    stored(db, row_of(X1, c=1))
    # When one batch changes it by its unique column, deletes it and inserts it again
    batch(
        db,
        lambda w: w.update("t", {"u": "x1"}, add={"c": 10}, by=("u",)),
        lambda w: w.delete("t", key_of(X1)),
        lambda w: w.insert("t", row_of(X1, c=2)),
    )
    # Then the change went with the old row
    assert db.rows("t") == [row_of(X1, c=2)]


def test_deferred_statements_run_after_the_rows_are_written(db: Database) -> None:
    # Given a stored row
    stored(db, row_of(Y1, c=1))
    # When one batch defers statements that read and delete a row it inserts
    batch(
        db,
        lambda w: w.defer(
            "UPDATE {t} AS d SET c = d.c + o.a FROM {t} AS o WHERE o.u = :src AND d.u = :dst",
            {"src": "x1", "dst": "y1"},
        ),
        lambda w: w.defer("DELETE FROM {t} WHERE u = :u", {"u": "x1"}),
        lambda w: w.insert("t", row_of(X1, a=5)),
        lambda w: w.update("t", key_of(X1), add={"a": 1}),
        lambda w: w.defer("DELETE FROM {t} WHERE u = :u", {"u": "x2"}),
        lambda w: w.insert("t", row_of(X2)),
    )
    # Then they saw the rows as written by the batch
    assert db.rows("t") == [row_of(Y1, c=7)]


def test_execute_runs_after_everything_recorded_before(db: Database) -> None:
    # Given a stored row
    stored(db, row_of(X1, a=1))
    # When one batch changes rows, runs a statement of its own, then changes them again
    batch(
        db,
        lambda w: w.update("t", key_of(X1), add={"a": 1}),
        lambda w: w.insert("t", row_of(X2, a=3)),
        lambda w: w.execute(DOUBLE, {"k1": "x"}),
        lambda w: w.update("t", key_of(X1), add={"a": 1}),
        lambda w: w.upsert("t", row_of(X2), add={"a": 1}),
    )
    # Then the statement saw the earlier changes, and the later ones apply to its result
    assert db.rows("t") == [row_of(X1, a=6), row_of(X2, a=8)]


BUMP = "UPDATE {t} SET c = c + 1 WHERE u IN ({values})"


def test_a_set_wise_deferred_statement_runs_once_after_the_rows_for_all_its_values(
    db: Database,
) -> None:
    # Given two stored rows
    stored(db, row_of(X1, a=1), row_of(X2, a=2))
    # When one batch defers set-wise statements for them and for a row it inserts,
    # one value twice
    statements = batch(
        db,
        lambda w: w.defer_for(BUMP, "x1"),
        lambda w: w.insert("t", row_of(Y1, a=3)),
        lambda w: w.defer_for(BUMP, "y1"),
        lambda w: w.defer_for(BUMP, "x1"),
        lambda w: w.defer_for("DELETE FROM {t} WHERE u IN ({values})", "x2"),
    )
    # Then each ran once, after the insert, and a value deferred twice counted once
    assert db.rows("t") == [row_of(X1, a=1, c=1), row_of(Y1, a=3, c=1)]
    assert sum("c = c + 1" in s for s in statements) == 1


def test_a_set_wise_statement_must_name_its_values(db: Database) -> None:
    writes = make_writes(db, "t")
    with pytest.raises(ValueError, match="values"):
        writes.defer_for("DELETE FROM {t} WHERE u = :u", "x1")
