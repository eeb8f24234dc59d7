"""What the audit trail and the sealing of personal data cost the write path.

Two comparisons, each of the shop against itself less one feature, each side in
processes of its own, alternating round by round so that the machine's drift hits both
alike:

- **links**: every append writes its event's hash link (``eventstore/links.py``) in the
  same transaction. The appends benchmark's shop side (bench/appends.py: 16 threads each
  opening new carts through the service) runs as it ships and with the links' INSERT
  left out (``shop-unlinked``; no deployment can switch the links off), on one
  throw-away database.
- **sealing**: an order's e-mail and address are encrypted with the customer's data key
  before they are stored. The write-path benchmark's flash sale (customers looping open
  a cart, add one unit, check out: every checkout seals) runs against two ``eventshop
  serve`` deployments, one as it ships and one with
  ``EVENTSHOP_PERSONAL_DATA_ENCRYPTION=false``, each on its own database.

Printed: each side's rate and CPU per command, and what the feature costs as a share of
the rate (the issue's bound: 10%).

    python -m bench.audit_cost [--rounds 3] [--seconds 4] [--only links,sealing]
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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.common import database
from bench.deploy import Deployment, Side, load_round, start_shop
from bench.write_path import DEFAULTS, flash_specs, make_products, probe_purchase

LINK_SIDES = ("shop", "shop-unlinked")
SEAL_SIDES = ("sealed", "plain")
FLASH_STOCK = 50_000


def appends_round(side: str, url: str, threads: int, seconds: float) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.appends", side, "--url", url]
    command += ["--threads", str(threads), "--seconds", str(seconds), "--warmup", "1"]
    done = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=seconds + 120
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["rate"] = result["appends_per_second"]
    result["cpu_ms"] = 1000 * result["cpu_seconds"] / max(1, result["appends"])
    return result


def links(rounds: int, seconds: float, threads: int) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in LINK_SIDES}
    with database("audit_cost") as url:
        for round_no in range(1, rounds + 1):
            for side in LINK_SIDES:
                run = appends_round(side, url, threads, seconds)
                runs[side].append(run)
                _echo(side, round_no, run, "appends/s")
    return runs


@contextlib.contextmanager
def deployed_shop(label: str, env: dict[str, str]) -> Iterator[Side]:
    with database(label) as url, tempfile.TemporaryDirectory(prefix=f"bench-{label}-") as tmp:
        deployment = Deployment(Path(tmp))
        try:
            yield start_shop(deployment, url, url.rsplit("/", 1)[1], separate_worker=False, env=env)
        finally:
            deployment.stop()


def sealing(rounds: int, seconds: float) -> dict[str, list[dict[str, Any]]]:
    cfg = {**DEFAULTS, "flash_seconds": seconds, "flash_stock": FLASH_STOCK}
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in SEAL_SIDES}
    plain = {"EVENTSHOP_PERSONAL_DATA_ENCRYPTION": "false"}
    with (
        deployed_shop("sealed", {}) as sealed,
        deployed_shop("plain", plain) as unsealed,
    ):
        sides = {"sealed": sealed, "plain": unsealed}
        specs = {}
        for name, side in sides.items():
            make_products(side, ["FLASH-1"], {"FLASH-1": FLASH_STOCK})
            specs[name] = flash_specs(cfg, "FLASH-1", probe_purchase(side, "FLASH-1"))["shop"]
        for round_no in range(1, rounds + 1):
            for name in SEAL_SIDES:
                run = load_round(sides[name], specs[name])
                run["rate"] = run["cycles_per_second"]
                run["cpu_ms"] = run["server_ms_per_command"]
                runs[name].append(run)
                _echo(name, round_no, run, "checkouts/s")
    return runs


def _echo(side: str, round_no: int, run: dict[str, Any], unit: str) -> None:
    print(
        f"{side:<14} #{round_no}  {run['rate']:8.1f} {unit}  {run['cpu_ms']:.3f} ms CPU each",
        flush=True,
    )


def summary(name: str, runs: dict[str, list[dict[str, Any]]], sides: tuple[str, str]) -> str:
    with_, without = sides
    rate = {s: statistics.median(r["rate"] for r in runs[s]) for s in sides}
    cpu = {s: statistics.median(r["cpu_ms"] for r in runs[s]) for s in sides}
    ratios = [a["rate"] / b["rate"] for a, b in zip(runs[with_], runs[without], strict=True)]
    cost = 100 * (1 - statistics.median(ratios))
    return (
        f"{name}: with {rate[with_]:.1f}/s ({cpu[with_]:.3f} ms CPU), without"
        f" {rate[without]:.1f}/s ({cpu[without]:.3f} ms CPU); with/without"
        f" {statistics.median(ratios):.2f}x: costs {cost:.0f}% of the rate"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--only", default="links,sealing")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    parts: dict[str, Callable[[], str]] = {
        "links": lambda: summary(
            "links (appends)", links(args.rounds, args.seconds, args.threads), LINK_SIDES
        ),
        "sealing": lambda: summary(
            "sealing (flash sale)", sealing(args.rounds, args.seconds), SEAL_SIDES
        ),
    }
    lines = [parts[name]() for name in args.only.split(",")]
    print("\n" + "\n".join(lines))
    print(f"load average {load:.1f} -> {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
