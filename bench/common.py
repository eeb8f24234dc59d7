"""What the benchmarks share: a throw-away PostgreSQL database, a Shop and its read side
on it, read models dumped and rebuilt from scratch (to compare them), the API served by
uvicorn in a process of its own, bulk appends of domain-made events, and latency
statistics."""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
from eventsourcing.domain import Aggregate, DomainEventProtocol
from psycopg import sql

from commands.service import Shop
from eventshop import bootstrap
from eventshop.settings import Settings
from eventstore.url import StoreURL
from projections import ReadSide
from projections.engine.base import ReadModel

ADMIN_URL = os.environ.get(
    "EVENTSHOP_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
# Stored events per insert_events() call: one transaction, one round trip.
CHUNK = 5_000
ROOT = Path(__file__).resolve().parent.parent
# The JWT key of every shop a benchmark serves (tokens minted with api.auth.mint).
SECRET = "bench-secret-of-at-least-32-bytes-long"
# One master key for personal data in every process of a run, as a deployment must give
# its processes: the shops a benchmark serves inherit this environment, and a shop it
# opens itself reads their sealed fields with it.
os.environ.setdefault(
    "EVENTSHOP_PERSONAL_DATA_MASTER_KEY", base64.b64encode(os.urandom(32)).decode()
)


@contextlib.contextmanager
def database(label: str) -> Iterator[str]:
    """The URL of a PostgreSQL database made for this run (no schema), dropped at the end."""
    name = f"eventshop_{label}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = StoreURL.parse(ADMIN_URL).dsn()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            conn.execute(drop.format(sql.Identifier(name)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server(target: list[str], env: dict[str, str]) -> Iterator[str]:
    """``python -m uvicorn *target`` in a process of its own; its base URL while it runs."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        *target,
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env})
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            if process.poll() is not None:
                raise RuntimeError(f"{target} exited ({process.returncode})")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/docs", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"{target} did not start")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


def settings_for(url: str) -> Settings:
    """The shop's settings for a benchmark's store (no .env file read)."""
    return Settings(_env_file=None, database_url=url)  # type: ignore[call-arg]


def open_shop(url: str, **env: str) -> Shop:
    """A Shop on ``url`` opened by the composition root, as the API opens it."""
    return bootstrap.open_shop(settings_for(url), **env)


@contextlib.contextmanager
def opened(url: str, **options: Any) -> Iterator[tuple[Shop, ReadSide]]:
    """A shop and its read side (not started) on ``url``, both closed afterwards."""
    StoreURL.parse(url).prepare()
    shop = open_shop(url, POSTGRES_POOL_SIZE="2")
    read_side = bootstrap.open_read_side(settings_for(url), shop, **options)
    try:
        yield shop, read_side
    finally:
        read_side.close()
        shop.close()


def dumps(read_side: ReadSide) -> dict[str, Any]:
    """Every row of every read model."""
    return {name: read_side.projection(name).dump() for name in read_side.names}


def rebuilt(
    shop: Shop,
    url: str,
    prefix: str = "rb_",
    batch_size: int = 7,
    models: Sequence[type[ReadModel]] = bootstrap.READ_MODELS,
) -> dict[str, Any]:
    """The read models built from scratch from the whole log, in tables of their own next
    to the live ones (``prefix``: a prefix used before continues where it stopped)."""
    read_side = bootstrap.open_read_side(
        settings_for(url), shop, prefix=prefix, batch_size=batch_size, models=models
    )
    try:
        read_side.start()
        if not read_side.wait_for(None, shop.head(), timeout=60):
            raise AssertionError(f"the rebuild {prefix!r} did not reach the head in 60 s")
        return dumps(read_side)
    finally:
        read_side.close()


def bulk_append(shop: Shop, events: Iterable[DomainEventProtocol[Any]], chunk: int = CHUNK) -> int:
    """Store domain events as the shop would (its mapper), ``chunk`` per transaction.

    Much faster than saving them one command at a time; the rows are the same.
    Returns how many were stored.
    """
    batch: list[Any] = []
    count = 0
    for domain_event in events:
        batch.append(shop.mapper.to_stored_event(domain_event))
        if len(batch) >= chunk:
            shop.recorder.insert_events(batch)
            count += len(batch)
            batch = []
    if batch:
        shop.recorder.insert_events(batch)
        count += len(batch)
    return count


def pending(aggregates: Iterable[Aggregate]) -> Iterator[DomainEventProtocol[Any]]:
    """The pending events of each aggregate, in turn."""
    for aggregate in aggregates:
        yield from aggregate.collect_events()


@dataclass(frozen=True)
class Latency:
    """Latencies of repeated calls, in milliseconds."""

    n: int
    p50: float
    p99: float
    mean: float

    @classmethod
    def of(cls, samples_ms: Sequence[float]) -> Latency:
        ordered = sorted(samples_ms)
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        return cls(len(ordered), statistics.median(ordered), p99, statistics.fmean(ordered))

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def timed(call: Callable[[], Any], times: int) -> Latency:
    """Call ``call`` ``times`` times in a row and summarise how long each took."""
    samples: list[float] = []
    for _ in range(times):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return Latency.of(samples)


def ratio(a: float, b: float) -> float:
    """``a / b``, or infinity when ``b`` is zero."""
    return a / b if b else float("inf")
