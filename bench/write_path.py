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
  from 32 connections, on three deployments of the shop: default ``eventshop serve``
  (read models fed in-process), ``EVENTSHOP_RUN_PROJECTIONS=false`` plus an ``eventshop
  worker`` process, and ``serve --workers 2`` (against a floor with ``--workers 2``);
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
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from api.auth import mint
from bench.common import SECRET, database, free_port, ratio
from eventstore.url import StoreURL

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")
START_TIMEOUT = 90.0  # seconds for a server to answer (a loaded 2-core machine is slow)
CATCH_UP_TIMEOUT = 60.0  # seconds for the read models to catch up after a round
LAG_POLL_SECONDS = 1.0
# uvicorn's supervisor replaces a worker that misses its health check (5 s): a deployment
# with --workers N counts as started once none was replaced for this long.
STEADY_SECONDS = 6.0
# A round's driver (load client or appends side) is killed if it runs this much longer
# than its window: a bound, never reached by a working driver.
DRIVER_GRACE = 90.0
GIVE_UP_RESTARTS = 8  # ... and gives up on one whose workers are replaced this many times
FLASH_STOCK = 20_000
RECEIPT_MAX = 1000  # the most units one receipt may bring (domain.values.MAX_QUANTITY)
ADDRESS = {
    "name": "Bench Customer",
    "line1": "1 Bench Street",
    "city": "Berlin",
    "postal_code": "10115",
    "country": "DE",
}
SCENARIOS = ("spread", "hot", "flash", "spread_worker", "spread_workers2", "appends")

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


# --- processes and their CPU -------------------------------------------------------


def snapshot() -> dict[int, tuple[int, float, str]]:
    """Every process: pid -> (parent pid, user+sys CPU seconds, command line)."""
    found: dict[int, tuple[int, float, str]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read().decode("latin-1")
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode("latin-1")
        except OSError:
            continue  # gone meanwhile
        rest = stat[stat.rfind(")") + 2 :].split()
        found[int(entry.name)] = (int(rest[1]), (int(rest[11]) + int(rest[12])) / CLK_TCK, cmdline)
    return found


def tree(snap: dict[int, tuple[int, float, str]], root: int) -> dict[int, float]:
    """CPU seconds of ``root`` and of each of its descendants in ``snap``."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in snap.items():
        children.setdefault(ppid, []).append(pid)
    found: dict[int, float] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in snap:
            found[pid] = snap[pid][1]
            todo.extend(children.get(pid, ()))
    return found


def backends(snap: dict[int, tuple[int, float, str]], dbname: str) -> dict[int, float]:
    """CPU seconds of the PostgreSQL backends connected to ``dbname``."""
    return {
        pid: cpu
        for pid, (_, cpu, cmd) in snap.items()
        if cmd.startswith("postgres: ") and f" {dbname} " in cmd
    }


def spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two readings (a process new in ``after`` counts whole)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def eventshop_command() -> list[str]:
    """The ``eventshop`` console script of this interpreter's environment."""
    script = Path(sys.executable).parent / "eventshop"
    if script.exists():
        return [str(script)]
    found = shutil.which("eventshop")
    if found is None:
        raise RuntimeError("the eventshop console script is not installed (pip install -e .)")
    return [found]


@dataclass
class Process:
    """A server (or worker) process of a deployment, its log in a file."""

    name: str
    command: list[str]
    env: dict[str, str]
    cwd: Path
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.popen = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def restarts(self) -> int:
        """Worker processes uvicorn's supervisor found dead (or hung) and replaced."""
        try:
            return self.log.read_text(errors="replace").count("] died")
        except OSError:
            return 0

    def settle(self, quiet: float = STEADY_SECONDS, timeout: float = START_TIMEOUT) -> None:
        """With ``--workers N``: wait until the supervisor has replaced no worker for
        ``quiet`` seconds (it kills one that misses its 5 s health check, as a slow
        start on a loaded machine can)."""
        deadline = time.monotonic() + timeout
        seen, since = self.restarts(), time.monotonic()
        while time.monotonic() - since < quiet:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} keeps replacing workers:\n{self.tail()}")
            if not self.alive():
                raise RuntimeError(f"{self.name} exited:\n{self.tail()}")
            time.sleep(0.5)
            if (now := self.restarts()) != seen:
                seen, since = now, time.monotonic()

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)


def wait_until(check: Callable[[], bool], process: Process, timeout: float) -> None:
    """Poll ``check`` until it holds; fail early if ``process`` died, or if its
    supervisor keeps replacing workers before any answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise RuntimeError(f"{process.name} exited:\n{process.tail()}")
        if (replaced := process.restarts()) >= GIVE_UP_RESTARTS:
            raise RuntimeError(
                f"{process.name}: uvicorn replaced {replaced} workers that missed its 5 s"
                f" health check while starting; none answered:\n{process.tail(6)}"
            )
        with contextlib.suppress(httpx.HTTPError, ValueError):
            if check():
                return
        time.sleep(0.2)
    raise RuntimeError(f"{process.name} did not answer in {timeout:.0f} s:\n{process.tail()}")


# --- deployments -----------------------------------------------------------------------


@dataclass
class Side:
    """One side of a comparison as the client sees it: where it listens, what to sample."""

    name: str  # "shop" or "floor"
    base: str
    server: Process
    dbname: str
    worker: Process | None = None
    admin_headers: dict[str, str] | None = None  # set: the side has read models to watch

    def projections_lag(self) -> tuple[int, str] | None:
        """The largest lag of any read model and its name (None: no read models)."""
        if self.admin_headers is None:
            return None
        answer = httpx.get(f"{self.base}/api/projections", headers=self.admin_headers, timeout=10)
        answer.raise_for_status()
        items = answer.json()["items"]
        worst = max(items, key=lambda item: item["lag"])
        return int(worst["lag"]), str(worst["name"])


@dataclass
class Deployment:
    """Processes started for a group of scenarios, stopped (all of them) at the end."""

    workdir: Path
    processes: list[Process] = field(default_factory=list)

    def process(self, name: str, command: list[str], env: dict[str, str], cwd: Path) -> Process:
        process = Process(name, command, env, cwd, self.workdir / f"{name}.log")
        self.processes.append(process)
        process.start()
        return process

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


def staff_headers() -> dict[str, str]:
    # Staff for the receipts; admin too, for GET /api/projections.
    return {"Authorization": f"Bearer {mint(SECRET, 'bench-staff', ['staff', 'admin'], 7200)}"}


def shop_env(url: str, var_dir: Path, **extra: str) -> dict[str, str]:
    return {
        "EVENTSHOP_DATABASE_URL": url,
        "EVENTSHOP_JWT_SECRET": SECRET,
        "EVENTSHOP_VAR_DIR": str(var_dir),
        **extra,
    }


def start_shop(
    deployment: Deployment, url: str, dbname: str, *, workers: int = 1, separate_worker: bool
) -> Side:
    """``eventshop serve`` (and ``eventshop worker`` when the read models run apart)."""
    var_dir = deployment.workdir / "var"
    extra = {"EVENTSHOP_RUN_PROJECTIONS": "false"} if separate_worker else {}
    env = shop_env(url, var_dir, **extra)
    cli = eventshop_command()
    # Several processes on one store: make the tables first, as the README says to.
    if workers > 1 or separate_worker:
        subprocess.run(
            [*cli, "migrate"],
            cwd=deployment.workdir,
            env={**os.environ, **env},
            check=True,
            capture_output=True,
            timeout=START_TIMEOUT,
        )
    port = free_port()
    serve = [*cli, "serve", "--port", str(port)]
    if workers > 1:
        serve += ["--workers", str(workers)]
    server = deployment.process("shop", serve, env, deployment.workdir)
    worker = None
    if separate_worker:
        worker = deployment.process("worker", [*cli, "worker"], env, deployment.workdir)
    base = f"http://127.0.0.1:{port}"
    headers = staff_headers()
    # Our secret signs the token: a 200 proves that this shop, not another, answers.
    wait_until(
        lambda: httpx.get(f"{base}/api/products", headers=headers, timeout=5).status_code == 200,
        server,
        START_TIMEOUT,
    )
    side = Side("shop", base, server, dbname, worker, headers)
    # Every read model live (they start with the process, or the worker, a little later).
    wait_until(lambda: _all_live(side), worker or server, START_TIMEOUT)
    if workers > 1:
        server.settle()
    return side


def _all_live(side: Side) -> bool:
    answer = httpx.get(f"{side.base}/api/projections", headers=side.admin_headers, timeout=5)
    items = answer.json()["items"] if answer.status_code == 200 else []
    return bool(items) and all(item["state"] == "live" for item in items)


def start_floor(deployment: Deployment, dsn: str, dbname: str, *, workers: int = 1) -> Side:
    """bench/floor_app.py in its own uvicorn process(es)."""
    port = free_port()
    nonce = uuid.uuid4().hex
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.floor_app:app",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    if workers > 1:
        command += ["--workers", str(workers)]
    server = deployment.process("floor", command, {"FLOOR_DSN": dsn, "FLOOR_NONCE": nonce}, ROOT)
    base = f"http://127.0.0.1:{port}"
    wait_until(
        lambda: httpx.get(f"{base}/floor", timeout=5).json().get("nonce") == nonce,
        server,
        START_TIMEOUT,
    )
    if workers > 1:
        server.settle()
    return Side("floor", base, server, dbname)


# --- rounds ----------------------------------------------------------------------------


class LagWatch:
    """Polls the read models' lag in a thread while a round runs; keeps the largest."""

    def __init__(self, side: Side) -> None:
        self.side = side
        self.largest = 0
        self.model = ""
        self.polls = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                found = self.side.projections_lag()
                if found is not None:
                    self.polls += 1
                    if found[0] >= self.largest:
                        self.largest, self.model = found
            self.stop.wait(LAG_POLL_SECONDS)

    def __enter__(self) -> LagWatch:
        if self.side.admin_headers is not None:
            self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=15)


def catch_up(side: Side) -> dict[str, Any] | None:
    """Wait until every read model has caught up: the lag right after, and how long."""
    if side.admin_headers is None:
        return None
    began = time.perf_counter()
    first: tuple[int, str] | None = None
    found: tuple[int, str] | None = None
    largest = 0
    while time.perf_counter() - began < CATCH_UP_TIMEOUT:
        try:
            found = side.projections_lag()
        except (httpx.HTTPError, ValueError, KeyError):
            found = None  # a busy or restarting server: ask again
        if found is not None:
            first = first or found
            largest = max(largest, found[0])
            if found[0] == 0:
                break
        time.sleep(0.2)
    if first is None:
        raise RuntimeError(f"GET /api/projections did not answer in {CATCH_UP_TIMEOUT:.0f} s")
    return {
        "lag_after": first[0],
        "lag_after_model": first[1],
        "lag_after_max": largest,
        "caught_up": found is not None and found[0] == 0,
        "catch_up_seconds": time.perf_counter() - began,
    }


def measure(
    side: Side,
    command: list[str],
    stdin: str | None,
    commands_of: Callable[[dict], int],
    limit: float,
) -> dict[str, Any]:
    """Run one round's driver process; sample CPU when it opens and closes its window.

    The driver is killed if it runs past ``limit`` seconds (it never should).
    """
    catch_up(side)  # start with the read models caught up
    with tempfile.TemporaryFile("w+") as errors:
        driver = subprocess.Popen(
            command,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        assert driver.stdin is not None and driver.stdout is not None
        deadline = threading.Timer(limit, driver.kill)
        deadline.start()
        samples: dict[str, dict[int, tuple[int, float, str]]] = {}
        result: dict[str, Any] | None = None
        restarts = side.server.restarts()
        try:
            if stdin is not None:
                driver.stdin.write(stdin + "\n")
                driver.stdin.flush()
            with LagWatch(side) as watch:
                for line in driver.stdout:
                    line = line.strip()
                    if line in ("measuring", "measured"):
                        samples[line] = snapshot()
                        if line == "measured":
                            watch.stop.set()
                            # Sampled: the driver may now let its connections go.
                            driver.stdin.write("\n")
                            driver.stdin.flush()
                    elif line.startswith("{"):
                        result = json.loads(line)
        except BrokenPipeError:
            pass  # the driver ended early: said below
        finally:
            with contextlib.suppress(BrokenPipeError):
                driver.stdin.close()
            driver.wait()
            deadline.cancel()
        if result is None or driver.returncode != 0 or len(samples) != 2:
            errors.seek(0)
            raise RuntimeError(
                f"the driver {command[2:4]} failed ({driver.returncode}): {errors.read()[-3000:]}"
            )
    before, after = samples["measuring"], samples["measured"]
    served = max(1, commands_of(result))

    def ms_per_command(reading: Callable[[dict[int, tuple[int, float, str]]], dict[int, float]]):
        return spent(reading(before), reading(after)) * 1000 / served

    result["side"] = side.name
    result["server_restarts"] = side.server.restarts() - restarts
    # A side without a server (appends) is its driver process: that is what it spends.
    root = side.server.pid if side.server.popen is not None else driver.pid
    result["server_ms_per_command"] = ms_per_command(lambda s: tree(s, root))
    if side.worker is not None:
        result["worker_ms_per_command"] = ms_per_command(lambda s: tree(s, side.worker.pid))
    result["postgres_ms_per_command"] = ms_per_command(lambda s: backends(s, side.dbname))
    client_cpu = result.get("client_cpu_seconds")
    if client_cpu is not None:
        result["client_ms_per_command"] = client_cpu * 1000 / served
    if side.admin_headers is not None:
        result["lag_max_during"] = watch.largest
        result["lag_max_during_model"] = watch.model
        result["lag_polls"] = watch.polls
        result.update(catch_up(side) or {})
    return result


def load_round(side: Side, spec: dict[str, Any]) -> dict[str, Any]:
    """One round of the load client against ``side``."""
    spec = {**spec, "base": side.base, "ack": True}
    limit = spec["warmup"] + spec["seconds"] + DRIVER_GRACE
    return measure(
        side,
        [sys.executable, "-m", "bench.load"],
        json.dumps(spec),
        lambda r: r["requests"],
        limit,
    )


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
    label: str, *, workers: int = 1, separate_worker: bool = False
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


# --- report ----------------------------------------------------------------------------

TITLES = {
    "spread": "P1 spread: POST /api/stock/{{sku}}/receipts over {skus} SKUs, {connections}"
    " connections; `eventshop serve` (read models in-process) vs floor (1 process)",
    "hot": "P1 hot: every receipt on one SKU, {connections} connections; `eventshop serve`"
    " vs floor",
    "flash": "Flash sale: {connections} customers loop open cart, add 1 unit, check out;"
    " `eventshop serve` vs floor (same 3 requests, as many rows per transaction)",
    "spread_worker": "P1 spread, EVENTSHOP_RUN_PROJECTIONS=false + `eventshop worker`"
    " vs floor (1 process)",
    "spread_workers2": "P1 spread, `eventshop serve --workers 2` vs floor `--workers 2`",
    "appends": "Appends: {append_threads} threads, Shop.open_cart (one new cart per"
    " transaction) vs raw psycopg insert under the table lock, each in its own process",
}
SHORT = {
    "spread": "P1 spread, serve",
    "hot": "P1 hot SKU, serve",
    "flash": "flash sale, serve",
    "spread_worker": "P1 spread, serve + worker",
    "spread_workers2": "P1 spread, serve --workers 2",
    "appends": "appends, {threads} threads",
}


def _line(label: str, r: dict[str, Any], flash: bool) -> str:
    step = "checkout" if flash else "request"
    lat = r["latency"].get(step, {"p50": 0.0, "p99": 0.0})
    rate = r["cycles_per_second"] if flash else r["requests_per_second"]
    worker = r.get("worker_ms_per_command")
    cpu = f"{r['server_ms_per_command']:.2f}" + (f"+{worker:.2f}w" if worker is not None else "")
    client = r.get("client_ms_per_command")
    lag = ""
    if "lag_max_during" in r:
        lag = f"  lag {r['lag_max_during']}/{r['lag_after']} ({r['catch_up_seconds']:.1f} s)"
    extra = f"{r['refused']:>6}" if flash else ""
    bad = {code: n for code, n in r.get("statuses", {}).items() if not code.startswith("2")}
    if bad:
        lag += "  non-2xx: " + ", ".join(f"{n} x {code}" for code, n in bad.items())
    if r.get("server_restarts"):
        lag += f"  {r['server_restarts']} worker(s) replaced by uvicorn"
    return (
        f"{label:<10}{rate:>9.1f}{lat['p50']:>9.1f}{lat['p99']:>9.1f}{r['non_2xx']:>8}{extra}"
        f"{cpu:>16}{r['postgres_ms_per_command']:>9.2f}"
        f"{(f'{client:.2f}' if client is not None else '-'):>9}{lag}"
    )


def report_scenario(name: str, result: dict[str, Any]) -> str:
    """One scenario's rounds and medians as a plain-text table."""
    runs = result["runs"]
    flash = runs[0]["scenario"] == "flash"
    title = TITLES[name].format(
        skus=result.get("skus", "?"),
        connections=result.get("connections", "?"),
        append_threads=result.get("threads", "?"),
    )
    rate = "chk/s" if flash else ("app/s" if name == "appends" else "req/s")
    lines = [
        title,
        f"{'round':<10}{rate:>9}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>8}"
        + (f"{'409':>6}" if flash else "")
        + f"{'srv ms/cmd':>16}{'pg ms':>9}{'client':>9}"
        + ("  lag max during/after (catch-up)" if "lag_max_during" in runs[0] else ""),
    ]
    for r in runs:
        lines.append(_line(f"{r['side']} #{r['round']}", r, flash))
    shop, floor = result["shop"], result["floor"]
    key = "cycles_per_second" if flash else "requests_per_second"
    unit = "checkouts/s" if flash else ("appends/s" if name == "appends" else "req/s")
    summary = (
        f"median: shop {shop[key]:.1f} {unit} (p50 {shop['p50']:.1f} ms, p99 {shop['p99']:.1f}"
        f" ms, {shop['server_ms_per_command']:.2f} ms CPU/cmd"
    )
    if "worker_ms_per_command" in shop:
        summary += f" + worker {shop['worker_ms_per_command']:.2f}"
    summary += (
        f"), floor {floor[key]:.1f} (p50 {floor['p50']:.1f} ms,"
        f" {floor['server_ms_per_command']:.2f} ms CPU/cmd);"
        f" ratio shop/floor {result['ratio']:.2f}x; shop non-2xx {shop['non_2xx']}"
    )
    if flash:
        summary += f", refused (409) {shop['refused']}"
    if "lag_max_during" in shop:
        summary += (
            f"; max read-model lag {shop['lag_max_during']} events during,"
            f" {shop['lag_after_max']} right after (caught up within"
            f" {shop['catch_up_seconds_max']:.1f} s)"
        )
    lines.append(summary)
    return "\n".join(lines)


def summary_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per scenario: its figures, as data for run_all's table."""
    rows = []
    for name, found in result["scenarios"].items():
        flash = name == "flash"
        key = "cycles_per_second" if flash else "requests_per_second"
        rows.append(
            {
                "scenario": name,
                "label": SHORT[name].format(threads=found.get("threads", "?")),
                "shop": found["shop"][key],
                "floor": found["floor"][key],
                "ratio": found["ratio"],
                "shop_p50": found["shop"]["p50"],
                "shop_p99": found["shop"]["p99"],
                "shop_non_2xx": found["shop"]["non_2xx"],
                "shop_ms_per_command": found["shop"]["server_ms_per_command"],
                "worker_ms_per_command": found["shop"].get("worker_ms_per_command"),
                "floor_ms_per_command": found["floor"]["server_ms_per_command"],
                "refused": found["shop"].get("refused"),
                "lag_max_during": found["shop"].get("lag_max_during"),
                "lag_after_max": found["shop"].get("lag_after_max"),
            }
        )
    return rows


def report(result: dict[str, Any]) -> str:
    """The summary as a plain-text table (each scenario's rounds were echoed as it ran)."""
    cfg = result["config"]
    lines = [
        f"Write path vs floor, {result['cores']} cores, {cfg['rounds']} rounds per side"
        f" alternating, {cfg['seconds']:g} s each (flash {cfg['flash_seconds']:g} s,"
        f" appends {cfg['append_seconds']:g} s), load average"
        f" {result['load_average_before'][0]:.1f} -> {result['load_average_after'][0]:.1f};"
        f" code at {result['code']['commit']}"
        + (
            f" + {len(result['code']['changed'])} changed files"
            if result["code"]["changed"]
            else ""
        ),
        f"{'scenario':<30}{'shop':>9}{'floor':>9}{'ratio':>8}{'p50':>8}{'p99':>8}"
        f"{'non-2xx':>10}{'ms CPU/cmd':>22}{'lag':>12}",
    ]
    for row in summary_rows(result):
        cpu = f"{row['shop_ms_per_command']:.2f}"
        if row["worker_ms_per_command"] is not None:
            cpu += f"+{row['worker_ms_per_command']:.2f}w"
        cpu += f" / {row['floor_ms_per_command']:.2f}"
        lag = (
            "-"
            if row["lag_max_during"] is None
            else f"{row['lag_max_during']}/{row['lag_after_max']}"
        )
        non = f"{row['shop_non_2xx']}" + (f" ({row['refused']} 409)" if row["refused"] else "")
        lines.append(
            f"{row['label']:<30}{row['shop']:>9.1f}{row['floor']:>9.1f}{row['ratio']:>7.2f}x"
            f"{row['shop_p50']:>8.1f}{row['shop_p99']:>8.1f}{non:>10}{cpu:>22}{lag:>12}"
        )
    for name, error in result.get("errors", {}).items():
        lines.append(f"{name}: FAILED: {error.splitlines()[0]}")
    lines.append(
        "(shop/floor: req/s, checkouts/s for the flash sale, appends/s; p50/p99 ms: the"
        " shop's, of the checkout for the flash sale; ms CPU/cmd: shop server (+ worker) /"
        " floor; lag: most events behind, during / right after)"
    )
    return "\n".join(lines)


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
