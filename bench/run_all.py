"""The benchmark suite: P1 (the write path), P3a, P3b and append growth, one table and one plot.

Runs each benchmark in turn (each in a PostgreSQL database of its own, dropped at the
end), prints its own table as it finishes, then one summary table against the targets,
and saves ``bench.json`` (every figure), ``bench.md`` (the summary as Markdown, for the
README) and ``bench.png`` (the curves) in ``--out``.

    python -m bench.run_all [--quick] [--only p1,history,orders,append] [--out bench/results]

P1 (bench/write_path.py) alone takes about 6 minutes on a 2-core machine; the others add
several more (the million-event and million-row fills the longest). ``--quick`` takes tiny
sizes (seconds) and only proves the code works: its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import append_growth, history_length, order_list, write_path, write_report

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Benchmark:
    name: str
    run: Callable[..., dict[str, Any]]
    report: Callable[[dict[str, Any]], str]
    quick: dict[str, Any]


BENCHMARKS = (
    Benchmark("p1", write_path.run, write_report.report, write_path.QUICK),
    Benchmark("history", history_length.run, history_length.report, history_length.QUICK),
    Benchmark("orders", order_list.run, order_list.report, order_list.QUICK),
    Benchmark("append", append_growth.run, append_growth.report, append_growth.QUICK),
)
NAMES = tuple(b.name for b in BENCHMARKS)


def run_suite(
    quick: bool = False,
    only: Sequence[str] = NAMES,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the chosen benchmarks; a failing one is recorded (with its traceback) and the
    others still run."""
    unknown = set(only) - set(NAMES)
    if unknown:
        raise ValueError(f"unknown benchmarks {sorted(unknown)}; choose from {NAMES}")
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "seconds": {},
        "errors": {},
    }
    for bench in BENCHMARKS:
        if bench.name not in only:
            continue
        echo(f"\n== {bench.name} ==")
        started = time.perf_counter()
        try:
            result = bench.run(**bench.quick) if quick else bench.run()
        except Exception:
            results["errors"][bench.name] = traceback.format_exc()
            echo(results["errors"][bench.name])
        else:
            results[bench.name] = result
            echo(bench.report(result))
        results["seconds"][bench.name] = time.perf_counter() - started
    return results


def _verdict(value: float, target: float | None, at_most: bool) -> str:
    if target is None:
        return "-"
    ok = value <= target if at_most else value >= target
    return "yes" if ok else "NO"


def summary(results: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """Rows of (benchmark, measure, figures, ratio, target met) for what was run."""
    rows: list[tuple[str, str, str, str, str]] = []

    def add(
        bench: str,
        measure: str,
        figures: str,
        value: float,
        target: float | None = None,
        at_most: bool = True,
        verdict: str | None = None,
    ) -> None:
        sign = "<=" if at_most else ">="
        goal = "" if target is None else f" (target {sign} {target:g}x)"
        rows.append(
            (
                bench,
                measure,
                figures,
                f"{value:.2f}x{goal}",
                verdict or _verdict(value, target, at_most),
            )
        )

    if p1 := results.get("p1"):
        for row in write_report.summary_rows(p1):
            name = row["scenario"]
            unit = {"flash": "checkouts/s", "appends": "appends/s"}.get(name, "req/s")
            figures = (
                f"{row['shop']:.0f} vs {row['floor']:.0f} {unit}; shop"
                + (" checkout" if name == "flash" else "")
                + " p50"
                f" {row['shop_p50']:.0f} ms, p99 {row['shop_p99']:.0f} ms; CPU/cmd"
                f" {row['shop_ms_per_command']:.1f}"
                + (
                    f" + worker {row['worker_ms_per_command']:.1f}"
                    if row["worker_ms_per_command"] is not None
                    else ""
                )
                + f" vs {row['floor_ms_per_command']:.1f} ms"
            )
            if name != "appends":
                figures += f"; non-2xx {row['shop_non_2xx']}"
            if row["refused"] is not None:
                figures += f" (409: {row['refused']})"
            if row["lag_max_during"] is not None:
                figures += f"; max lag {row['lag_max_during']}/{row['lag_after_max']} events"
            bench = {"flash": "flash", "appends": "appends"}.get(name, "P1")
            floor = "floor --workers 2" if name == "spread_workers2" else "floor"
            measure = f"{row['label'].removeprefix('P1 ')} vs {floor}"
            # The targets of the write-path issue: spread >= 1.0x at a p99 within 1.5x
            # the floor's and <= 2 ms of CPU per receipt; hot >= 0.5x, none refused;
            # the flash sale refusing none within 1 s at p99; appends >= 1.5x.
            if name == "spread":
                tail = row["shop_p99"] <= 1.5 * row["floor_p99"]
                ok = row["ratio"] >= 1.0 and tail and row["shop_ms_per_command"] <= 2.0
                figures += f"; floor p99 {row['floor_p99']:.0f} ms"
                goal = " (target: >= 1.0x, p99 <= 1.5x the floor's, CPU <= 2 ms)"
                add(bench, measure + goal, figures, row["ratio"], verdict="yes" if ok else "NO")
            elif name == "hot":
                ok = row["ratio"] >= 0.5 and row["shop_non_2xx"] == 0
                goal = " (target: >= 0.5x, 0 non-2xx)"
                add(bench, measure + goal, figures, row["ratio"], verdict="yes" if ok else "NO")
            elif name == "flash":
                ok = row["refused"] == 0 and row["shop_non_2xx"] == 0 and row["shop_p99"] <= 1000
                goal = " (target: 0 refused, p99 <= 1 s)"
                add(bench, measure + goal, figures, row["ratio"], verdict="yes" if ok else "NO")
            elif name == "appends":
                add(bench, measure, figures, row["ratio"], 1.5, at_most=False)
            else:
                add(bench, measure, figures, row["ratio"])
        for group, error in p1.get("errors", {}).items():
            rows.append(("P1", group, f"did not run: {error.splitlines()[0]}", "-", "NO"))
    if p3a := results.get("history"):
        first, last = p3a["rows"][0], p3a["rows"][-1]
        span = f"{first['length']:,} -> {last['length']:,} events"

        def p50s(key: str) -> str:
            return f"{first[key]['p50']:.2f} -> {last[key]['p50']:.2f} ms p50"

        add(
            "P3a",
            f"Stock receive_stock (service), {span}",
            p50s("stock_service"),
            p3a["ratio_service"],
            1.5,
        )
        if p3a["ratio_http"] is not None:
            add(
                "P3a",
                f"Stock receipt over HTTP, {span}",
                p50s("stock_http"),
                p3a["ratio_http"],
                1.5,
            )
        add(
            "P3a",
            f"Cart set_cart_quantity, not snapshotted, {span}",
            p50s("cart_service"),
            p3a["ratio_cart"],
        )
    if p3b := results.get("orders"):
        first, last = p3b["rows"][0], p3b["rows"][-1]
        for kind, value in p3b["ratios"].items():
            add(
                "P3b",
                f"list_orders {kind}, {first['size']:,} -> {last['size']:,} orders",
                f"{first[kind]['p50']:.2f} -> {last[kind]['p50']:.2f} ms p50",
                value,
                2.0,
            )
    if growth := results.get("append"):
        empty, grown = growth["summary"]["empty"], growth["summary"]["grown"]
        add(
            "append",
            f"appends/s, empty log -> {growth['events']:,} events, {growth['threads']} threads",
            f"{empty['appends_per_second']:.0f} -> {grown['appends_per_second']:.0f}/s"
            f" (p50 {empty['p50']:.1f} -> {grown['p50']:.1f} ms)",
            growth["ratio"],
        )
    return rows


HEADER = ("bench", "measure", "figures", "ratio", "met")


def table(results: dict[str, Any]) -> str:
    """The summary as an aligned plain-text table."""
    rows = [HEADER, *summary(results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    lines.extend(f"{name}: FAILED (see above)" for name in results["errors"])
    return "\n".join(lines)


def markdown(results: dict[str, Any]) -> str:
    """The summary as a Markdown table."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in summary(results)]
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    """The curves, one panel per benchmark that ran, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    p1_ax, p3a_ax, p3b_ax, append_ax = axes.flat
    if p1 := results.get("p1"):
        rows = write_report.summary_rows(p1)
        bars = p1_ax.bar(
            [row["label"].replace(", ", "\n") for row in rows],
            [row["ratio"] for row in rows],
            color="#1f77b4",
        )
        p1_ax.bar_label(
            bars,
            labels=[f"{row['ratio']:.2f}x\n{row['shop']:.0f}/{row['floor']:.0f}" for row in rows],
            fontsize="small",
        )
        p1_ax.set_ylim(0, max([1.0, *(row["ratio"] for row in rows)]) * 1.2)
        p1_ax.axhline(1.0, color="#999999", linestyle=":", label="spread target 1.0x")
        p1_ax.tick_params(axis="x", labelsize="x-small")
        p1_ax.set_ylabel("shop / floor (median of per-round ratios)")
        p1_ax.set_title("Write path vs floor, each in its own processes")
        p1_ax.legend(fontsize="small")
    if p3a := results.get("history"):
        lengths = [row["length"] for row in p3a["rows"]]
        series = [
            ("stock_service", "Stock, service"),
            ("stock_http", "Stock, HTTP"),
            ("cart_service", "Cart (no snapshots), service"),
        ]
        for key, label in series:
            if p3a["rows"][0][key] is None:
                continue
            line = p3a_ax.plot(lengths, [r[key]["p50"] for r in p3a["rows"]], "o-", label=label)
            p3a_ax.plot(
                lengths, [r[key]["p99"] for r in p3a["rows"]], ":", color=line[0].get_color()
            )
        p3a_ax.set_xscale("log")
        p3a_ax.set_yscale("log")
        p3a_ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        p3a_ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        p3a_ax.yaxis.set_minor_formatter(NullFormatter())
        p3a_ax.set_xlabel("events in the aggregate's history")
        p3a_ax.set_ylabel("command latency, ms (p50 solid, p99 dotted)")
        p3a_ax.set_title(f"P3a: history length — Stock {p3a['ratio_service']:.2f}x")
        p3a_ax.legend(fontsize="small")
    if p3b := results.get("orders"):
        sizes = [row["size"] for row in p3b["rows"]]
        for kind in order_list.QUERIES:
            p3b_ax.plot(sizes, [r[kind]["p50"] for r in p3b["rows"]], "o-", label=kind)
        p3b_ax.set_xscale("log")
        p3b_ax.set_ylim(bottom=0)
        p3b_ax.set_xlabel("orders in the read model")
        p3b_ax.set_ylabel("list_orders latency, ms p50")
        p3b_ax.set_title(f"P3b: order list — at most {p3b['ratio_max']:.2f}x")
        p3b_ax.legend(fontsize="small")
    if growth := results.get("append"):
        labels = ["empty log", f"{growth['events']:,} events"]
        summary_ = growth["summary"]
        bars = append_ax.bar(
            labels,
            [summary_["empty"]["appends_per_second"], summary_["grown"]["appends_per_second"]],
            color=["#999999", "#2ca02c"],
        )
        append_ax.bar_label(bars, fmt="%.0f")
        append_ax.set_ylabel(f"appends / s, {growth['threads']} threads")
        append_ax.set_title(f"Append throughput as the log grows — {growth['ratio']:.2f}x")
    for ax in axes.flat:
        if not ax.has_data():
            ax.set_axis_off()
    kind = "QUICK (figures meaningless)" if results["quick"] else "full"
    fig.suptitle(
        f"eventshop on PostgreSQL, {results['machine']['cores']} cores,"
        f" {results['started_at']} ({kind})"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save(results: dict[str, Any], out: Path) -> dict[str, Path]:
    """Write bench.json, bench.md and bench.png into ``out``; their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "bench.json", "md": out / "bench.md", "png": out / "bench.png"}
    paths["json"].write_text(json.dumps(results, indent=2) + "\n")
    paths["md"].write_text(markdown(results) + "\n")
    plot(results, paths["png"])
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument("--only", default=",".join(NAMES), help=f"some of {','.join(NAMES)}")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results = run_suite(args.quick, [n for n in args.only.split(",") if n])
    paths = save(results, args.out)
    total = sum(results["seconds"].values())
    print(f"\n== summary ({total:.0f} s) ==")
    print(table(results))
    print(f"\nsaved {', '.join(str(p) for p in paths.values())}")
    sys.exit(1 if results["errors"] else 0)


if __name__ == "__main__":
    main()
