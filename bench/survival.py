"""What the crash tests and the soak share: the shop's processes, run as an operator runs
them, and the checks that a crash lost or doubled none of the commands acknowledged to
the client traffic of ``bench/traffic.py``.

Used by ``tests/test_multiprocess.py`` and ``bench/soak.py`` (``tests/test_soak.py`` runs
three of its cycles in CI).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from typer.testing import CliRunner

from api.auth import mint
from bench.common import SECRET, dumps, rebuilt
from bench.traffic import Ledger, http_client
from cli.main import app as cli
from commands.service import Shop
from eventshop.bootstrap import open_auditor
from projections import ReadSide

EVENTSHOP = Path(sys.executable).with_name("eventshop")
# Deadlines, not speed targets: each only stops a run that would otherwise hang.
START_TIMEOUT = 60.0
CATCH_UP_DEADLINE = 30.0


# --- processes --------------------------------------------------------------------------------


def server_env(url: str, **settings: str) -> dict[str, str]:
    """The environment of the shop's processes on ``url`` (``settings``: more of them)."""
    return {
        **os.environ,
        "EVENTSHOP_DATABASE_URL": url,
        "EVENTSHOP_JWT_SECRET": SECRET,
        # Small pools, as on a small database server: these runs go beside others.
        "EVENTSHOP_DATABASE_POOL_SIZE": "2",
        "EVENTSHOP_DATABASE_MAX_OVERFLOW": "4",
        "EVENTSHOP_LOG_LEVEL": "WARNING",
        **settings,
    }


@dataclass
class Processes:
    """The subprocesses of one run, each in a session of its own; all ended at the end."""

    env: dict[str, str]
    logs: Path
    started: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def migrate(self) -> None:
        """``eventshop migrate``, to its end."""
        subprocess.run(
            [str(EVENTSHOP), "migrate"],
            env=self.env,
            cwd=self.logs,
            check=True,
            timeout=START_TIMEOUT,
            capture_output=True,
        )

    def start(self, name: str, *args: str, var_dir: Path | None = None) -> subprocess.Popen[bytes]:
        """``eventshop *args``, its output in ``<name>.log``."""
        log = (self.logs / f"{name}.log").open("wb")
        env = {**self.env, "EVENTSHOP_VAR_DIR": str(var_dir or self.logs / name)}
        process = subprocess.Popen(
            [str(EVENTSHOP), *args],
            cwd=self.logs,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.started[name] = process
        return process

    def serve(self, name: str, port: int, var_dir: Path) -> subprocess.Popen[bytes]:
        """``eventshop serve`` on ``port`` (read models fed in it), once it is ready."""
        server = self.start(name, "serve", "--port", str(port), var_dir=var_dir)

        def ready() -> Any:
            if server.poll() is not None:
                raise AssertionError(f"{name} exited ({server.returncode})")
            return answered(probe, "/health/ready")

        with http_client(f"http://127.0.0.1:{port}") as probe:
            wait_until(ready, START_TIMEOUT, f"ready API from {name}")
        return server

    def end_all(self) -> None:
        for process in self.started.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.started.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)
            # The whole session: uvicorn's children too, should their parent be gone.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def tails(self) -> str:
        return "\n".join(
            f"--- {path.name} ---\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self.logs.glob("*.log"))
        )


@contextlib.contextmanager
def running(processes: Processes) -> Iterator[Processes]:
    """``processes``, every one ended at the end; their logs' tails printed on an error."""
    try:
        yield processes
    except BaseException:
        print(processes.tails())
        raise
    finally:
        processes.end_all()


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:.0f}s")
        time.sleep(0.1)
    return value


def answered(http: httpx.Client, path: str) -> dict[str, Any] | None:
    with contextlib.suppress(httpx.TransportError):
        response = http.get(path)
        if response.is_success:
            result: dict[str, Any] = response.json()
            return result
    return None


# --- checks -----------------------------------------------------------------------------------


def check_ledger(ledger: Ledger) -> None:
    """Every client thread ended cleanly, every request got an answer, and the only
    refusals were the domain's own (a lost race or short stock), never a fault."""
    assert not ledger.errors, ledger.errors
    assert not ledger.given_up, f"{len(ledger.given_up)} requests never answered"
    refusals = {status for _, status, _ in ledger.refused}
    assert refusals <= {409}, [r for r in ledger.refused if r[1] != 409][:5]


def events_by_request(shop: Shop) -> dict[str | None, list[Any]]:
    """Every stored event, grouped by the X-Request-ID of the request that stored it."""
    auditor = open_auditor(shop)
    grouped: dict[str | None, list[Any]] = defaultdict(list)
    for stored in auditor.stream():
        cause = auditor.item(stored)["metadata"] or {}
        grouped[cause.get("correlation_id")].append(stored)
    return grouped


def check_log(shop: Shop, ledger: Ledger) -> int:
    """Every acknowledged command's events are in the log once, at the position and
    version acknowledged, and no request was executed twice. Returns the log's length."""
    grouped = events_by_request(shop)
    assert set(grouped) <= ledger.sent, "events that no request of this run caused"
    for key, stored in grouped.items():
        touched = [event.originator_id for event in stored]
        # Each command changes each of its aggregates once: a second execution of one
        # request would show as a second event on the same aggregate, under the same key.
        assert len(touched) == len(set(touched)), f"request {key} was executed twice"
    for ack in ledger.acks:
        stored = grouped.get(ack.key, [])
        assert len(stored) == ack.events, f"{ack.kind} {ack.key}: {len(stored)} events"
        assert max(event.id for event in stored) == ack.position, ack
        assert (ack.aggregate_id, ack.version) in {
            (event.originator_id, event.originator_version) for event in stored
        }, ack
    return sum(len(stored) for stored in grouped.values())


def check_read_models(shop: Shop, read_side: ReadSide, url: str, prefix: str = "rb_") -> None:
    """The live read models, once caught up with the log, equal a rebuild from scratch
    (in tables named with ``prefix``, which must be new to rebuild from position 0)."""
    assert read_side.wait_for(None, shop.head(), timeout=CATCH_UP_DEADLINE), "read models behind"
    assert dumps(read_side) == rebuilt(shop, url, prefix=prefix, batch_size=100), (
        "read models differ from a rebuild"
    )


def check_verify(base_url: str, env: dict[str, str], head: int) -> str:
    """The server signs a receipt of the log's end (``POST /api/audit/receipts``), then
    ``eventshop audit verify`` on the store ``env`` names exits 0, *verified*: every
    event's hash link recomputed from position 1 matches, and every receipt (the server's
    periodic ones and this one) verifies. Its output.

    The CLI's own command, run in this process: a process of its own would add seconds
    of start-up to every check.
    """
    with http_client(base_url, mint(SECRET, "auditor-1", ["auditor"])) as http:
        response = http.post("/api/audit/receipts")
    assert response.status_code == 201, f"receipt: {response.status_code} {response.text}"
    assert response.json()["position"] == head, f"receipt at {response.json()}, head {head}"
    result = CliRunner().invoke(cli, ["audit", "verify"], env=env)
    output = " ".join(result.output.split())
    assert result.exit_code == 0, f"audit verify exited {result.exit_code}: {output}"
    return output
