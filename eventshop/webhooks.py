"""Webhooks, wired: their tables in the read side's database, the log the read side
reads, the operator's allow-list and retry settings, and who may deliver at a time.

The deliverer runs wherever the read models are fed (``eventshop serve`` with
``run_projections``, ``eventshop worker``); one process at a time delivers.
"""

from __future__ import annotations

from eventshop.settings import Settings
from eventstore.database import advisory_key, migration_lock
from eventstore.url import StoreURL
from projections import ReadSide
from projections.engine.locks import AdvisoryLocks, FileLocks, LockKeeper
from projections.integration.events import Thresholds
from projections.webhooks import Webhooks
from projections.webhooks.delivery import LOCK, Deliverer, Policy
from projections.webhooks.sender import Sender
from projections.webhooks.store import WebhookStore
from projections.webhooks.targets import AllowList


def open_webhooks(settings: Settings, read_side: ReadSide) -> Webhooks:
    """The webhooks of the store of ``settings`` (tables made if missing); nothing is
    delivered until ``start()``."""
    view = read_side.projection(read_side.names[0]).view
    store = WebhookStore(view)
    with migration_lock(settings.database_url):
        store.create_tables()
    allow = AllowList(settings.webhook_allowed_hosts)
    policy = Policy(
        attempts=settings.webhook_attempts,
        first_wait=settings.webhook_first_wait_seconds,
        max_wait=settings.webhook_max_wait_seconds,
        poll=settings.webhook_poll_seconds,
    )
    source = read_side.runner.source
    deliverer = Deliverer(
        store,
        source,
        Sender(allow, settings.webhook_timeout_seconds),
        _locks(settings.database_url),
        policy,
        thresholds=stock_thresholds(settings),
        event_source=settings.event_source,
        worker_id=read_side.runner.worker_id,
    )
    return Webhooks(store, source, allow, deliverer)


def stock_thresholds(settings: Settings) -> Thresholds:
    """When a SKU is low on stock: the same for webhooks as for the JetStream publisher."""
    return Thresholds(settings.stock_low_threshold, settings.stock_low_thresholds)


def _locks(store: StoreURL) -> LockKeeper:
    if store.is_postgres:
        return AdvisoryLocks(store.dsn(), {LOCK: advisory_key(store.schema, LOCK)})
    if store.is_sqlite:
        return FileLocks({LOCK: f"{store.path}.{LOCK}.lock"})
    return LockKeeper()  # in memory: this process alone
