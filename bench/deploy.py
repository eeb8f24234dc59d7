"""Each side of a write-path comparison deployed as a user deploys it, and measured.

The shop (``eventshop serve``, the console script, and an ``eventshop worker`` where the
read models run apart) and the floor (bench/floor_app.py in its own uvicorn process) are
started in processes of their own on a database made for the run; a round of the load
client (bench/load.py) is run against one side while the CPU of its processes, of
PostgreSQL's backends on that database and of the client is read from ``/proc``, and
the shop's read-model lag is polled. Used by bench/write_path.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from api.auth import mint
from bench.common import SECRET, free_port

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
    deployment: Deployment,
    url: str,
    dbname: str,
    *,
    workers: int = 1,
    separate_worker: bool,
    threads: bool = False,
    env: dict[str, str] | None = None,
) -> Side:
    """``eventshop serve`` (and ``eventshop worker`` when the read models run apart);
    ``env``: more settings for both (``EVENTSHOP_NATS_URL`` ...)."""
    var_dir = deployment.workdir / "var"
    extra = {"EVENTSHOP_RUN_PROJECTIONS": "false"} if separate_worker else {}
    if threads:  # the read models in threads of the API process, not its worker child
        extra["EVENTSHOP_PROJECTIONS_PROCESS"] = "false"
    env = shop_env(url, var_dir, **extra, **(env or {}))
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
