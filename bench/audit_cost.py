"""What the audit trail costs the write path: appends with and without the hash links.

Every append writes its event's hash link (``eventstore/links.py``) in the same
transaction. Here the appends benchmark's shop side (bench/appends.py: 16 threads each
opening new carts through the service) runs as it ships and with the links' INSERT left
out, each in a process of its own, alternating round by round on one throw-away
database, so that the machine's drift hits both alike. Printed: appends/s and CPU per
append of each, and the cost of the links as a share of the appends/s.

    python -m bench.audit_cost [--rounds 3] [--seconds 4] [--threads 16]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from typing import Any

from bench.common import database

SIDES = ("shop", "shop-unlinked")


def one_round(side: str, url: str, threads: int, seconds: float) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.appends", side, "--url", url]
    command += ["--threads", str(threads), "--seconds", str(seconds), "--warmup", "1"]
    done = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=seconds + 120
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["cpu_ms_per_append"] = 1000 * result["cpu_seconds"] / max(1, result["appends"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args()
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    load = os.getloadavg()[0]
    with database("audit_cost") as url:
        for round_no in range(1, args.rounds + 1):
            for side in SIDES:
                run = one_round(side, url, args.threads, args.seconds)
                runs[side].append(run)
                print(
                    f"{side:<14} #{round_no}  {run['appends_per_second']:8.1f} appends/s"
                    f"  {run['cpu_ms_per_append']:.3f} ms CPU each",
                    flush=True,
                )
    rate = {s: statistics.median(r["appends_per_second"] for r in runs[s]) for s in SIDES}
    cpu = {s: statistics.median(r["cpu_ms_per_append"] for r in runs[s]) for s in SIDES}
    ratios = [
        linked["appends_per_second"] / unlinked["appends_per_second"]
        for linked, unlinked in zip(runs["shop"], runs["shop-unlinked"], strict=True)
    ]
    print(
        f"\nmedian: with links {rate['shop']:.1f} appends/s ({cpu['shop']:.3f} ms CPU),"
        f" without {rate['shop-unlinked']:.1f} ({cpu['shop-unlinked']:.3f} ms CPU);"
        f" with/without {statistics.median(ratios):.2f}x (the links cost"
        f" {100 * (1 - statistics.median(ratios)):.0f}% of the appends/s);"
        f" load average {load:.1f} -> {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
