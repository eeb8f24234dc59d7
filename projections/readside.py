"""Composition of the read side: every read model of a Shop, its runner and its store."""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from eventsourcing.persistence import ApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore
from eventsourcing.utils import Environment

from eventstore.database import advisory_key, migration_lock
from eventstore.log import LOG_NAME, events_table
from eventstore.log import mapper as log_mapper
from eventstore.personal import KeyRing
from eventstore.postgres import Factory, LogRecorder
from eventstore.url import StoreURL
from projections.engine import parking
from projections.engine.base import ReadModel
from projections.engine.feed import Source
from projections.engine.locks import AdvisoryLocks, FileLocks, LockKeeper
from projections.engine.outcome import RebuildOutcome
from projections.engine.parking import ParkedEvent
from projections.engine.postgres_recorder import PostgresReadModelRecorder
from projections.engine.progress import Progress, ProgressCallback, published_rebuild
from projections.engine.rebuild import Rebuilder
from projections.engine.runner import Runner
from projections.engine.sqlite_recorder import SQLiteReadModelRecorder
from projections.engine.tables import ReadModelStore
from projections.readmodels.carts import Carts
from projections.readmodels.catalogue import Catalogue
from projections.readmodels.customers import Customers
from projections.readmodels.orders import Orders
from projections.readmodels.sales import Sales
from projections.readmodels.stock import StockLevels

MODELS: tuple[type[ReadModel], ...] = (Catalogue, StockLevels, Carts, Orders, Customers, Sales)

log = logging.getLogger("eventshop.projections")


class ReadSide:
    """Every read model of the shop, the runner that feeds them, and their queries.

    The read models are attributes (``read_side.orders.list_orders(...)``); ``start()``
    feeds them in threads of this process, ``wait_for``/``status``/``position`` work
    whether they are fed here or by ``eventshop worker`` processes. ``rebuild(name)``
    rebuilds one blue/green while it keeps answering (``rebuild.py``).
    """

    catalogue: Catalogue
    stock: StockLevels
    carts: Carts
    orders: Orders
    customers: Customers
    sales: Sales

    def __init__(
        self,
        models: Sequence[ReadModel],
        runner: Runner,
        rebuilder: Rebuilder,
        closers: Sequence[Any],
    ) -> None:
        self.models = {model.name: model for model in models}
        for model in models:
            setattr(self, model.name, model)
        self.runner = runner
        self.rebuilder = rebuilder
        self._closers = closers

    @property
    def names(self) -> list[str]:
        return list(self.models)

    def projection(self, name: str) -> ReadModel:
        """A read model by name; KeyError if there is none."""
        return self.models[name]

    def start(self) -> None:
        """Feed every read model here; and rebuild, blue/green, each whose live tables an
        older version of its code built (or wait while another process does)."""
        self.runner.start()
        versions = self._view.read_versions()
        for name, model in self.models.items():
            stored = versions.get(name, {}).get("version")
            if stored is not None and int(stored) < model.version:
                self.rebuilder.keep_current(name)

    def stop(self) -> None:
        self.runner.stop()

    def wait_for(self, name: str | None, position: int, timeout: float = 5.0) -> bool:
        return self.runner.wait_for(name, position, timeout)

    def position(self, name: str) -> int:
        return self.runner.position(name)

    # --- rebuilds ----------------------------------------------------------------------------

    def rebuild(self, name: str) -> None:
        """Start a blue/green rebuild of ``name`` in a thread of this process; returns at
        once. KeyError for an unknown name; ``AlreadyRebuilding`` (a RuleBroken: 409)
        when it is being rebuilt already, here or in another process."""
        self.rebuilder.start(name)

    def rebuild_blocking(
        self, name: str, on_progress: ProgressCallback | None = None
    ) -> RebuildOutcome:
        """Rebuild ``name`` blue/green in this thread (the CLI); ``on_progress(Progress)``
        after every batch. Returns the outcome: position, events, events/s and the
        comparison of old and new tables (``comparison.equal``, ``.tables``)."""
        return self.rebuilder.run(name, on_progress)

    def wait_rebuild(self, name: str, timeout: float = 60.0) -> RebuildOutcome | None:
        """The outcome of this process's rebuild of ``name`` once it ends (None if none
        ran here, or after ``timeout`` seconds)."""
        return self.rebuilder.wait(name, timeout)

    def reset_blocking(self, name: str, on_progress: ProgressCallback | None = None) -> None:
        """Empty ``name``'s tables and feed them again from position 0 (not blue/green:
        it answers from empty, then partial, tables until caught up). Returns once it
        has caught up: fed here unless another process (or this one's runner) feeds it."""
        self.rebuilder.reset(name, on_progress, feed_here=not self.runner.running)

    # --- parked events -----------------------------------------------------------------------

    def parked(self, name: str) -> list[ParkedEvent]:
        """The events ``name``'s handlers failed on, parked, in log order (KeyError: no
        such read model)."""
        return parking.listing(self.models[name])

    def retry_parked(self, name: str, position: int) -> ParkedEvent:
        """Apply the parked event at ``position`` now (after a fix), exactly once:
        ``NotParked`` (404) when it is not parked, ``StillFailing`` (409) when it fails
        again, ``AlreadyRebuilding`` (409) during a rebuild."""
        with self.rebuilder.exclusive(name):
            return parking.retry(self.models[name], self.runner.source, position)

    def skip_parked(self, name: str, position: int, by: str | None = None) -> ParkedEvent:
        """Give up on the parked event at ``position``; the skip is recorded, with ``by``.
        ``NotParked`` (404), ``AlreadyRebuilding`` (409) as ``retry_parked``."""
        with self.rebuilder.exclusive(name):
            return parking.skip(self.models[name], self.runner.source, position, by)

    # --- status ------------------------------------------------------------------------------

    def status(self) -> list[dict[str, Any]]:
        """Per read model: ``name``, ``state``, ``position``, ``head``, ``lag``,
        ``events_per_second``, ``events_applied``, ``last_error``, ``worker`` (see the
        package docstring), and ``version`` (the code's), ``stored_version`` (the live
        tables'), ``rebuild`` (a running rebuild's ``position``, ``target``, ``head``,
        ``events_per_second``, ``eta_seconds``, ``started_at``, ``phase``, ``worker``; or
        None) and ``last_rebuild`` (``finished_at``, ``comparison``, ``error``, ...; or
        None), ``parked`` (events parked; then ``state`` is ``degraded`` rather than
        ``live``). While a rebuild runs, ``state`` is ``rebuilding``."""
        answer = self.runner.status()
        versions = self._view.read_versions()
        for entry in answer:
            name = entry["name"]
            row = versions.get(name)
            local: Progress | None = self.rebuilder.progress(name)
            interrupted: RebuildOutcome | None = None
            if local is not None:
                running: dict[str, Any] | None = local.as_dict()
            else:
                alive = None
                if (row or {}).get("rebuild"):
                    alive = self.rebuilder.locks.held_anywhere(name)
                running, interrupted = published_rebuild(row, alive)
            if running is not None:
                entry["state"] = "rebuilding"
                running = {**running, "head": entry["head"]}
                running["target"] = max(running["target"], entry["head"])
                running.pop("heartbeat_at", None)
                remaining, eps = (
                    running["target"] - running["position"],
                    running["events_per_second"],
                )
                running["eta_seconds"] = (
                    0.0 if remaining <= 0 else round(remaining / eps, 1) if eps else None
                )
            entry["version"] = self.models[name].version
            entry["stored_version"] = None if row is None else int(row["version"])
            entry["rebuild"] = running
            # How the last one ended, said as this code says it (whoever recorded it).
            ended = interrupted
            if ended is None and (recorded := (row or {}).get("last_rebuild")) is not None:
                ended = RebuildOutcome.from_dict(recorded)
            entry["last_rebuild"] = None if ended is None else ended.as_dict()
        return answer

    def closing(self, closer: Any) -> None:
        """Close ``closer`` too when the read side closes."""
        self._closers = [*self._closers, closer]

    def close(self) -> None:
        """Stop rebuilding and feeding, and close the read side's connections."""
        self.rebuilder.stop()
        self.runner.stop()
        for closer in self._closers:
            with contextlib.suppress(Exception):
                closer.close()

    @property
    def _view(self) -> ReadModelStore:
        return next(iter(self.models.values())).view


def build_read_side(
    store: StoreURL,
    *,
    log: ApplicationRecorder | None = None,
    prefix: str = "",
    batch_size: int = 500,
    worker_id: str | None = None,
    models: Sequence[type[ReadModel]] = MODELS,
    keys: KeyRing | None = None,
) -> ReadSide:
    """Every read model of the shop, in the database of ``store`` (the event store's own).

    ``keys``: the customers' data keys, to read sealed personal fields (without them,
    those read as erased).

    Creates the tables that are missing (serialised across processes on PostgreSQL).
    ``prefix`` names another copy of every table (a rebuild next to the live copy).
    Nothing runs until ``start()``. A ``memory://`` store keeps the read models in an
    in-memory SQLite database of this process, fed from ``log``, the in-memory recorder
    of this process's write side.
    """
    names = {m.name: f"{prefix}{m.name}" for m in models}
    if store.is_postgres:
        where = _in_postgres(store, names)
    elif store.is_sqlite:
        where = _in_sqlite(store, names)
    elif log is not None:
        where = _in_memory(log)
    else:
        raise ValueError("a read side on memory:// reads the log of this process: pass log")
    datastore, reader, view_class = where.datastore, where.reader, where.recorder

    def make_view(table_prefix: str, tracking_table_name: str) -> ReadModelStore:
        return view_class(
            datastore, tracking_table_name=tracking_table_name, table_prefix=table_prefix
        )

    built: list[ReadModel] = []
    with migration_lock(store):
        # The log's own tables are the write side's to create (``eventshop migrate``,
        # ``serve`` and ``worker`` open it first): made here, they would be made with
        # the read side's settings. Only the schema the read models go in is made here.
        store.prepare()
        for model_class in models:
            view = make_view(prefix, f"{prefix}{model_class.name}_tracking")
            view.create_table()
            view.create_support_tables()
            view.start_tracking(LOG_NAME)
            fresh = view.position(LOG_NAME) == 0
            stored = view.baseline_version(
                model_class.name, model_class.version, model_class.tables, fresh
            )
            # Tables another version built stay as they are until a rebuild replaces them.
            built.append(model_class(view, create=stored == model_class.version))
    source = Source(reader, log_mapper(keys), LOG_NAME, subscribe=where.subscribe)
    runner = Runner(built, source, where.locks, batch_size=batch_size, worker_id=worker_id)
    rebuilder = Rebuilder(
        {model.name: model for model in built},
        source,
        make_view,
        where.rebuild_locks,
        feeding_locks=where.locks,
        worker_id=runner.worker_id,
        on_swapped=lambda name: runner.workers[name].nudge(),
    )
    return ReadSide(built, runner, rebuilder, [datastore, *where.closers])


def run_worker(
    store: StoreURL,
    stop_event: threading.Event,
    *,
    prefix: str = "",
    batch_size: int = 500,
    worker_id: str | None = None,
    keys: KeyRing | None = None,
) -> None:
    """Feed every read model of ``store`` until ``stop_event`` is set (``eventshop worker``);
    ``keys`` read the sealed personal fields (without them, those read as erased).

    Start as many as you like on one PostgreSQL database: each read model is fed by one
    of them at a time, and another takes over within seconds when that one dies.
    """
    if store.is_memory:
        raise ValueError("a worker needs a shared store: sqlite:// or postgresql://, not memory://")
    read_side = build_read_side(
        store, prefix=prefix, batch_size=batch_size, worker_id=worker_id, keys=keys
    )
    try:
        read_side.start()
        log.info("projection worker %s running", read_side.runner.worker_id)
        stop_event.wait()
    finally:
        read_side.close()


@dataclass(frozen=True)
class _Where:
    """Where a store's read models live, and what differs between stores besides their
    recorder: how the log is read, and how processes share out the read models."""

    datastore: Any
    reader: ApplicationRecorder
    """The log's recorder."""
    recorder: Callable[..., ReadModelStore]
    """The class of its read models' recorders."""
    locks: LockKeeper
    """One feeder per read model."""
    rebuild_locks: LockKeeper
    """One rebuild per read model."""
    subscribe: bool
    """Whether the log can be subscribed to (else the live feed polls it)."""
    closers: tuple[Any, ...] = ()
    """Datastores of its own besides ``datastore``, closed with the read side."""


def _in_postgres(store: StoreURL, names: dict[str, str]) -> _Where:
    env = {**store.library_env(), **_pool_settings(len(names))}
    datastore = Factory(Environment(env=env)).datastore
    schema = datastore.schema
    return _Where(
        datastore,
        LogRecorder(datastore, events_table_name=events_table(store)),
        PostgresReadModelRecorder,
        AdvisoryLocks(store.dsn(), {m: advisory_key(schema, n) for m, n in names.items()}),
        AdvisoryLocks(
            store.dsn(), {m: advisory_key(schema, n, "rebuild") for m, n in names.items()}
        ),
        subscribe=True,
    )


def _in_sqlite(store: StoreURL, names: dict[str, str]) -> _Where:
    lock_timeout = store.library_env().get("SQLITE_LOCK_TIMEOUT")
    # One writer connection at a time, shared by every worker and rebuild of the
    # process: waiting 5 s for it (the library's default) is too short for six
    # rebuilds at once on a busy 2-core box.
    datastore = SQLiteDatastore(
        store.path,
        lock_timeout=int(lock_timeout) if lock_timeout else None,
        max_overflow=20,
        pool_timeout=60.0,
    )
    # The log is read through connections of its own: a swap reads the log while it
    # holds the writer connection, and the library's pool hands out connections in
    # order, so a read from the same pool would queue behind the next writer waiting
    # for that very connection (a deadlock until the pool's timeout).
    log_datastore = SQLiteDatastore(
        store.path, lock_timeout=int(lock_timeout) if lock_timeout else None, max_overflow=20
    )
    return _Where(
        datastore,
        SQLiteApplicationRecorder(log_datastore, events_table_name=events_table(store)),
        SQLiteReadModelRecorder,
        FileLocks({m: f"{store.path}.{n}.lock" for m, n in names.items()}),
        FileLocks({m: f"{store.path}.{n}.rebuild.lock" for m, n in names.items()}),
        subscribe=False,
        closers=(log_datastore,),
    )


def _in_memory(log: ApplicationRecorder) -> _Where:
    # One process: the runner's and the rebuilder's own bookkeeping suffices for locks.
    datastore = SQLiteDatastore(f"file:eventshop-{uuid.uuid4().hex}?mode=memory&cache=shared")
    return _Where(
        datastore, log, SQLiteReadModelRecorder, LockKeeper(), LockKeeper(), subscribe=False
    )


def _pool_settings(models: int) -> dict[str, str]:
    # Connections: the feed holds one for LISTEN and briefly one to read; each worker
    # one per batch; queries borrow the rest. Creating tables happens once, under a lock.
    return {
        "POSTGRES_POOL_SIZE": "2",
        "POSTGRES_MAX_OVERFLOW": str(models + 8),
        # A batch transaction is short, but on a busy 2-core box 5 s of GIL starvation
        # between two statements must not kill it.
        "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "60",
        "CREATE_TABLE": "n",
    }
