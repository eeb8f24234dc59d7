"""The composition root: the one place where settings become a running shop.

The HTTP app, every CLI command, the projection worker, the tests and the benchmarks
open the write side, the read side and the auditor here, from one :class:`Settings`,
so that each is wired the same way wherever it runs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from commands.service import Shop
from eventshop.processes import PROCESSES, open_processes
from eventshop.settings import Settings
from eventshop.webhooks import open_webhooks, stock_thresholds
from eventstore import personal
from eventstore.database import migration_lock
from eventstore.keys import KeyTable
from eventstore.personal import KeyRing
from eventstore.url import POSTGRES_OPTIONS, StoreURL
from projections import MODELS, ReadSide, build_read_side
from projections.audit import receipts
from projections.audit.auditor import BATCH, CHECKPOINT_EVERY, Auditor
from projections.audit.links import LinkReport
from projections.deliveries import Deliveries
from projections.engine.base import ReadModel
from projections.integration.jetstream import Publisher, PublisherState, Target
from projections.webhooks import Webhooks

READ_MODELS: tuple[type[ReadModel], ...] = (*MODELS, *PROCESSES)
"""The shop's read models and its process managers' timers, all fed from the log."""
log = logging.getLogger("eventshop.audit")


def open_shop(settings: Settings, **library_env: str) -> Shop:
    """The write side on the store ``settings.database_url`` names (tables made if absent);
    the events of a log written before hash links get their links, once (:func:`link_log`).

    ``library_env`` adds eventsourcing settings, e.g. an aggregate cache for a bulk
    writer, or a smaller connection pool.
    """
    return _open_shop(settings, True, library_env)


def open_unlinked_shop(settings: Settings) -> Shop:
    """:func:`open_shop` for a reader that must write nothing (``audit verify``): a log
    written before hash links is left without them (verify then says so)."""
    return _open_shop(settings, False, {})


def _open_shop(settings: Settings, link: bool, library_env: dict[str, str]) -> Shop:
    store = store_of(settings)
    # Many processes may start at once (serve --workers N): one creates the tables.
    with migration_lock(store):
        store.prepare()
        keys = open_keys(settings, store, locked=True)
        try:
            shop = Shop(
                {**pool_env(settings), **library_env},
                store=store,
                keys=keys,
                encrypt=settings.personal_data_encryption,
                currency=settings.currency,
                idempotency_ttl=timedelta(seconds=settings.idempotency_ttl_seconds),
                command_wait=settings.command_wait_seconds,
            )
        except BaseException:
            keys.close()
            raise
        try:
            if link and (report := _link(shop)) is not None:
                log.warning("audit links: %s", report.detail)
        except BaseException:
            shop.close()
            raise
        shop.payment_window = timedelta(seconds=settings.payment_window_seconds)
        return shop


def link_log(settings: Settings) -> LinkReport | None:
    """Give the events of a log written before hash links their links (once: None when
    every event has one), from the chain heads recorded at checkpoints."""
    shop = open_unlinked_shop(settings)
    try:
        with migration_lock(shop.store):
            return _link(shop)
    finally:
        shop.close()


def _link(shop: Shop) -> LinkReport | None:
    # Before this process writes: writers chain on from the last link.
    auditor = Auditor(shop.recorder, shop.mapper)
    last = auditor.links.last()
    if (last[0] if last else 0) >= auditor.head():
        return None
    auditor.create_tables()
    return auditor.link_existing()


def signing_key(settings: Settings, *, create: bool = True) -> Ed25519PrivateKey | None:
    """The key receipts are signed with: the configured one, else one generated once and
    kept under var/ (None if there is none and ``create`` is off)."""
    if settings.audit_signing_key is not None:
        return receipts.private_key(settings.audit_signing_key.get_secret_value())
    path = settings.var_dir / "audit-signing-key.pem"
    if not path.exists():
        if not create:
            return None
        personal.write_once(path, lambda: receipts.private_pem(Ed25519PrivateKey.generate()))
    return receipts.private_key(str(path))


def master_key(settings: Settings) -> bytes:
    """The key wrapping the customers' data keys: the configured one, else one generated
    once and kept under var/ (like the signing key; production: keep it elsewhere)."""
    configured = settings.personal_data_master_key
    return personal.master_key_at(
        configured.get_secret_value() if configured is not None else None, settings.var_dir
    )


def open_keys(
    settings: Settings, store: StoreURL | None = None, *, locked: bool = False
) -> KeyRing:
    """The customers' data keys on the store of ``settings`` (their table made if absent;
    ``locked``: the caller holds the migration lock already)."""
    store = store or store_of(settings)
    keys = KeyRing(
        KeyTable.for_store(store, wait=settings.database_wait_seconds),
        master_key(settings),
        ttl=settings.personal_key_cache_seconds,
        size=settings.personal_key_cache_size,
    )
    try:
        if locked:
            keys.create_table()
        else:
            with migration_lock(store):
                store.prepare()
                keys.create_table()
        # Readers that need no personal data (verify, proofs) still work: warn, and let
        # each read of a sealed field fail (MasterKeyMismatch).
        if (wrong := keys.foreign_master_keys()) is not None:
            logging.getLogger("eventshop.personal").error("personal data: %s", wrong)
    except BaseException:
        keys.close()
        raise
    return keys


def trusted_keys(settings: Settings, *given: str) -> dict[str, Ed25519PublicKey]:
    """The public keys whose receipts verify trusts: ``given`` if any, else this
    deployment's signing key's and EVENTSHOP_AUDIT_TRUSTED_KEYS."""
    if given:
        return receipts.trusted(receipts.public_key(value) for value in given)
    listed = [receipts.public_key(v) for v in settings.audit_trusted_keys.split(",") if v.strip()]
    own = signing_key(settings, create=False)
    return receipts.trusted([*listed, *([own.public_key()] if own else [])])


def store_of(settings: Settings) -> StoreURL:
    """The store ``settings`` name, with the waits of the settings as its options, for
    every process and connection pool opened on it (options written in the URL win):
    how long to wait to connect, for a pooled connection and for a lock, and how long
    a statement may run (eventstore/postgres.py)."""
    store = settings.database_url
    if not store.is_postgres:
        return store
    wait = str(settings.database_wait_seconds)
    waits = {
        "connect_timeout": wait,
        "lock_timeout": wait,
        "statement_timeout": str(settings.database_statement_seconds),
    }
    return store.with_options(**{k: v for k, v in waits.items() if store.option(k) is None})


def pool_env(settings: Settings) -> dict[str, str]:
    """The write side's pool size from ours; options written in the URL win."""
    store = settings.database_url
    if not store.is_postgres:
        return {}
    env = {
        "POSTGRES_POOL_SIZE": str(settings.database_pool_size),
        "POSTGRES_MAX_OVERFLOW": str(settings.database_max_overflow),
    }
    for option, name in POSTGRES_OPTIONS.items():
        if store.option(option) is not None:
            env.pop(name, None)
    return env


def open_read_side(
    settings: Settings,
    shop: Shop | None = None,
    *,
    prefix: str = "",
    batch_size: int = 500,
    worker_id: str | None = None,
    models: Sequence[type[ReadModel]] = READ_MODELS,
) -> ReadSide:
    """Every read model (and process manager's timers) on the store of ``settings``;
    nothing runs until ``start()``.

    ``shop`` is needed only on ``memory://``, whose log lives in that object alone.
    """
    own_keys = open_keys(settings) if shop is None else None
    try:
        read_side = build_read_side(
            store_of(settings),
            log=shop.recorder if shop is not None else None,
            prefix=prefix,
            batch_size=batch_size,
            worker_id=worker_id,
            models=models,
            keys=shop.data_keys if shop is not None else own_keys,
        )
    except BaseException:
        if own_keys is not None:
            own_keys.close()
        raise
    if own_keys is not None:
        read_side.closing(own_keys)
    return read_side


def open_auditor(
    shop: Shop, *, checkpoint_every: int = CHECKPOINT_EVERY, batch: int = BATCH
) -> Auditor:
    """The auditor of ``shop``'s log, from its recorder and mapper; its checkpoints table
    is made here if missing, under the migration lock, so that its queries never run DDL."""
    auditor = Auditor(shop.recorder, shop.mapper, checkpoint_every=checkpoint_every, batch=batch)
    with migration_lock(shop.store):
        auditor.create_tables()
    return auditor


def migrate(settings: Settings) -> LinkReport | None:
    """Create every table: the event store's, the read models', the JetStream
    publisher's and the audit log's; link the events of a log written before hash
    links (what was linked, if anything)."""
    # Each step takes the migration lock itself; holding it here as well would wait
    # forever on PostgreSQL (a session advisory lock, asked for on a second connection).
    shop = open_unlinked_shop(settings)
    try:
        open_read_side(settings, shop, models=(PublisherState,)).close()
        read_side = open_read_side(settings, shop)
        open_webhooks(settings, read_side).close()
        read_side.close()
        open_auditor(shop)
    finally:
        shop.close()
    return link_log(settings)


def open_publisher(
    settings: Settings, *, target: Target | None = None, **options: Any
) -> Publisher:
    """The JetStream publisher of the integration events (``settings.nats_url``, or
    ``target``) on the store of ``settings``; nothing runs until ``start()``."""
    if target is None:
        if not settings.nats_url:
            raise ValueError("no NATS server to publish to: set EVENTSHOP_NATS_URL")
        target = Target(
            settings.nats_url,
            stream=settings.nats_stream,
            prefix=settings.nats_subject_prefix,
            source=settings.event_source,
        )
    state = open_read_side(settings, models=(PublisherState,))
    publisher = Publisher(state, target, stock_thresholds(settings), **options)
    with migration_lock(settings.database_url):
        publisher.health.create_tables()
    return publisher


def open_deliveries(settings: Settings, read_side: ReadSide, webhooks: Webhooks) -> Deliveries:
    """The status of the outbound channels (JetStream, webhooks) in the database of
    ``read_side``; the JetStream publisher is listed even before one ran if
    ``settings`` name a NATS server."""
    return Deliveries(
        read_side.runner.source, webhooks.store, publishing=settings.nats_url is not None
    )


def run_worker(settings: Settings, shop: Shop, stop_event: threading.Event) -> None:
    """The body of ``eventshop worker`` until ``stop_event`` is set: feed every read
    model and the process managers' timers (each where this process gets its lock),
    fire the due timers through ``shop``, deliver webhooks, and publish the integration
    events to NATS JetStream when ``settings.nats_url`` is set (one publisher at a time)."""
    if settings.database_url.is_memory:
        raise ValueError("a worker needs a shared store: sqlite:// or postgresql://, not memory://")
    read_side = open_read_side(settings, shop)
    processes = open_processes(settings.database_url, shop, read_side)
    publisher = open_publisher(settings) if settings.nats_url else None
    webhooks = open_webhooks(settings, read_side)
    try:
        read_side.start()
        processes.start()
        webhooks.start()
        if publisher is not None:
            publisher.start()
        logging.getLogger("eventshop.projections").info(
            "projection worker %s running", read_side.runner.worker_id
        )
        stop_event.wait()
    finally:
        if publisher is not None:
            publisher.close()
        webhooks.close()
        processes.stop()
        read_side.close()
