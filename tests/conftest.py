"""Shared fixtures: real stores to test against.

Every PostgreSQL test runs in a database created for this test run (dropped at the
end; one per pytest-xdist worker), so that runs never collide. The two workers' tests
run side by side; the most connections any test opens (the multi-process ones, with
small pools) keep two at once well below the server's 100. PostgreSQL is never
mocked and a test that needs it never skips: if the server is down, the test fails and
says so.

Two kinds of PostgreSQL store:

* ``pg_url``: a new, empty schema of the test's own (no tables yet), for tests of
  what happens to a database without tables; a test that asks for ``pg_reused_url``
  (most do, through the store fixtures) gets it if marked ``fresh_schema``.
* ``pg_reused_url``: an empty store whose tables exist already: a schema made once with
  every table (``eventshop migrate``) and put back after each test as it was right
  after migrating (every table truncated and given back the few rows migrating wrote,
  every sequence set back), so that a test sees a store just migrated for a fraction
  of the set-up. Tables a test added are dropped; a schema whose own tables a test
  changed (dropped, altered, renamed), or that something still uses after the test, is
  dropped instead, and the next test gets a new one.

Markers: every test that uses PostgreSQL is marked ``postgres`` automatically (see
``pytest_collection_modifyitems``), so ``pytest -m "not postgres and not slow"`` (``make
test-quick``) is the loop that needs no server.
"""

from __future__ import annotations

import os
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from commands.service import Shop
from eventshop import bootstrap
from eventshop.settings import Settings
from eventstore.url import StoreURL

# Temporary folders, where SQLite stores live, in memory if the machine has a tmpfs:
# SQLite syncs each commit to the disk, which costs more than the test's own work. The
# database behaves the same (a killed process loses nothing the system has).
if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
    os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", "/dev/shm")

# Every process a test starts (servers, workers, publishers, each perhaps with a var/ of
# its own) wraps the customers' data keys with one master key, as the processes of one
# deployment must (EVENTSHOP_PERSONAL_DATA_MASTER_KEY; generated under var/ otherwise).
os.environ.setdefault(
    "EVENTSHOP_PERSONAL_DATA_MASTER_KEY", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
)

ADMIN_URL = os.environ.get(
    "EVENTSHOP_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _admin() -> psycopg.Connection:
    try:
        return psycopg.connect(StoreURL.parse(ADMIN_URL).dsn(), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        pytest.fail(
            f"PostgreSQL is not reachable at {ADMIN_URL} ({error}); start it with\n"
            "  pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """The URL of a PostgreSQL database that exists for this test run only."""
    name = f"eventshop_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with _admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        # A commit does not wait for its WAL to reach the disk: what every session sees
        # is the same (locks, visibility, order); only a crash of the server itself
        # could lose the last commits, and no test crashes the server.
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET synchronous_commit = off").format(sql.Identifier(name))
        )
    base = ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with _admin() as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def _require_postgres_marker(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("postgres") is None:
        pytest.fail(
            f"{request.node.nodeid} uses PostgreSQL but is not marked `postgres`: request"
            " pg_url/pg_reused_url as an argument, parametrise with 'postgres', or mark it",
            pytrace=False,
        )


@pytest.fixture
def pg_url(pg_database: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A PostgreSQL URL whose schema belongs to this test alone (new, without tables)."""
    _require_postgres_marker(request)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    url = f"{pg_database}?schema={schema}"
    StoreURL.parse(url).prepare()
    yield url
    with psycopg.connect(StoreURL.parse(url).dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


# --- PostgreSQL schemas reused between tests ------------------------------------------------

# What a schema is made of, to tell whether a test changed it: every relation (with its
# columns, or an index's definition), constraint, function, type and trigger. Not the
# bodies of functions: the event store's insert function is replaced by every process
# that opens it (CREATE OR REPLACE, with that process's lock timeout in it).
_SHAPE = """
WITH ns AS (SELECT oid FROM pg_namespace WHERE nspname = %(schema)s)
SELECT 'relation', c.relname || ' ' || c.relkind::text || ' ' || CASE
    WHEN c.relkind IN ('i', 'I') THEN pg_get_indexdef(c.oid)
    ELSE coalesce((
        SELECT string_agg(
            a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
            || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
            || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), ''),
            ', ' ORDER BY a.attnum)
        FROM pg_attribute a
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '')
    END
FROM pg_class c WHERE c.relnamespace = (SELECT oid FROM ns)
UNION ALL
SELECT 'constraint', conrelid::regclass::text || ' ' || conname || ' '
    || pg_get_constraintdef(oid)
FROM pg_constraint WHERE connamespace = (SELECT oid FROM ns)
UNION ALL
SELECT 'function', oid::regprocedure::text
FROM pg_proc WHERE pronamespace = (SELECT oid FROM ns)
UNION ALL
SELECT 'type', typname FROM pg_type WHERE typnamespace = (SELECT oid FROM ns)
UNION ALL
SELECT 'trigger', t.tgrelid::regclass::text || ' ' || t.tgname
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
WHERE c.relnamespace = (SELECT oid FROM ns)
ORDER BY 1, 2
"""

# A cheap stand-in for the shape, read after each test: DDL that changes what _SHAPE
# reads writes a new version of a catalog row (a new xmin) or makes a new one (a new
# oid). Functions count by oid and signature only: every process that opens the store
# replaces the event store's insert function (a new row, the same oid and signature),
# and the shape leaves the bodies out too. The same fingerprint as after the last check
# of the shape: the shape is unchanged; another one: the shape itself is read.
_FINGERPRINT = """
WITH ns AS (SELECT oid FROM pg_namespace WHERE nspname = %(schema)s),
rel AS (SELECT oid, xmin FROM pg_class WHERE relnamespace = (SELECT oid FROM ns))
SELECT md5(string_agg(row, ',' ORDER BY row)) FROM (
    SELECT 'c' || oid::text || ':' || xmin::text FROM rel
    UNION ALL
    SELECT 'a' || a.attrelid::text || '.' || a.attnum || ':' || a.xmin::text
    FROM pg_attribute a JOIN rel ON rel.oid = a.attrelid
    UNION ALL
    SELECT 'd' || d.oid::text || ':' || d.xmin::text
    FROM pg_attrdef d JOIN rel ON rel.oid = d.adrelid
    UNION ALL
    SELECT 'k' || oid::text || ':' || xmin::text
    FROM pg_constraint WHERE connamespace = (SELECT oid FROM ns)
    UNION ALL
    SELECT 'f' || oid::regprocedure::text FROM pg_proc WHERE pronamespace = (SELECT oid FROM ns)
    UNION ALL
    SELECT 't' || oid::text || ':' || xmin::text
    FROM pg_type WHERE typnamespace = (SELECT oid FROM ns)
    UNION ALL
    SELECT 'g' || t.oid::text || ':' || t.xmin::text
    FROM pg_trigger t JOIN rel ON rel.oid = t.tgrelid
) AS rows (row)
"""

# Other sessions on the test database that could still act on a schema: in a
# transaction or a query, or holding an advisory lock (a read model's feeder).
_BUSY = """
SELECT pid, state, left(query, 200) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND backend_type = 'client backend'
  AND (state IS DISTINCT FROM 'idle'
       OR pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted))
"""


def schema_shape(conn: psycopg.Connection, schema: str) -> list[tuple[str, str]]:
    return [(kind, text) for kind, text in conn.execute(_SHAPE, {"schema": schema})]


def schema_fingerprint(conn: psycopg.Connection, schema: str) -> str:
    row = conn.execute(_FINGERPRINT, {"schema": schema}).fetchone()
    assert row is not None
    return str(row[0])


def _relations(conn: psycopg.Connection, schema: str, kinds: str) -> list[tuple[str, str]]:
    """(name, kind) of the relations of ``schema`` whose relkind is in ``kinds``."""
    return conn.execute(
        "SELECT c.relname, c.relkind::text FROM pg_class c JOIN pg_namespace n"
        " ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind::text = ANY(%s)"
        " ORDER BY 1",
        (schema, list(kinds)),
    ).fetchall()


@dataclass
class Baseline:
    """What a schema holds right after ``eventshop migrate``: the rows of its tables (the
    library's ``__migration__`` tracking rows, each read model's position 0, status row
    and version), kept in a schema beside it, and where each of its sequences stands."""

    copy: str
    tables: list[str]
    sequences: list[tuple[str, int, bool]]


def save_baseline(conn: psycopg.Connection, schema: str) -> Baseline:
    copy = f"{schema}_baseline"
    tables = []
    with conn.transaction():
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(copy)))
        for name, _ in _relations(conn, schema, "rp"):
            source = sql.Identifier(schema, name)
            rows = conn.execute(sql.SQL("SELECT EXISTS (SELECT FROM {})").format(source))
            if rows.fetchone() == (True,):
                conn.execute(
                    sql.SQL("CREATE TABLE {} AS TABLE {}").format(
                        sql.Identifier(copy, name), source
                    )
                )
                tables.append(name)
    sequences = []
    for name, _ in _relations(conn, schema, "S"):
        last, called = conn.execute(
            sql.SQL("SELECT last_value, is_called FROM {}").format(sql.Identifier(schema, name))
        ).fetchone()  # type: ignore[misc]
        sequences.append((name, last, called))
    return Baseline(copy, tables, sequences)


def restore_baseline(conn: psycopg.Connection, schema: str, baseline: Baseline) -> None:
    """Put ``schema`` back as it was right after migrating: every table emptied (looked
    up, not listed: the event store's, the read models' with their tracking positions,
    status and projection_versions rows, the idempotency keys, the audit checkpoints,
    and any table added later), the baseline's rows put back, and every sequence (the
    event store's notification ids, identity columns) set back to where it stood."""
    tables = [sql.Identifier(schema, name) for name, _ in _relations(conn, schema, "rp")]
    refill = [
        sql.SQL("INSERT INTO {} SELECT * FROM {}").format(
            sql.Identifier(schema, name), sql.Identifier(baseline.copy, name)
        )
        for name in baseline.tables
    ] + [
        sql.SQL("SELECT setval({}::regclass, {}, {})").format(
            sql.Literal(sql.Identifier(schema, name).as_string(conn)),
            sql.Literal(last),
            sql.Literal(called),
        )
        for name, last, called in baseline.sequences
    ]
    # DELETE, not TRUNCATE: on tables this small, ten times faster (no new files).
    empty = [sql.SQL("DELETE FROM {}").format(table) for table in tables]
    try:
        _run_as_one(conn, [*empty, *refill])
    except psycopg.errors.ForeignKeyViolation:
        truncate = sql.SQL("TRUNCATE {} CASCADE").format(sql.SQL(", ").join(tables))
        _run_as_one(conn, [truncate, *refill])


def _run_as_one(conn: psycopg.Connection, statements: list[sql.Composed]) -> None:
    """Run ``statements`` in one round trip: sent together without parameters (the simple
    query protocol), they are one transaction, applied all or not at all."""
    lock_timeout = sql.SQL("SELECT set_config('lock_timeout', '5s', true)")
    conn.execute(sql.SQL("; ").join([lock_timeout, *statements]), prepare=False)


_DROP = {"r": "TABLE", "p": "TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW", "S": "SEQUENCE"}


def drop_relations_added(
    conn: psycopg.Connection, schema: str, shape: list[tuple[str, str]]
) -> None:
    """Drop the tables, views and sequences of ``schema`` that ``shape`` does not have."""
    known = {text.split(" ", 1)[0] for kind, text in shape if kind == "relation"}
    rows = conn.execute(
        "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n"
        " ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = ANY(%s)",
        (schema, list(_DROP)),
    ).fetchall()
    with conn.transaction():
        conn.execute("SET LOCAL lock_timeout = '5s'")
        for name, kind in rows:
            if name not in known:
                conn.execute(
                    sql.SQL("DROP {} IF EXISTS {} CASCADE").format(
                        sql.SQL(_DROP[kind]), sql.Identifier(schema, name)
                    )
                )


@dataclass
class SchemaPool:
    """Schemas of ``database`` with every table made, handed to one test at a time."""

    database: str
    idle: list[str] = field(default_factory=list)
    shapes: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    fingerprints: dict[str, str] = field(default_factory=dict)
    baselines: dict[str, Baseline] = field(default_factory=dict)
    made: int = 0
    reused: int = 0
    dropped: list[str] = field(default_factory=list)
    _conn: psycopg.Connection | None = None

    def url(self, schema: str) -> str:
        return f"{self.database}?schema={schema}"

    def _connect(self) -> psycopg.Connection:
        """The pool's own connection, kept between tests (a new one for each test cost
        as much as the rest of putting a schema back); again if it broke."""
        if self._conn is not None and not (self._conn.closed or self._conn.broken):
            return self._conn
        self._conn = psycopg.connect(StoreURL.parse(self.database).dsn(), autocommit=True)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def take(self) -> str:
        if self.idle:
            self.reused += 1
            return self.url(self.idle.pop())
        schema = f"r_{uuid.uuid4().hex[:12]}"
        bootstrap.migrate(settings_for(self.url(schema)))
        conn = self._connect()
        self.shapes[schema] = schema_shape(conn, schema)
        self.fingerprints[schema] = schema_fingerprint(conn, schema)
        self.baselines[schema] = save_baseline(conn, schema)
        self.made += 1
        return self.url(schema)

    def give_back(self, url: str, test: str) -> None:
        """Empty the schema for the next test, or drop it if it cannot be trusted."""
        schema = StoreURL.parse(url).schema
        conn = self._connect()
        try:
            why = self._unfit(conn, schema)
        except psycopg.OperationalError:
            # The kept connection died with the test (a test that ends every session):
            # once more on a new one.
            conn.close()
            conn = self._connect()
            try:
                why = self._unfit(conn, schema)
            except psycopg.Error as error:
                why = f"could not be restored ({error})"
        except psycopg.Error as error:
            why = f"could not be restored ({error})"
        if why is None:
            try:
                restore_baseline(conn, schema, self.baselines[schema])
            except psycopg.Error as error:
                why = f"could not be emptied ({error})"
        if why is None:
            self.idle.append(schema)
            return
        self.dropped.append(f"{test}: {why}"[:400])
        del self.shapes[schema], self.fingerprints[schema]
        copy = self.baselines.pop(schema).copy
        try:
            with conn.transaction():
                conn.execute("SET LOCAL lock_timeout = '5s'")
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {}, {} CASCADE").format(
                        sql.Identifier(schema), sql.Identifier(copy)
                    )
                )
        except psycopg.Error:
            pass  # still in use: left to the DROP DATABASE at the end of the run

    def _unfit(self, conn: psycopg.Connection, schema: str) -> str | None:
        deadline = time.monotonic() + 5
        while busy := conn.execute(_BUSY).fetchall():
            if time.monotonic() > deadline:
                return f"still in use by {busy}"
            time.sleep(0.05)
        fingerprint = schema_fingerprint(conn, schema)
        if fingerprint == self.fingerprints[schema]:
            return None
        expected = self.shapes[schema]
        shape = schema_shape(conn, schema)
        if shape != expected:
            # Tables a test added beside the others (a rebuild's copy under another
            # prefix, a test's own table) go; whatever else changed drops the schema.
            drop_relations_added(conn, schema, expected)
            shape = schema_shape(conn, schema)
        if shape != expected:
            changed = sorted(set(shape) ^ set(expected))
            return f"its shape changed: {changed[:5]}"
        self.fingerprints[schema] = schema_fingerprint(conn, schema)
        return None


@pytest.fixture(scope="session")
def pg_schemas(pg_database: str, request: pytest.FixtureRequest) -> Iterator[SchemaPool]:
    pool = SchemaPool(pg_database)
    request.config._eventshop_schema_pool = pool  # type: ignore[attr-defined]
    yield pool
    pool.close()


@pytest.fixture
def pg_reused_url(pg_schemas: SchemaPool, request: pytest.FixtureRequest) -> Iterator[str]:
    """A PostgreSQL URL of an empty store whose tables exist: as a fresh store to every
    test that does not look at which tables there are (see the module's docstring).

    A test marked ``fresh_schema`` gets ``pg_url`` instead: a new schema, no tables.
    """
    _require_postgres_marker(request)
    if request.node.get_closest_marker("fresh_schema") is not None:
        yield str(request.getfixturevalue("pg_url"))
        return
    url = pg_schemas.take()
    yield url
    pg_schemas.give_back(url, request.node.nodeid)


def _pool_counts(config: pytest.Config) -> dict[str, Any]:
    pool: SchemaPool | None = getattr(config, "_eventshop_schema_pool", None)
    if pool is None:
        return {"made": 0, "reused": 0, "dropped": []}
    return {"made": pool.made, "reused": pool.reused, "dropped": list(pool.dropped)}


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # a pytest-xdist worker: tell the controller
        workeroutput["eventshop_schema_pool"] = _pool_counts(session.config)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    counts = getattr(node, "workeroutput", {}).get("eventshop_schema_pool")
    if counts:
        node.config._eventshop_worker_pools = [
            *getattr(node.config, "_eventshop_worker_pools", []),
            counts,
        ]


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """How often a schema with tables was made, reused, and dropped after a test."""
    every = [_pool_counts(config), *getattr(config, "_eventshop_worker_pools", [])]
    made, reused = sum(c["made"] for c in every), sum(c["reused"] for c in every)
    dropped = [line for c in every for line in c["dropped"]]
    if not (made or reused):
        return
    terminalreporter.write_line(
        f"PostgreSQL schemas with tables: {made} made, {reused} reused,"
        f" {len(dropped)} dropped after a test"
    )
    for line in dropped:
        terminalreporter.write_line(f"  dropped: {line}")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'eventshop.db'}"


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest) -> str:
    """Each store eventshop runs on: the same test runs once on each."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_reused_url"))


def settings_for(url: str, **overrides: object) -> Settings:
    """The shop's settings for a store, ignoring any .env file of the machine."""
    return Settings(_env_file=None, database_url=url, **overrides)  # type: ignore[call-arg]


def open_shop(url: str, **library_env: str) -> Shop:
    """The write side on ``url``, opened by the composition root as the app opens it."""
    return bootstrap.open_shop(settings_for(url), **library_env)


@pytest.fixture
def shop(store_url: str) -> Iterator[Shop]:
    app = open_shop(store_url)
    yield app
    app.close()


# --- markers -------------------------------------------------------------------------------

PG_FIXTURES = {"pg_database", "pg_url", "pg_reused_url", "pg_schemas"}
# Parameter values that select PostgreSQL in the suite's parametrised store fixtures
# (store_url, database_url, audit_url, url, new_store, db, ...: "postgres"; "pg" where
# the value names the fixture, f"{param}_url").
PG_PARAMS = {"postgres", "pg"}

# Tests (every parameter of each), by file, that reach PostgreSQL without the fixtures
# (the benchmarks make databases of their own).
POSTGRES_BY_HAND = {
    "tests/test_bench_smoke.py": {
        "test_quick_suite_measures_everything_and_saves_table_json_and_plot",
        "test_delivery_lag_quick_run_sees_every_event_once_in_log_order",
    },
}
# Tests that take long: several processes, the benchmarks, fuzzing, long rebuilds.
SLOW = {
    "tests/test_multiprocess.py": {
        "test_two_api_processes_and_two_workers_survive_a_sigkill_each",
    },
    "tests/test_bench_smoke.py": {
        "test_quick_suite_measures_everything_and_saves_table_json_and_plot",
        "test_delivery_lag_quick_run_sees_every_event_once_in_log_order",
    },
    "tests/integration/test_publisher_kill.py": {
        "test_a_publisher_killed_mid_stream_leaves_no_gap_and_no_duplicate",
    },
    "tests/hardening/test_fuzz.py": {"test_fuzz_the_api"},
    "tests/projections/test_live_equals_rebuild.py": {
        "test_live_read_models_equal_a_rebuild_from_scratch",
    },
    "tests/projections/test_parallel_rebuild.py": {
        "test_every_read_model_rebuilt_in_workers_equals_the_live_one",
        "test_a_handler_failing_in_a_worker_parks_the_event",
    },
    "tests/projections/test_rebuild.py": {
        "test_a_rebuild_killed_halfway_leaves_the_live_copy_serving_and_can_be_run_again",
        "test_a_rebuild_while_commands_keep_coming_swaps_in_step_with_the_live_feeder",
        "test_queries_keep_answering_during_rebuilds_and_the_rebuilt_models_equal_the_old",
    },
    "tests/projections/test_crashes.py": {
        "test_a_worker_killed_mid_catch_up_resumes_where_it_stopped",
    },
    "tests/projections/test_workers.py": {
        "test_two_workers_never_both_apply_an_event_and_one_takes_over",
    },
}


def _listed(item: pytest.Item, listing: dict[str, set[str]]) -> bool:
    path, _, name = item.nodeid.partition("::")
    return name.split("[", 1)[0] in listing.get(path, set())


def uses_postgres(item: pytest.Item) -> bool:
    if PG_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return False
    values = [v for v in callspec.params.values() if isinstance(v, str)]
    return any(v in PG_PARAMS for v in values) or "postgres" in callspec.id.split("-")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark ``postgres`` every test that needs the server (``-m "not postgres"`` runs the
    rest), and ``slow`` those listed in SLOW. A test that reaches PostgreSQL some other
    way is listed in POSTGRES_BY_HAND (and pg_url / pg_reused_url fail a test that uses
    them unmarked). The slow tests run first: started last, one of them would keep one
    pytest-xdist worker busy for up to a minute while the other has nothing left to do."""
    modules: dict[str, Any] = {}
    for item in items:
        if _listed(item, POSTGRES_BY_HAND) or uses_postgres(item):
            item.add_marker(pytest.mark.postgres)
        if _listed(item, SLOW):
            item.add_marker(pytest.mark.slow)
        if isinstance(item, pytest.Function):
            modules[item.nodeid.partition("::")[0]] = item.module
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable
    # A renamed test would drop out of the lists unseen: say so when its module is here.
    for listing in (POSTGRES_BY_HAND, SLOW):
        for path, names in listing.items():
            module = modules.get(path)
            for name in sorted(names):
                if module is not None and not hasattr(module, name):
                    message = f"tests/conftest.py lists {path}::{name}, which is no test"
                    warnings.warn(pytest.PytestWarning(message), stacklevel=1)
