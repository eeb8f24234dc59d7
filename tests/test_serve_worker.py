"""`eventshop serve` on PostgreSQL and the worker process it feeds the read models from
(cli/feeding.py): started with it, started again when it ends, ended with it however
it ends. The processes run as an operator runs them."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from api.auth import mint
from bench.common import SECRET, free_port
from bench.survival import Processes, running, server_env, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
# Deadlines, not speed targets: a worker notices its parent gone within a beat (5 s).
DEADLINE = 30.0


def children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(line) for line in found.stdout.split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def projections_live(base: str) -> bool:
    token = mint(SECRET, "admin", ["admin"], 300)
    try:
        answer = httpx.get(
            f"{base}/api/projections", headers={"Authorization": f"Bearer {token}"}, timeout=5
        )
    except httpx.TransportError:
        return False
    items = answer.json().get("items", []) if answer.status_code == 200 else []
    return bool(items) and all(item["state"] == "live" for item in items)


def test_serve_feeds_the_read_models_from_a_worker_it_restarts_and_ends_with_it(
    pg_url: str, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with running(Processes(server_env(pg_url), tmp_path)) as processes:
        server = processes.serve("api", port, tmp_path / "var")
        worker = wait_until(lambda: children(server.pid), DEADLINE, "worker process")[0]
        wait_until(lambda: projections_live(base), DEADLINE, "read models live")
        # Fed by the worker, not by the API process: it holds the read models' locks.
        os.kill(worker, signal.SIGKILL)
        again = wait_until(
            lambda: [p for p in children(server.pid) if p != worker], DEADLINE, "a new worker"
        )[0]
        wait_until(lambda: projections_live(base), DEADLINE, "read models live again")
        # SIGTERM (docker stop, systemd) ends the API and its worker together.
        server.send_signal(signal.SIGTERM)
        assert server.wait(DEADLINE) == 0
        wait_until(lambda: not alive(again), DEADLINE, "the worker to end with serve")


def test_a_worker_whose_serve_was_killed_ends_by_itself(pg_url: str, tmp_path: Path) -> None:
    port = free_port()
    with running(Processes(server_env(pg_url), tmp_path)) as processes:
        server = processes.serve("api", port, tmp_path / "var")
        worker = wait_until(lambda: children(server.pid), DEADLINE, "worker process")[0]
        server.kill()
        server.wait()
        wait_until(lambda: not alive(worker), DEADLINE, "the orphaned worker to end")
