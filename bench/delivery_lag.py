"""Delivery lag: from an event's commit to JetStream, while the write path's load runs.

The shop is deployed as a user deploys it (bench/deploy.py): ``eventshop serve`` with
``EVENTSHOP_NATS_URL`` set (the worker process it starts feeds the read models and
publishes), or with ``--worker`` ``EVENTSHOP_RUN_PROJECTIONS=false`` and an ``eventshop
worker`` started apart that does, on a PostgreSQL database made for the run, publishing
to a stream and subjects of the run's own on the NATS server (``EVENTSHOP_BENCH_NATS``,
default ``nats://127.0.0.1:4222``; the stream is deleted at the end). The load is the
write-path benchmark's flash sale (bench/load.py, one process: customers looping open a
cart, add one unit, check out), so that every checkout makes an ``order.placed``
integration event.

A JetStream consumer in this process (an ordered push consumer of the run's subjects)
takes, for every event of the stream:

- **recorded**: the CloudEvent's ``time``, the time the shop recorded the source event
  (stamped when the command decided it, just before its transaction commits: the commit
  time, within the group commit's wait);
- **stored**: JetStream's own timestamp of the message, when the server stored it (what
  the publisher's acknowledgement confirms);
- **received**: when the consumer got it.

It prints, per round, p50/p99/max of stored - recorded ("to the ack") and received -
recorded ("to a consumer"), the events counted, and checks that the stream held each
once in log order (duplicates and gaps counted, not assumed). Beside it, the publisher's
lag as ``GET /api/deliveries`` says it, polled every second during the round, and how
long the publisher took to catch up after it. All on one machine: one clock.

    python -m bench.delivery_lag [--quick] [--rounds 3] [--seconds 5] [--connections 32] [--worker]

Saves every figure in bench/results/delivery_lag.json. Do not run it beside other work:
its figures are the machine's as much as the shop's. ``--quick`` runs tiny sizes in
seconds (the smoke test: its figures mean nothing).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import nats

from bench.common import database, open_shop
from bench.deploy import RESULTS, Deployment, Side, load_round, start_shop
from bench.load import percentiles
from bench.write_path import flash_specs, make_products, probe_purchase
from projections.integration.events import TOPICS, Translator

NATS_URL = os.environ.get("EVENTSHOP_BENCH_NATS", "nats://127.0.0.1:4222")
CATCH_UP_TIMEOUT = 120.0
LAG_POLL_SECONDS = 1.0
FLASH_SKU = "FLASH-1"

DEFAULTS: dict[str, Any] = {
    "rounds": 3,
    "seconds": 5.0,
    "warmup": 1.0,
    "connections": 32,
    "flash_stock": 20_000,
    "worker": False,
}
QUICK: dict[str, Any] = {
    "rounds": 1,
    "seconds": 0.5,
    "warmup": 0.2,
    "connections": 4,
    "flash_stock": 2_000,
    "worker": False,
}


@dataclass
class Received:
    sequence: int
    id: str
    recorded: float
    stored: float
    received: float


@dataclass
class Consumer:
    """Reads the run's subjects from the stream's start, in a thread with its own loop."""

    stream: str
    prefix: str
    events: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    ready: threading.Event = field(default_factory=threading.Event)
    stopping: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def start(self) -> None:
        threading.Thread(target=self._run, name="jetstream-consumer", daemon=True).start()
        if not self.ready.wait(30):
            raise RuntimeError(f"the JetStream consumer did not start: {self.error}")

    def stop(self) -> None:
        self.stopping.set()

    def count(self) -> int:
        with self.lock:
            return len(self.events)

    def since(self, start: int) -> list[Received]:
        with self.lock:
            return self.events[start:]

    def _run(self) -> None:
        try:
            asyncio.run(self._consume())
        except BaseException as error:  # said by whoever waits on it
            self.error = error
            self.ready.set()

    async def _consume(self) -> None:
        client = await nats.connect(NATS_URL, connect_timeout=5)
        try:
            js = client.jetstream()
            while True:  # the publisher makes the stream: wait for it
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    await js.stream_info(self.stream)
                    break
                await asyncio.sleep(0.1)
            sub = await js.subscribe(f"{self.prefix}.>", stream=self.stream, ordered_consumer=True)
            self.ready.set()
            while not self.stopping.is_set():
                try:
                    msg = await sub.next_msg(timeout=0.2)
                except nats.errors.TimeoutError:
                    continue
                now = time.time()
                event = json.loads(msg.data)
                stored = msg.metadata.timestamp
                with self.lock:
                    self.events.append(
                        Received(
                            int(event["sequence"]),
                            event["id"],
                            datetime.fromisoformat(event["time"]).timestamp(),
                            stored.timestamp() if stored is not None else now,
                            now,
                        )
                    )
            await sub.unsubscribe()
        finally:
            await client.close()


async def _delete_stream(stream: str) -> None:
    client = await nats.connect(NATS_URL, connect_timeout=5)
    try:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await client.jetstream().delete_stream(stream)
    finally:
        await client.close()


def publisher_status(side: Side) -> dict[str, Any]:
    answer = httpx.get(f"{side.base}/api/deliveries", headers=side.admin_headers, timeout=10)
    answer.raise_for_status()
    return next(c for c in answer.json()["items"] if c["channel"] == "jetstream")


class LagPoll:
    """The publisher's lag from GET /api/deliveries, every second while a round runs."""

    def __init__(self, side: Side) -> None:
        self.side = side
        self.events = 0
        self.seconds = 0.0
        self.polls = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(httpx.HTTPError, StopIteration, KeyError):
                status = publisher_status(self.side)
                self.polls += 1
                self.events = max(self.events, int(status["lag_events"]))
                self.seconds = max(self.seconds, float(status["lag_seconds"]))
            self.stop.wait(LAG_POLL_SECONDS)

    def __enter__(self) -> LagPoll:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(15)


def caught_up(side: Side, consumer: Consumer) -> float:
    """Seconds until the publisher has passed the log's head and the consumer holds
    every event it stored."""
    began = time.perf_counter()
    while time.perf_counter() - began < CATCH_UP_TIMEOUT:
        with contextlib.suppress(httpx.HTTPError, StopIteration):
            status = publisher_status(side)
            if status["lag_events"] == 0 and status["state"] == "live":
                stored = _stream_messages(consumer.stream)
                if consumer.count() >= stored:
                    return time.perf_counter() - began
        time.sleep(0.1)
    raise RuntimeError(f"the publisher did not catch up in {CATCH_UP_TIMEOUT:.0f} s")


def _stream_messages(stream: str) -> int:
    async def count() -> int:
        client = await nats.connect(NATS_URL, connect_timeout=5)
        try:
            info = await client.jetstream().stream_info(stream)
            return int(info.state.messages)
        finally:
            await client.close()

    return asyncio.run(count())


def figures(events: list[Received]) -> dict[str, Any]:
    """Lag percentiles (ms) of a round's events, and what the stream got wrong."""
    sequences = [e.sequence for e in events]
    return {
        "events": len(events),
        "to_ack_ms": percentiles([(e.stored - e.recorded) * 1000 for e in events]),
        "to_consumer_ms": percentiles([(e.received - e.recorded) * 1000 for e in events]),
        "max_to_ack_ms": max(((e.stored - e.recorded) * 1000 for e in events), default=0.0),
        "max_to_consumer_ms": max(((e.received - e.recorded) * 1000 for e in events), default=0.0),
        "duplicates": len(events) - len({e.id for e in events}),
        "out_of_order": sum(1 for a, b in itertools.pairwise(sequences) if b <= a),
    }


@contextlib.contextmanager
def deployed(cfg: dict[str, Any], stream: str, prefix: str) -> Iterator[tuple[Side, str]]:
    """The shop on a fresh database, publishing to ``stream``."""
    nats_env = {
        "EVENTSHOP_NATS_URL": NATS_URL,
        "EVENTSHOP_NATS_STREAM": stream,
        "EVENTSHOP_NATS_SUBJECT_PREFIX": prefix,
    }
    with database("delivery_lag") as url, tempfile.TemporaryDirectory(prefix="bench-lag-") as tmp:
        deployment = Deployment(Path(tmp))
        try:
            side = start_shop(
                deployment,
                url,
                url.rsplit("/", 1)[1],
                separate_worker=cfg["worker"],
                env=nats_env,
            )
            yield side, url
        finally:
            deployment.stop()


def run(
    rounds: int = DEFAULTS["rounds"],
    seconds: float = DEFAULTS["seconds"],
    warmup: float = DEFAULTS["warmup"],
    connections: int = DEFAULTS["connections"],
    flash_stock: int = DEFAULTS["flash_stock"],
    worker: bool = DEFAULTS["worker"],
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every round's figures, and all rounds' together."""
    cfg = {
        "rounds": rounds,
        "seconds": seconds,
        "warmup": warmup,
        "connections": connections,
        "flash_seconds": seconds,
        "flash_stock": flash_stock,
        "worker": worker,
    }
    tag = uuid.uuid4().hex[:10]
    stream, prefix = f"BENCH_{tag}", f"bench{tag}"
    result: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": cfg,
        "deployment": "serve + worker (publishes)" if worker else "serve + publisher",
        "cores": os.cpu_count(),
        "load_average_before": os.getloadavg(),
        "rounds": [],
    }
    consumer = Consumer(stream, prefix)
    every: list[Received] = []
    try:
        with deployed(cfg, stream, prefix) as (side, url):
            make_products(side, [FLASH_SKU], {FLASH_SKU: flash_stock})
            specs = flash_specs(cfg, FLASH_SKU, probe_purchase(side, FLASH_SKU))["shop"]
            consumer.start()
            caught_up(side, consumer)  # the set-up's events, not measured
            for round_no in range(1, rounds + 1):
                start = consumer.count()
                with LagPoll(side) as poll:
                    load = load_round(side, specs)
                catch_up = caught_up(side, consumer)
                events = consumer.since(start)
                every += events
                found = {
                    "round": round_no,
                    "checkouts_per_second": load["cycles_per_second"],
                    "checkouts": load["cycles"],
                    "non_2xx": load["non_2xx"],
                    "publisher_lag_events_max": poll.events,
                    "publisher_lag_seconds_max": poll.seconds,
                    "lag_polls": poll.polls,
                    "catch_up_seconds": catch_up,
                    **figures(events),
                }
                result["rounds"].append(found)
                echo(line(f"round {round_no}", found))
            result["stream_messages"] = _stream_messages(stream)
            # Every event the log gives, each once, in its order: no gap, no duplicate.
            seen = [e.id for e in consumer.since(0)]
            wanted = contract_ids(url)
            result["missing"] = len(set(wanted) - set(seen))
            result["unexpected"] = len(set(seen) - set(wanted))
            result["in_log_order"] = seen == wanted
    finally:
        consumer.stop()
        with contextlib.suppress(Exception):
            asyncio.run(_delete_stream(stream))
    result["all"] = figures(every)
    result["load_average_after"] = os.getloadavg()
    echo(line("all rounds", result["all"]))
    echo(
        f"stream: {result['stream_messages']} events; of the log's, {result['missing']}"
        f" missing, {result['unexpected']} not the log's; in log order:"
        f" {result['in_log_order']}"
    )
    return result


def contract_ids(url: str) -> list[str]:
    """The ids of the integration events the whole log gives, in log order (the
    deployment's thresholds are the defaults)."""
    shop = open_shop(url)
    try:
        translator = Translator()
        ids, after = [], 0
        while batch := shop.recorder.select_notifications(
            after, 5000, topics=list(TOPICS), inclusive_of_start=False
        ):
            for notification in batch:
                event = translator.translate(
                    notification.id, shop.mapper.to_domain_event(notification)
                )
                if event is not None:
                    ids.append(event.id)
            after = batch[-1].id
        return ids
    finally:
        shop.close()


def line(label: str, f: dict[str, Any]) -> str:
    ack, consumer = f["to_ack_ms"], f["to_consumer_ms"]
    text = (
        f"{label}: {f['events']} events; commit -> JetStream ack p50 {ack['p50']:.1f} ms,"
        f" p99 {ack['p99']:.1f} ms, max {f['max_to_ack_ms']:.1f} ms; -> consumer p50"
        f" {consumer['p50']:.1f} ms, p99 {consumer['p99']:.1f} ms;"
        f" duplicates {f['duplicates']}, out of order {f['out_of_order']}"
    )
    if "checkouts_per_second" in f:
        text += (
            f"; {f['checkouts_per_second']:.0f} checkouts/s; publisher lag at most"
            f" {f['publisher_lag_events_max']} events / {f['publisher_lag_seconds_max']:.2f} s,"
            f" caught up {f['catch_up_seconds']:.2f} s after the round"
        )
    return text


def save(result: dict[str, Any], out: Path = RESULTS) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "delivery_lag.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    parser.add_argument("--rounds", type=int, default=DEFAULTS["rounds"])
    parser.add_argument("--seconds", type=float, default=DEFAULTS["seconds"])
    parser.add_argument("--connections", type=int, default=DEFAULTS["connections"])
    parser.add_argument(
        "--worker", action="store_true", help="read models and publisher in eventshop worker"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        result = run(**{**QUICK, "worker": args.worker})
    else:
        result = run(
            rounds=args.rounds,
            seconds=args.seconds,
            connections=args.connections,
            worker=args.worker,
        )
    print(f"saved {save(result, args.out)}")


if __name__ == "__main__":
    main()
