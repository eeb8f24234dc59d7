"""The ``eventshop`` command: serve the API, mint tokens.

Other commands (the projection worker, migrations) join as functions on ``app`` or as
sub-apps with ``app.add_typer(other, name=...)``.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from api.auth import ROLES, mint
from api.observability import configure_logging
from cli.admin import admin_password_hash
from cli.audit import audit
from cli.feeding import FeedingWorker
from cli.output import group
from cli.projections import projections
from cli.seed import seed
from cli.text import single_line
from commands.service import Shop
from eventshop import bootstrap, collector
from eventshop.bootstrap import open_auditor, open_shop
from eventshop.settings import Settings

# `eventshop worker` touches this file under EVENTSHOP_VAR_DIR every WORKER_BEAT_SECONDS
# while its feeder runs and the event store answers; a container healthcheck reads its age.
WORKER_ALIVE_FILE = "worker.alive"
WORKER_BEAT_SECONDS = 5.0
# How long `serve --workers N` gives each API process to come up before replacing it.
WORKER_START_SECONDS = 60

log = logging.getLogger("eventshop.worker")

app = group("eventshop: an event-sourced shop back end.")
app.add_typer(audit, name="audit")
app.add_typer(projections, name="projections")
app.command()(seed)
app.command(name="admin-password-hash")(admin_password_hash)


@app.command()
def serve(
    host: Annotated[
        str, typer.Option(metavar="ADDRESS", help="interface to listen on", callback=single_line)
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="PORT", help="TCP port")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, max=64, metavar="N", help="API processes sharing the port")
    ] = 1,
) -> None:
    """Serve the HTTP API on the store EVENTSHOP_DATABASE_URL names (SQLite under ./var/).

    The read models are fed unless EVENTSHOP_RUN_PROJECTIONS=false: on PostgreSQL by an
    `eventshop worker` process this command starts and restarts beside the API (threads
    of the API process instead with EVENTSHOP_PROJECTIONS_PROCESS=false), on SQLite by
    threads of the API process.

    Logs are JSON lines on stderr (level: EVENTSHOP_LOG_LEVEL); the app writes its own
    access log, with each request's id, in place of uvicorn's.
    """
    settings = Settings()
    level = settings.log_level
    configure_logging(level)
    feeding = None
    if (
        settings.run_projections
        and settings.projections_process
        and settings.database_url.is_postgres
    ):
        bootstrap.migrate(settings)  # the tables first: two processes start on the store
        feeding = FeedingWorker()
        feeding.start()
        # uvicorn ends by raising the signal it stopped for again, under the handler
        # found before it ran: this one, so that the worker is stopped with the API.
        signal.signal(signal.SIGTERM, _stop_serving)
        # For the API process(es) uvicorn starts: the worker feeds the read models.
        os.environ["EVENTSHOP_RUN_PROJECTIONS"] = "false"
    try:
        _serve(host, port, workers, level)
    finally:
        if feeding is not None:
            feeding.stop()


def _stop_serving(signum: int, _: object) -> None:
    raise SystemExit(0)


def _serve(host: str, port: int, workers: int, level: str) -> None:
    uvicorn.run(
        "api.app:create_server_app",
        factory=True,
        host=host,
        port=port,
        log_config=None,
        log_level=level.lower(),
        access_log=False,
        workers=workers,
        # A worker process imports the whole app before it answers its supervisor's
        # health check: on a busy 2-core host that took ~6 s, past uvicorn's default 5 s,
        # and the supervisor then replaced every worker forever.
        timeout_worker_healthcheck=WORKER_START_SECONDS,
    )


@app.command()
def migrate() -> None:
    """Create the event store's and the read models' tables, then exit.

    Run it once before starting many API processes and workers together, so that they
    do not race to create the same tables.
    """
    settings = Settings()
    linked = bootstrap.migrate(settings)
    typer.echo(f"tables ready in {settings.database_url}")
    if linked is not None:
        typer.echo(f"audit links: {linked.detail}")


@app.command()
def worker(
    checkpoint_seconds: Annotated[
        float,
        typer.Option(
            min=1, metavar="SECONDS", help="how often to extend the audit hash-chain checkpoints"
        ),
    ] = 60.0,
    exit_with: Annotated[
        int | None,
        typer.Option(
            metavar="PID", hidden=True, help="end when the process PID (the parent) has ended"
        ),
    ] = None,
) -> None:
    """Feed the read models from the log until stopped (SIGTERM or Ctrl-C).

    Run as many as you like against one PostgreSQL database: each read model is fed by
    one worker at a time, and another takes over within seconds when that one dies.
    Every worker fires the process managers' due timers (reservation expiry), each once.
    The worker also keeps the audit log's hash-chain checkpoints up to date, and touches
    EVENTSHOP_VAR_DIR/worker.alive every few seconds while the event store answers (the
    container healthcheck reads its age).
    """
    settings = Settings()
    configure_logging(settings.log_level)
    collector.tune()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    failed = threading.Event()

    def feed() -> None:
        try:
            bootstrap.run_worker(settings, shop, stop)
        except BaseException:
            # An error the feeder could not retry (its thread logs it): end the process
            # with a failure, so that a supervisor sees it and restarts the worker.
            failed.set()
            stop.set()
            raise

    # The write side first: it creates the log's tables if this is a fresh database.
    shop = open_shop(settings)
    feeder = threading.Thread(target=feed, name="projections")
    feeder.start()
    alive = settings.var_dir / WORKER_ALIVE_FILE
    try:
        auditor = open_auditor(shop)
        collector.settle()
        next_checkpoint = time.monotonic() + checkpoint_seconds
        while not stop.is_set():
            if exit_with is not None and os.getppid() != exit_with:
                log.warning("the process that started this worker (pid %s) ended", exit_with)
                break
            _beat(shop, alive)
            if time.monotonic() >= next_checkpoint:
                auditor.checkpoint()
                next_checkpoint = time.monotonic() + checkpoint_seconds
            stop.wait(WORKER_BEAT_SECONDS)
    finally:
        stop.set()
        feeder.join()
        shop.close()
    if failed.is_set():
        raise typer.Exit(1)


@app.command()
def publisher() -> None:
    """Publish the integration events to NATS JetStream (EVENTSHOP_NATS_URL) until
    stopped (SIGTERM or Ctrl-C): stream EVENTSHOP, subjects eventshop.<type>.

    Run several for failover: one publishes at a time, another takes over when it dies.
    `eventshop worker` does the same when EVENTSHOP_NATS_URL is set.
    """
    settings = Settings()
    configure_logging(settings.log_level)
    if not settings.nats_url:
        raise typer.BadParameter("set EVENTSHOP_NATS_URL (e.g. nats://127.0.0.1:4222)")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    # The write side first: it creates the log's tables if this is a fresh database.
    open_shop(settings).close()
    collector.tune()
    the_publisher = bootstrap.open_publisher(settings)
    try:
        the_publisher.start()
        collector.settle()
        stop.wait()
    finally:
        the_publisher.close()


def _beat(shop: Shop, alive: Path) -> None:
    """Touch ``alive`` if the event store answers: what the worker's healthcheck reads."""
    try:
        shop.head()
    except Exception as error:  # an outage: the healthcheck goes stale, the worker goes on
        log.warning("worker heartbeat: the event store does not answer: %s", error)
        return
    alive.parent.mkdir(parents=True, exist_ok=True)
    alive.touch()


@app.command()
def token(
    role: Annotated[
        list[str],
        typer.Option("--role", "-r", metavar="ROLE", help=f"one of {', '.join(ROLES)}; repeatable"),
    ],
    sub: Annotated[
        str | None,
        typer.Option(
            metavar="ID",
            help="the subject: a customer's id (default: a new UUID)",
            callback=single_line,
        ),
    ] = None,
    ttl: Annotated[
        int, typer.Option(min=1, metavar="SECONDS", help="seconds until the token expires")
    ] = 3600,
) -> None:
    """Print a bearer token signed with the shop's secret (EVENTSHOP_JWT_SECRET)."""
    unknown = sorted(set(role) - set(ROLES))
    if unknown:
        raise typer.BadParameter(
            f"unknown role(s) {unknown}; choose from {ROLES}", param_hint="--role"
        )
    settings = Settings()
    kept = settings.var_dir / "jwt-secret"
    if not settings.jwt_secret and not kept.exists():
        # Making a key here would sign a token that the server, which has its own, refuses.
        typer.echo(
            f"no key to sign with: EVENTSHOP_JWT_SECRET is not set and {kept} does not exist;"
            " run this where the server runs (its key is var/jwt-secret there), or set"
            " EVENTSHOP_VAR_DIR or EVENTSHOP_JWT_SECRET to the server's",
            err=True,
        )
        raise typer.Exit(1)
    typer.echo(mint(settings.secret(), sub or str(uuid.uuid4()), role, ttl))


def main() -> None:
    """The console script's entry point."""
    app()
