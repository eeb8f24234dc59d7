"""P1 and the write path: eventshop against its floor, each deployed as a user deploys it.

Every comparison is a ratio measured in one run, the two sides alternating round by
round (shop, floor, shop, floor, ...) so that the drift of this shared machine hits both
alike; each side runs in its own processes, and one load client (bench/load.py, a
process of its own, started afresh for every round) drives both:

- the shop: ``eventshop serve --port P`` (the console script), on a throw-away
  PostgreSQL database made for the run and dropped at the end, with
  EVENTSHOP_JWT_SECRET set and a staff token minted with ``api.auth.mint``;
- the floor: bench/floor_app.py in its own uvicorn process: FastAPI and one raw psycopg
  insert per request under the same ``LOCK TABLE ... IN EXCLUSIVE MODE`` the event store
  takes, in the same database.

Scenarios:

- **P1 spread**: ``POST /api/stock/{sku}/receipts`` over 256 SKUs (made before timing)
  from 32 connections, on four deployments of the shop: default ``eventshop serve``
  (on PostgreSQL it feeds the read models from an ``eventshop worker`` process it starts;
  its CPU counts that child's), the same with ``EVENTSHOP_PROJECTIONS_PROCESS=false``
  (read models in threads of the API process), ``EVENTSHOP_RUN_PROJECTIONS=false`` plus
  an ``eventshop worker`` started apart, and ``serve --workers 2`` (against a floor with
  ``--workers 2``);
- **P1 hot**: every receipt on one SKU (default serve): the ratio, and the non-2xx
  answers (target 0);
- **flash sale**: 32 customers each looping open a cart, add one unit of one SKU that
  has 20,000 in stock, check out (default serve): checkouts/s, refusals (409), checkout
  p50/p99; the floor does the same three requests, each one transaction of as many rows
  as the shop's command appends events;
- **appends**: 16 threads saving new carts through ``Shop.open_cart`` (the Shop opened
  by ``eventshop.bootstrap.open_shop``) against 16 threads each inserting one row per
  transaction with raw psycopg under the same lock, each side in its own process
  (bench/appends.py).

Next to each figure: CPU per command (the server's process tree, user+sys from
/proc/PID/stat, over the measured window, divided by the requests answered in it; the
worker's apart; PostgreSQL's backends on the bench database apart; the client's own),
and for the shop the read models' lag from ``GET /api/projections``: the most seen
while the round ran, the most right after it, and how long they took to catch up
(every round starts with the read models caught up, so one round's catch-up does not
steal the next one's CPU).

    python -m bench.write_path [--quick] [--rounds 3] [--seconds 5] [--only spread,hot,...]

Prints a table, and saves every figure as JSON in bench/results/write_path.json.
About 6 minutes in full; ``--quick`` runs tiny sizes in seconds (a smoke test: its
figures mean nothing).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from api.auth import mint
from bench.common import SECRET, database, ratio
from bench.deploy import (
    DRIVER_GRACE,
    RESULTS,
    ROOT,
    Deployment,
    Process,
    Side,
    load_round,
    measure,
    start_floor,
    start_shop,
)
from bench.write_report import report, report_scenario
from eventstore.url import StoreURL

FLASH_STOCK = 20_000
RECEIPT_MAX = 1000  # the most units one receipt may bring (domain.values.MAX_QUANTITY)
ADDRESS = {
    "name": "Bench Customer",
    "line1": "1 Bench Street",
    "city": "Berlin",
    "postal_code": "10115",
    "country": "DE",
}
SCENARIOS = (
    "spread",
    "hot",
    "flash",
    "spread_threads",
    "spread_worker",
    "spread_workers2",
    "appends",
)

DEFAULTS: dict[str, Any] = {
    "rounds": 3,
    "seconds": 5.0,
    "warmup": 1.0,
    "connections": 32,
    "skus": 256,
    "flash_seconds": 5.0,  # per round: 3 rounds make the 15 s sale
    "flash_stock": FLASH_STOCK,
    "append_threads": 16,
    "append_seconds": 4.0,
    "only": SCENARIOS,
}
# Tiny sizes, for a smoke test of the code (the figures mean nothing). The deployments of
# spread_worker and spread_workers2 take most of a quick run's time in starting up, so the
# smoke test (run_all --quick) leaves them out; `write_path --quick` runs them all.
QUICK: dict[str, Any] = {
    "rounds": 1,
    "seconds": 0.5,
    "warmup": 0.2,
    "connections": 4,
    "skus": 8,
    "flash_seconds": 0.5,
    "flash_stock": 2_000,
    "append_threads": 2,
    "append_seconds": 0.3,
    "only": ("spread", "hot", "flash", "appends"),
}


def alternate(
    sides: Sequence[Side], specs: dict[str, dict[str, Any]], rounds: int
) -> list[dict[str, Any]]:
    """``rounds`` rounds of each side in turn (shop, floor, shop, floor, ...)."""
    runs = []
    for round_no in range(1, rounds + 1):
        for side in sides:
            run = load_round(side, specs[side.name])
            run["round"] = round_no
            runs.append(run)
    return runs


def med(runs: list[dict[str, Any]], side: str, key: str | Callable[[dict], float]) -> float:
    values = [
        key(r) if callable(key) else r[key]
        for r in runs
        if r["side"] == side and (callable(key) or key in r)
    ]
    return float(statistics.median(values)) if values else 0.0


def summarise(runs: list[dict[str, Any]], key: str = "requests_per_second") -> dict[str, Any]:
    """Medians per side, and the median of the per-round ratios shop / floor."""
    shops = [r for r in runs if r["side"] == "shop"]
    floors = [r for r in runs if r["side"] == "floor"]
    ratios = [ratio(s[key], f[key]) for s, f in zip(shops, floors, strict=True)]
    out: dict[str, Any] = {"ratio": statistics.median(ratios), "ratios": ratios}
    for side in ("shop", "floor"):
        step = "checkout" if runs[0]["scenario"] == "flash" else "request"
        out[side] = {
            key: med(runs, side, key),
            "p50": med(runs, side, lambda r, s=step: r["latency"].get(s, {}).get("p50", 0.0)),
            "p99": med(runs, side, lambda r, s=step: r["latency"].get(s, {}).get("p99", 0.0)),
            "non_2xx": sum(r["non_2xx"] for r in runs if r["side"] == side),
            "server_restarts": sum(r.get("server_restarts", 0) for r in runs if r["side"] == side),
            "server_ms_per_command": med(runs, side, "server_ms_per_command"),
            "postgres_ms_per_command": med(runs, side, "postgres_ms_per_command"),
            "client_ms_per_command": med(runs, side, "client_ms_per_command"),
        }
        if side == "shop":
            if any("worker_ms_per_command" in r for r in shops):
                out[side]["worker_ms_per_command"] = med(runs, side, "worker_ms_per_command")
            if any("lag_max_during" in r for r in shops):
                out[side]["lag_max_during"] = max(r["lag_max_during"] for r in shops)
                out[side]["lag_after_max"] = max(r["lag_after_max"] for r in shops)
                out[side]["catch_up_seconds_max"] = max(r["catch_up_seconds"] for r in shops)
        if runs[0]["scenario"] == "flash":
            out[side]["refused"] = sum(r["refused"] for r in runs if r["side"] == side)
            out[side]["cycles"] = sum(r["cycles"] for r in runs if r["side"] == side)
    return out


# --- scenarios -------------------------------------------------------------------------


def _post(http: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = http.post(path, json=body)
    if answer.status_code >= 300:
        raise RuntimeError(f"setup: POST {path} answered {answer.status_code}: {answer.text}")
    return dict(answer.json())


def make_products(side: Side, skus: Sequence[str], stock: dict[str, int]) -> None:
    """Add the products (and stock) the scenarios use, before any timing."""
    with httpx.Client(base_url=side.base, headers=side.admin_headers, timeout=30) as http:

        def add(sku: str) -> None:
            _post(http, "/api/products", {"sku": sku, "name": f"Bench {sku}", "price": "1.00"})

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(add, skus))
        for sku, units in stock.items():
            while units > 0:
                batch = min(units, RECEIPT_MAX)
                _post(http, f"/api/stock/{sku}/receipts", {"quantity": batch, "note": "bench"})
                units -= batch


def customer_headers(connections: int) -> list[dict[str, str]]:
    return [
        {"Authorization": f"Bearer {mint(SECRET, f'bench-customer-{i}', ['customer'], 7200)}"}
        for i in range(connections)
    ]


def probe_purchase(side: Side, sku: str) -> dict[str, int]:
    """Events each step of a purchase appends (from positions; nothing else writes then)."""
    headers = customer_headers(1)[0]
    with httpx.Client(base_url=side.base, headers=headers, timeout=30) as http:
        opened = _post(http, "/api/carts", {})
        added = _post(http, f"/api/carts/{opened['id']}/items", {"sku": sku, "quantity": 1})
        body = {"shipping_address": ADDRESS, "email": "bench@example.com"}
        placed = _post(http, f"/api/carts/{opened['id']}/checkout", body)
    return {
        "add": added["position"] - opened["position"],
        "checkout": placed["position"] - added["position"],
    }


def flash_specs(cfg: dict[str, Any], sku: str, events: dict[str, int]) -> dict[str, Any]:
    checkout = {"shipping_address": ADDRESS, "email": "bench@example.com"}
    common = {
        "scenario": "flash",
        "connections": cfg["connections"],
        "seconds": cfg["flash_seconds"],
        "warmup": cfg["warmup"],
    }
    return {
        "shop": {
            **common,
            "connection_headers": customer_headers(cfg["connections"]),
            "steps": {
                "open": {"path": "/api/carts", "body": {}},
                "add": {"path": "/api/carts/{cart}/items", "body": {"sku": sku, "quantity": 1}},
                "checkout": {"path": "/api/carts/{cart}/checkout", "body": checkout},
            },
        },
        "floor": {
            **common,
            "steps": {
                "open": {"path": "/floor/cart?events=1", "body": {}},
                "add": {
                    "path": f"/floor/cart-item?events={events['add']}",
                    "body": {"sku": sku, "quantity": 1},
                },
                "checkout": {
                    "path": f"/floor/checkout?events={events['checkout']}",
                    "body": checkout,
                },
            },
        },
    }


def receipt_specs(cfg: dict[str, Any], skus: Sequence[str], headers: dict[str, str]):
    common = {
        "scenario": "requests",
        "connections": cfg["connections"],
        "seconds": cfg["seconds"],
        "warmup": cfg["warmup"],
        "body": {"quantity": 1},
    }
    return {
        "shop": {
            **common,
            "headers": headers,
            "paths": [f"/api/stock/{sku}/receipts" for sku in skus],
        },
        "floor": {**common, "paths": [f"/floor/{sku}" for sku in skus]},
    }


@contextlib.contextmanager
def deployed(
    label: str, *, workers: int = 1, separate_worker: bool = False, threads: bool = False
) -> Iterator[tuple[Side, Side]]:
    """A fresh database with the shop and the floor serving it, each in its own processes."""
    with database(label) as url, tempfile.TemporaryDirectory(prefix=f"bench-{label}-") as tmp:
        dbname = url.rsplit("/", 1)[1]
        dsn = StoreURL.parse(url).dsn()
        deployment = Deployment(Path(tmp))
        try:
            # Both start at once (a slow machine takes seconds for each); neither is timed.
            with ThreadPoolExecutor(2) as pool:
                shop_started = pool.submit(
                    start_shop,
                    deployment,
                    url,
                    dbname,
                    workers=workers,
                    separate_worker=separate_worker,
                    threads=threads,
                )
                floor_started = pool.submit(start_floor, deployment, dsn, dbname, workers=workers)
                shop, floor = shop_started.result(), floor_started.result()
            yield shop, floor
        finally:
            deployment.stop()


def spread_skus(count: int) -> list[str]:
    return [f"SPREAD-{n:03d}" for n in range(count)]


def run_default(cfg: dict[str, Any], only: Sequence[str], echo: Callable[[str], None]):
    """Spread, hot and the flash sale on one default ``eventshop serve``."""
    results: dict[str, Any] = {}
    with deployed("p1") as (shop, floor):
        skus, hot, flash = spread_skus(cfg["skus"]), "HOT-1", "FLASH-1"
        make_products(shop, [*skus, hot, flash], {flash: cfg["flash_stock"]})
        headers = dict(shop.admin_headers or {})
        shape = {"skus": cfg["skus"], "connections": cfg["connections"]}
        if "spread" in only:
            runs = alternate([shop, floor], receipt_specs(cfg, skus, headers), cfg["rounds"])
            results["spread"] = {"runs": runs, **shape, **summarise(runs)}
            echo(report_scenario("spread", results["spread"]))
        if "hot" in only:
            runs = alternate([shop, floor], receipt_specs(cfg, [hot], headers), cfg["rounds"])
            results["hot"] = {"runs": runs, **shape, "skus": 1, **summarise(runs)}
            echo(report_scenario("hot", results["hot"]))
        if "flash" in only:
            events = probe_purchase(shop, flash)
            specs = flash_specs(cfg, flash, events)
            runs = alternate([shop, floor], specs, cfg["rounds"])
            results["flash"] = {
                "runs": runs,
                **shape,
                "stock": cfg["flash_stock"],
                "events_per_step": events,
                **summarise(runs, "cycles_per_second"),
            }
            echo(report_scenario("flash", results["flash"]))
    return results


def run_spread_on(
    name: str, cfg: dict[str, Any], echo: Callable[[str], None], **deployment: Any
) -> dict[str, Any]:
    with deployed(name, **deployment) as (shop, floor):
        skus = spread_skus(cfg["skus"])
        make_products(shop, skus, {})
        specs = receipt_specs(cfg, skus, dict(shop.admin_headers or {}))
        runs = alternate([shop, floor], specs, cfg["rounds"])
    shape = {"skus": cfg["skus"], "connections": cfg["connections"]}
    result = {"runs": runs, **shape, **summarise(runs)}
    echo(report_scenario(name, result))
    return result


def run_appends(cfg: dict[str, Any], echo: Callable[[str], None]) -> dict[str, Any]:
    """Shop.open_cart against raw inserts, 16 threads each, alternating processes."""
    runs = []
    with database("appends") as url:
        dbname = url.rsplit("/", 1)[1]
        side = Side("shop", "", Process("none", [], {}, ROOT, Path(os.devnull)), dbname)
        for round_no in range(1, cfg["rounds"] + 1):
            for name in ("shop", "raw"):
                command = [
                    sys.executable,
                    "-m",
                    "bench.appends",
                    name,
                    "--url",
                    url,
                    "--threads",
                    str(cfg["append_threads"]),
                    "--seconds",
                    str(cfg["append_seconds"]),
                    "--warmup",
                    str(min(1.0, cfg["warmup"])),
                    "--ack",
                ]
                # The driver is the side here: its own CPU is the "server" CPU.
                side.name = "shop" if name == "shop" else "floor"
                limit = cfg["append_seconds"] + DRIVER_GRACE + 30  # + the shop's start
                run = measure(side, command, None, lambda r: r["appends"], limit)
                run["scenario"] = "appends"
                run["round"] = round_no
                run["requests_per_second"] = run["appends_per_second"]
                run["non_2xx"] = 0
                run["latency"] = {"request": run["latency"]}
                runs.append(run)
    result = {"runs": runs, "threads": cfg["append_threads"], **summarise(runs)}
    echo(report_scenario("appends", result))
    return result


def code_state() -> dict[str, Any]:
    """The commit measured, and the files changed since (others edit this tree too)."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=20
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout

    return {
        "commit": git("rev-parse", "--short", "HEAD").strip(),
        "changed": [line[3:] for line in git("status", "--porcelain", "-uno").splitlines()],
    }


def run(
    rounds: int = DEFAULTS["rounds"],
    seconds: float = DEFAULTS["seconds"],
    warmup: float = DEFAULTS["warmup"],
    connections: int = DEFAULTS["connections"],
    skus: int = DEFAULTS["skus"],
    flash_seconds: float = DEFAULTS["flash_seconds"],
    flash_stock: int = DEFAULTS["flash_stock"],
    append_threads: int = DEFAULTS["append_threads"],
    append_seconds: float = DEFAULTS["append_seconds"],
    only: Sequence[str] = SCENARIOS,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every chosen scenario, each against its floor; figures as data."""
    unknown = set(only) - set(SCENARIOS)
    if unknown:
        raise ValueError(f"unknown scenarios {sorted(unknown)}; choose from {SCENARIOS}")
    cfg = {
        "rounds": rounds,
        "seconds": seconds,
        "warmup": warmup,
        "connections": connections,
        "skus": skus,
        "flash_seconds": flash_seconds,
        "flash_stock": flash_stock,
        "append_threads": append_threads,
        "append_seconds": append_seconds,
    }
    started = time.perf_counter()
    result: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": cfg,
        "cores": os.cpu_count(),
        "load_average_before": os.getloadavg(),
        "code": code_state(),
        "scenarios": {},
    }
    scenarios = result["scenarios"]
    took = result["seconds_by_group"] = {}
    errors = result["errors"] = {}

    def group(name: str, call: Callable[[], dict[str, Any]]) -> None:
        """Run one deployment's scenarios; a failure is recorded and the others still run."""
        began = time.perf_counter()
        try:
            scenarios.update(call())
        except Exception as error:
            errors[name] = f"{type(error).__name__}: {error}"
            echo(f"{name}: FAILED: {errors[name]}")
        finally:
            took[name] = round(time.perf_counter() - began, 1)

    if {"spread", "hot", "flash"} & set(only):
        group("serve", lambda: run_default(cfg, only, echo))
    if "spread_threads" in only:
        group(
            "spread_threads",
            lambda: {"spread_threads": run_spread_on("spread_threads", cfg, echo, threads=True)},
        )
    if "spread_worker" in only:
        group(
            "spread_worker",
            lambda: {
                "spread_worker": run_spread_on("spread_worker", cfg, echo, separate_worker=True)
            },
        )
    if "spread_workers2" in only:
        group(
            "spread_workers2",
            lambda: {"spread_workers2": run_spread_on("spread_workers2", cfg, echo, workers=2)},
        )
    if "appends" in only:
        group("appends", lambda: {"appends": run_appends(cfg, echo)})
    result["load_average_after"] = os.getloadavg()
    result["seconds_taken"] = time.perf_counter() - started
    return result


def save(result: dict[str, Any], out: Path = RESULTS) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "write_path.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    parser.add_argument("--rounds", type=int, default=DEFAULTS["rounds"])
    parser.add_argument("--seconds", type=float, default=DEFAULTS["seconds"])
    parser.add_argument("--connections", type=int, default=DEFAULTS["connections"])
    parser.add_argument("--only", default=",".join(SCENARIOS), help=f"some of {SCENARIOS}")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    only = [n for n in args.only.split(",") if n]
    if args.quick:
        result = run(**{**QUICK, "only": only})
    else:
        result = run(
            rounds=args.rounds, seconds=args.seconds, connections=args.connections, only=only
        )
    print()
    print(report(result))
    print(f"\nsaved {save(result, args.out)}")


if __name__ == "__main__":
    main()
