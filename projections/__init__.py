"""The read side: read models fed from the event log exactly once, and their queries.

Interface for the API and the CLI
---------------------------------

``build_read_side(store, *, log=None, prefix="", batch_size=500) -> ReadSide``
    Every read model in the database of ``store`` (an ``eventstore.url.StoreURL``): the
    event store's own PostgreSQL schema or SQLite file; tables are created if missing.
    ``memory://`` works too, for tests: the read models then live in an in-memory SQLite
    database of this process, fed from ``log``, the write side's in-memory recorder
    (nothing survives the process, and no worker process can see them). The read side
    decodes the log with ``eventstore.log``'s mapper: it needs nothing of ``commands``.

``ReadSide``
    ``start()`` / ``stop()`` / ``close()``: feed the read models in threads of this process
    (``eventshop serve``); without ``start()`` the queries still answer from whatever
    ``eventshop worker`` processes have written.
    ``wait_for(name_or_None, position, timeout=5.0) -> bool``: read-your-writes; True
    once that read model (``None``/``"all"``: every one) has applied log ``position``.
    The same wait for an asyncio server, holding no thread while it waits:
    ``await PositionWaits(read_side.runner, limit=N).wait(name, position, timeout)``
    (``projections.engine.waits``; ``TooManyWaiters`` once ``N`` coroutines wait).
    ``position(name) -> int``: how far a read model has got (``X-Projection-Position``;
    read it before the query, and the answer is at least that fresh).
    ``status() -> list[dict]``: per read model ``name``, ``state`` (``live``,
    ``catching_up``, ``degraded`` (either, with parked events), ``standby``, ``retrying``,
    ``stopped``, ``not_running``, ``rebuilding``, ``outdated``), ``parked`` (a count),
    ``position``, ``head``, ``lag``, ``events_per_second``, ``events_applied``,
    ``last_error`` (``None``, or the failing event's ``position``, ``topic``,
    ``originator_id``, ``originator_version``, ``error``, ``at``, ``worker``) and ``worker``.
    ``runner.restart(name)``: resume a read model stopped on a failing event (policy
    ``stop``; by default a failing event is parked instead, see ``engine/parking.py``).
    ``parked(name) -> list[ParkedEvent]``, ``retry_parked(name, position)``,
    ``skip_parked(name, position, by)``: the events a handler failed on; apply one now
    (exactly once) after a fix, or give up on it (``NotParked``: 404, ``StillFailing``
    and ``AlreadyRebuilding``: 409).
    ``names``, ``projection(name)``.
    ``rebuild(name)``: start a blue/green rebuild in a thread of this process and return
    at once (KeyError: no such read model; ``AlreadyRebuilding``, a ``RuleBroken`` (409):
    it is being rebuilt already, in this process or another). The read model keeps
    answering from its live copy until the new one is swapped in, in one transaction.
    ``rebuild_blocking(name, on_progress=None) -> RebuildOutcome``: the same in this
    thread, calling ``on_progress(Progress)`` after every batch; returns the outcome
    (``position``, ``events``, ``events_per_second``, ``phases``, ``comparison`` of old
    and new tables: ``equal``, ``differences``, per table ``live_rows``/``new_rows``/
    checksums; ``as_dict()`` for JSON).
    ``wait_rebuild(name, timeout) -> RebuildOutcome | None``: the outcome of this
    process's rebuild once it ends.
    ``reset_blocking(name, on_progress=None)``: empty the tables and feed them again
    from 0 (it answers from empty tables meanwhile; prefer ``rebuild``).
    While a rebuild runs, ``status()`` says ``state: "rebuilding"`` and gives
    ``rebuild`` (``position``, ``target``, ``events`` of ``total`` (the log's events up
    to ``target``: positions may have gaps), ``events_per_second``, ``eta_seconds``,
    ``started_at``, ``phase``, ``worker``); ``last_rebuild`` is how the
    last one ended (``RebuildOutcome.as_dict()``: ``finished_at``, ``comparison``,
    ``error``, ``reset``, ...); ``version`` and ``stored_version`` are the code's and the
    live tables' versions.

Versions: each read model declares ``version``; ``start()`` rebuilds, blue/green, every
read model whose live tables an older version built (a fresh database is built at the
current version). Until the swap, the old tables answer but are fed only by workers of
their own version (state ``outdated`` here).

``run_worker(store, stop_event, *, prefix="", batch_size=500)``
    The body of ``eventshop worker``: feeds every read model until ``stop_event`` is set.
    Several may run on one PostgreSQL database; each read model is fed by one at a time
    (advisory lock) and another takes over within seconds when it dies.
    ``python -m projections URL`` runs one too.

Queries (plain dicts ready for JSON; money as decimal strings; times as UTC ISO 8601).
Lists answer ``{"items": [...], "next_cursor": str | None}`` with ``limit`` (default 50,
at most 500) and an opaque ``cursor``. Unknown ids raise ``domain.errors.NotFound`` (404),
bad arguments ``InvalidValue`` (422). ``owner`` = the calling customer's id: another
customer's cart or order is NotFound.

- ``read_side.catalogue.list_products(limit, cursor)``, ``.get_product(sku)``
- ``read_side.stock.list_stock(below, limit, cursor)``, ``.get_stock(sku)``
- ``read_side.carts.get_cart(cart_id, owner=None)``
- ``read_side.orders.list_orders(customer_id, status, placed_from, placed_to, limit,
  cursor)`` newest first; ``.get_order(order_id, owner=None)`` with ``status_history``
- ``read_side.customers.get_customer(customer_id)``, ``.order_history(customer_id,
  limit, cursor)``
- ``read_side.sales.sales_report(day_from, day_to)`` per day and per SKU

Where things are: ``readmodels/`` holds the shop's read models, one module each (its
tables, its handlers, its queries). ``engine/`` feeds them: ``runner.py`` and
``worker.py`` (locks, catch-up, live feed), ``parking.py`` (poison events), ``feed.py`` (the log),
``tables.py`` (one transaction for rows + tracking position; each database's differences
in ``postgres_recorder.py`` and ``sqlite_recorder.py``), ``base.py`` (declaring a read
model), ``writes.py`` (set-wise row writes), ``rebuild.py`` (blue/green rebuilds: the
protocol; ``jobs.py``, ``replay.py``, ``parallel.py``, ``swap.py``, ``progress.py`` and
``outcome.py`` do its parts), ``timers.py`` (durable timers of process managers: a read
model of timers, and their firing). ``audit/`` reads the log for auditors (hash chain,
histories).
"""

from projections.engine.jobs import AlreadyRebuilding
from projections.engine.outcome import Comparison, RebuildOutcome, TableComparison
from projections.engine.parking import NotParked, ParkedEvent, StillFailing
from projections.engine.progress import Progress
from projections.readside import MODELS, ReadSide, build_read_side, run_worker

__all__ = [
    "MODELS",
    "AlreadyRebuilding",
    "Comparison",
    "NotParked",
    "ParkedEvent",
    "Progress",
    "ReadSide",
    "RebuildOutcome",
    "StillFailing",
    "TableComparison",
    "build_read_side",
    "run_worker",
]
