"""Soak: SIGKILL of ``eventshop serve`` under mixed load on PostgreSQL, cycle after cycle.

``python -m bench.soak --cycles 20`` (``make soak``) makes a throw-away database, serves
the shop on it (read models fed in the server's process) and, in each cycle:

1. drives mixed traffic from client threads (products, receipts, carts, items,
   checkouts, payments, shipments, deliveries, cancellations; ``bench/traffic.py``),
   each command with an Idempotency-Key that is also its request id, every
   acknowledged answer recorded with its key and position. The concurrent saves are
   written in shared transactions (group commit), so the kill lands in those;
2. kills the server with SIGKILL at a random moment and starts it again on the same
   port; the clients retry what broke with the same key, as a client should;
3. stops the traffic (every request answered) and checks: every acknowledged command's
   events are in the log exactly once (by its request id), at the position and version
   acknowledged, and no request ran twice; the read models equal a rebuild from scratch
   (new tables each cycle); the server signs an audit receipt of the log's end and
   ``eventshop audit verify`` exits 0, *verified* (every event's hash link recomputed
   from position 1 matches, every receipt verifies).

It prints a line per cycle and a summary, stops at the first failed cycle and then exits
1 (the processes' logs are kept; their folder is printed). ``tests/test_soak.py`` runs
three cycles in CI. Traffic stays on 127.0.0.1; each cycle is bounded in time (and so in
commands) by its random load time, deadlines on every wait, and ``--max-commands``.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.common import database, free_port, opened, settings_for
from bench.survival import (
    Processes,
    check_ledger,
    check_log,
    check_read_models,
    check_verify,
    running,
    server_env,
)
from bench.traffic import Ledger, Traffic
from commands.service import Shop
from eventshop import bootstrap
from projections import ReadSide

# Seconds of traffic before the kill, drawn at random; and after the restart, before
# the traffic stops for the checks (the retried commands and a few new ones).
KILL_AFTER = (0.5, 1.5)
AFTER_RESTART = 0.3
STAFF = 3
CUSTOMERS = 5
MAX_COMMANDS = 5_000


@dataclass(frozen=True)
class Cycle:
    """What one cycle did and found."""

    number: int
    killed_after: float
    acked_before: int
    acked_at_kill: int
    acked: int
    retried: int
    refused: int
    events: int
    seconds: float
    verified: str
    failure: str | None = None

    def line(self, cycles: int) -> str:
        found = self.failure or f"log exact, read models = rebuild, audit verify: {self.verified}"
        return (
            f"cycle {self.number:>2}/{cycles}: SIGKILL after {self.killed_after:.2f}s"
            f" ({self.acked_at_kill} acked by then); {self.acked} acked in all,"
            f" {self.retried} retries after broken connections, {self.refused} refused;"
            f" log {self.events} events; {found}; {self.seconds:.1f}s"
        )


def soak(
    url: str,
    cycles: int,
    workdir: Path,
    *,
    staff: int = STAFF,
    customers: int = CUSTOMERS,
    max_commands: int = MAX_COMMANDS,
    seed: int | None = None,
    echo: Callable[[str], None] = print,
) -> tuple[list[Cycle], Ledger]:
    """Run ``cycles`` cycles on the store at ``url`` (migrated here), processes' logs in
    ``workdir``; the cycles run (up to the first that failed) and the ledger of commands."""
    chance = random.Random(seed)
    port, var_dir = free_port(), workdir / "var"
    env = server_env(url, EVENTSHOP_VAR_DIR=str(var_dir))
    processes = Processes(env, workdir)
    # What `eventshop migrate` does, without the seconds a process of its own takes.
    bootstrap.migrate(settings_for(url))
    shop_env = {name: value for name, value in env.items() if name.startswith("EVENTSHOP_")}
    ledger = Ledger()
    traffic = Traffic(f"http://127.0.0.1:{port}", ledger, max_commands=max_commands)
    done: list[Cycle] = []
    with running(processes), opened(url) as (shop, read_side):
        server = processes.serve("serve-0", port, var_dir)
        traffic.open_shop()
        for number in range(1, cycles + 1):
            started = time.monotonic()
            acked_before = len(ledger.acks)
            errors, refused = ledger.connection_errors, len(ledger.refused)
            with traffic.running(staff, customers):
                killed_after = chance.uniform(*KILL_AFTER)
                time.sleep(killed_after)
                acked_at_kill = len(ledger.acks)
                os.kill(server.pid, signal.SIGKILL)
                if server.wait(10) != -signal.SIGKILL:
                    raise AssertionError(f"the server ended otherwise ({server.returncode})")
                server = processes.serve(f"serve-{number}", port, var_dir)
                time.sleep(AFTER_RESTART)
            failure, events, verified = None, 0, ""
            try:
                events, verified = checked(shop, read_side, traffic, shop_env, number)
            except AssertionError as error:
                failure = f"FAILED: {error}"
            cycle = Cycle(
                number,
                killed_after,
                acked_before,
                acked_at_kill,
                len(ledger.acks),
                ledger.connection_errors - errors,
                len(ledger.refused) - refused,
                events,
                time.monotonic() - started,
                verified.partition(";")[0],
                failure,
            )
            done.append(cycle)
            echo(cycle.line(cycles))
            if failure:
                break
    return done, ledger


def checked(
    shop: Shop, read_side: ReadSide, traffic: Traffic, env: dict[str, str], number: int
) -> tuple[int, str]:
    """The checks after cycle ``number`` (AssertionError if one fails): how many events the
    log holds, and what audit verify said."""
    check_ledger(traffic.ledger)
    events = check_log(shop, traffic.ledger)
    url = env["EVENTSHOP_DATABASE_URL"]
    # The rebuild needs tables of its own each time, else it resumes the last one.
    check_read_models(shop, read_side, url, prefix=f"rb{number}_")
    return events, check_verify(traffic.base_url, env, shop.head())


def summary(cycles: list[Cycle], wanted: int, ledger: Ledger, seconds: float) -> str:
    failed = [cycle for cycle in cycles if cycle.failure]
    kinds = ledger.kinds()
    mix = ", ".join(f"{kinds[kind]} {kind}" for kind in Traffic.KINDS)
    counted = Counter(f"{kind} {status}" for kind, status, _ in ledger.refused)
    refused = ", ".join(f"{n} {what}" for what, n in counted.most_common()) or "none"
    if failed:
        head = f"FAILED at cycle {failed[0].number} of {wanted} (checks passed after the others)"
    else:
        head = (
            f"OK: {len(cycles)} cycles, {len(cycles)} SIGKILLs; after each one every"
            " acknowledged command was in the log once, the read models equalled a rebuild"
            " and audit verify passed"
        )
    return (
        f"{head}. {len(ledger.acks)} commands acknowledged ({mix});"
        f" {len(ledger.refused)} refused ({refused});"
        f" {ledger.connection_errors} retries after broken connections; {seconds:.0f}s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=20, help="kill-restart-check cycles")
    parser.add_argument("--staff", type=int, default=STAFF, help="staff client threads")
    parser.add_argument("--customers", type=int, default=CUSTOMERS, help="customer threads")
    parser.add_argument(
        "--max-commands", type=int, default=MAX_COMMANDS, help="commands sent per cycle, at most"
    )
    parser.add_argument("--seed", type=int, help="of the kill moments")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="eventshop-soak-"))
    started = time.monotonic()
    try:
        with database("soak") as url:
            cycles, ledger = soak(
                url,
                args.cycles,
                workdir,
                staff=args.staff,
                customers=args.customers,
                max_commands=args.max_commands,
                seed=args.seed,
            )
    except Exception as error:
        # A server that did not come back, a deadline passed: no cycle line says so.
        print(f"FAILED: {type(error).__name__}: {error}\nthe processes' logs: {workdir}")
        return 1
    print(summary(cycles, args.cycles, ledger, time.monotonic() - started))
    if len(cycles) == args.cycles and not cycles[-1].failure:
        shutil.rmtree(workdir, ignore_errors=True)
        return 0
    print(f"the processes' logs: {workdir}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
