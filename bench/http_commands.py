"""P1: HTTP command throughput and latency on PostgreSQL, next to the floor.

Runs, in one go and against one fresh PostgreSQL database:
- the floor: a minimal FastAPI route doing one raw psycopg insert per request under the
  same table lock the event store takes (bench/floor_app.py);
- eventshop: ``POST /api/stock/{sku}/receipts`` (load the Stock aggregate, check, append),
  each client on its own SKU, projections off (they run in workers in production).
Both are served by one uvicorn process and driven by the same closed-loop client, and the
runs alternate so that drift on this shared machine hits both alike. Prints a table.

    python bench/http_commands.py [--quick] [--clients 32] [--seconds 10] [--rounds 2]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.auth import mint  # noqa: E402
from bench.load import LoadResult, run_load  # noqa: E402

ADMIN_DSN = os.environ.get("BENCH_ADMIN_DSN", "dbname=postgres host=127.0.0.1 user=postgres")
SECRET = "bench-secret-of-at-least-32-bytes-long"
# Tiny sizes, for a smoke test of the code (the figures mean nothing).
QUICK: dict[str, Any] = {"clients": 4, "seconds": 1.0, "rounds": 1}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def database() -> Iterator[str]:
    name = f"eventshop_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            conn.execute(drop.format(sql.Identifier(name)))


@contextlib.contextmanager
def server(target: list[str], env: dict[str, str]) -> Iterator[str]:
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
        for _ in range(200):
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


def measure_floor(db: str, clients: int, seconds: float) -> LoadResult:
    env = {"FLOOR_DSN": f"dbname={db} host=127.0.0.1 user=postgres"}
    with server(["bench.floor_app:app"], env) as base:

        def request(client: int, n: int) -> tuple[str, str, dict]:
            return "POST", f"/floor/SKU-{client}", {}

        run_load(base, request, clients=clients, seconds=1)  # warm-up
        return run_load(base, request, clients=clients, seconds=seconds)


def measure_eventshop(db: str, clients: int, seconds: float, prefix: str) -> LoadResult:
    env = {
        "EVENTSHOP_DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{db}",
        "EVENTSHOP_JWT_SECRET": SECRET,
        "EVENTSHOP_RUN_PROJECTIONS": "false",
    }
    headers = {"Authorization": f"Bearer {mint(SECRET, 'bench', ['staff'], 3600)}"}
    with server(["api.app:create_app", "--factory"], env) as base:
        for client in range(clients):
            response = httpx.post(
                f"{base}/api/products",
                json={"sku": f"{prefix}-{client}", "name": f"Bench {client}", "price": "1.00"},
                headers=headers,
            )
            response.raise_for_status()

        def request(client: int, n: int) -> tuple[str, str, dict]:
            return "POST", f"/api/stock/{prefix}-{client}/receipts", {"json": {"quantity": 1}}

        run_load(base, request, clients=clients, seconds=1, headers=headers)  # warm-up
        return run_load(base, request, clients=clients, seconds=seconds, headers=headers)


def figures(r: LoadResult) -> dict[str, float]:
    """A run's figures as plain data."""
    return {
        "requests_per_second": r.throughput,
        "p50": r.p50,
        "p99": r.p99,
        "requests": r.requests,
        "errors": r.errors,
    }


def run(clients: int = 32, seconds: float = 10.0, rounds: int = 2) -> dict[str, Any]:
    """Alternate floor and eventshop runs in one fresh database; figures as data."""
    floors: list[LoadResult] = []
    shops: list[LoadResult] = []
    with database() as db:
        for round_no in range(rounds):
            floors.append(measure_floor(db, clients, seconds))
            shops.append(measure_eventshop(db, clients, seconds, f"R{round_no}"))
    pairs = list(zip(floors, shops, strict=True))
    return {
        "clients": clients,
        "seconds": seconds,
        "rounds": rounds,
        "cores": os.cpu_count(),
        "runs": [
            {"floor": figures(f), "eventshop": figures(s), "ratio": s.throughput / f.throughput}
            for f, s in pairs
        ],
        "floor": statistics.median(f.throughput for f in floors),
        "eventshop": statistics.median(s.throughput for s in shops),
        "ratio": statistics.median(s.throughput / f.throughput for f, s in pairs),
    }


def row(name: str, r: dict[str, float], ratio: float | None = None) -> str:
    shown = f"{ratio:5.2f}x" if ratio is not None else "    -"
    return (
        f"{name:<26}{r['requests_per_second']:>9.0f}{r['p50']:>10.1f}{r['p99']:>10.1f}"
        f"{r['errors']:>8}{shown:>10}"
    )


def report(result: dict[str, Any]) -> str:
    """The figures as a plain-text table."""
    lines = [
        f"P1 HTTP commands on PostgreSQL, {result['clients']} clients on loopback,"
        f" {result['seconds']:g} s per run, {result['cores']} cores",
        f"{'run':<26}{'req/s':>9}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}{'vs floor':>10}",
    ]
    for i, pair in enumerate(result["runs"], 1):
        lines.append(row(f"floor (raw insert) #{i}", pair["floor"]))
        lines.append(row(f"eventshop receipts #{i}", pair["eventshop"], pair["ratio"]))
    lines.append(f"median ratio eventshop / floor: {result['ratio']:.2f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    args = parser.parse_args()
    result = run(**QUICK) if args.quick else run(args.clients, args.seconds, args.rounds)
    print()
    print(report(result))


if __name__ == "__main__":
    main()
