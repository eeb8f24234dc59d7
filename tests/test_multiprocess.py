"""Many processes on one PostgreSQL: two API processes and two projection workers under
load, one of each killed with SIGKILL mid-run.

Everything runs as the operator would run it (``eventshop migrate``, ``eventshop serve
--workers 2``, ``eventshop worker`` twice) in subprocesses; this process only drives
HTTP load and then reads the database. Checked: every acknowledged command's events are
in the log exactly once, every read model equals a rebuild from scratch, and the
surviving worker takes over every read model (the time it took is printed; the bound
asserted is only a deadline so that a worker that never takes over fails the test).

One ``serve --workers 2`` rather than two ``serve`` processes on two ports: that is the
command the issue asks to prove, the two processes really share one listening socket,
and killing one of them is still one ``os.kill`` of a pid read from /proc. Uvicorn's
supervisor starts a replacement, as it would in production.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg

from api.auth import mint
from bench.common import SECRET, free_port, opened
from bench.survival import (
    EVENTSHOP,
    START_TIMEOUT,
    Processes,
    answered,
    check_ledger,
    check_log,
    check_read_models,
    running,
    server_env,
    wait_until,
)
from bench.traffic import Ledger, Traffic, http_client
from cli.main import WORKER_ALIVE_FILE
from eventstore.url import StoreURL

CUSTOMERS = 3
LOAD_SECONDS = 10.0
KILL_AFTER_SECONDS = 3.5
# Deadlines, not speed targets: each only stops a test that would otherwise hang.
TAKEOVER_DEADLINE = 30.0


def api_children(supervisor: int) -> list[int]:
    """The serving processes uvicorn's supervisor has started (not its resource tracker)."""
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    serving = []
    for pid in children:
        with contextlib.suppress(FileNotFoundError):
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                serving.append(int(pid))
    return serving


def lock_connections(url: str) -> int:
    """Projection workers connected to hold read-model locks in this database."""
    with psycopg.connect(StoreURL.parse(url).dsn()) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = 'eventshop-projection-locks'"
        ).fetchone()
    assert row is not None
    return int(row[0])


def held_by(status: list[dict[str, Any]], process: subprocess.Popen[bytes]) -> bool:
    """Every read model is live and fed by ``process`` (worker ids are host:pid:nonce)."""
    tag = f"{socket.gethostname()}:{process.pid}:"
    return all(str(s["worker"]).startswith(tag) and s["state"] == "live" for s in status)


# --- the test -------------------------------------------------------------------------------


def test_two_api_processes_and_two_workers_survive_a_sigkill_each(
    pg_url: str, tmp_path: Path
) -> None:
    processes = Processes(server_env(pg_url, EVENTSHOP_RUN_PROJECTIONS="false"), tmp_path)
    processes.migrate()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    ledger = Ledger()
    traffic = Traffic(base, ledger)
    with (
        running(processes),
        opened(pg_url) as (shop, read_side),
        http_client(base, mint(SECRET, "admin-1", ["admin"])) as admin,
    ):
        api = processes.start("api", "serve", "--workers", "2", "--port", str(port))
        first = processes.start("worker-a", "worker")
        wait_until(lambda: answered(admin, "/health/ready"), START_TIMEOUT, "ready API")
        wait_until(lambda: len(api_children(api.pid)) == 2, START_TIMEOUT, "2 API processes")

        traffic.open_shop(receipts=2)
        assert len(ledger.acks) == 3 * len(traffic.skus), ledger.refused
        # The first worker holds every read model (as the API reports it); the second
        # has connected and stands by.
        wait_until(
            lambda: (
                (found := answered(admin, "/api/projections")) and held_by(found["items"], first)
            ),
            START_TIMEOUT,
            "read models live in the first worker",
        )
        second = processes.start("worker-b", "worker")
        wait_until(lambda: lock_connections(pg_url) == 2, START_TIMEOUT, "second worker")

        started = time.monotonic()
        with traffic.running(staff=1, customers=CUSTOMERS):
            time.sleep(KILL_AFTER_SECONDS)
            head_at_kill = shop.head()
            os.kill(first.pid, signal.SIGKILL)
            killed_at, killed_wall = time.monotonic(), time.time()
            os.kill(api_children(api.pid)[0], signal.SIGKILL)
            api_killed_at = time.monotonic()
            wait_until(
                lambda: (
                    held_by(found := read_side.status(), second)
                    and all(s["position"] >= head_at_kill for s in found)
                ),
                TAKEOVER_DEADLINE,
                "takeover by the surviving worker",
            )
            takeover = time.monotonic() - killed_at
            time.sleep(max(0.0, LOAD_SECONDS - (time.monotonic() - started)))
        assert first.wait(5) == -signal.SIGKILL

        print(
            f"\ntakeover after SIGKILL of the lock-holding worker: {takeover:.2f}s;"
            f" {len(ledger.acks)} commands acknowledged, {len(ledger.refused)} refused,"
            f" {ledger.connection_errors} connection errors retried"
        )
        check_ledger(ledger)
        assert any(ack.at > api_killed_at + 1 for ack in ledger.acks), "API stopped answering"
        assert held_by(read_side.status(), second)
        # The survivor's healthcheck file (docker-compose.yml) is still being touched.
        alive = tmp_path / "worker-b" / WORKER_ALIVE_FILE
        wait_until(
            lambda: alive.exists() and alive.stat().st_mtime > killed_wall,
            TAKEOVER_DEADLINE,
            "heartbeat of the surviving worker",
        )
        check_log(shop, ledger)
        check_read_models(shop, read_side, pg_url)


def test_a_worker_that_cannot_feed_exits_with_a_failure(tmp_path: Path) -> None:
    # A supervisor (systemd Restart=on-failure, an orchestrator) must see the failure.
    env = {**os.environ, "EVENTSHOP_DATABASE_URL": "memory://", "EVENTSHOP_VAR_DIR": str(tmp_path)}
    done = subprocess.run(
        [str(EVENTSHOP), "worker"], env=env, cwd=tmp_path, capture_output=True, timeout=60
    )
    assert done.returncode == 1
    assert b"a worker needs a shared store" in done.stderr
