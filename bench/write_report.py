"""The write-path benchmark's tables: one per scenario, and the summary (bench/write_path.py)."""

from __future__ import annotations

from typing import Any

# --- report ----------------------------------------------------------------------------

TITLES = {
    "spread": "P1 spread: POST /api/stock/{{sku}}/receipts over {skus} SKUs, {connections}"
    " connections; `eventshop serve` (read models fed by its worker process) vs floor"
    " (1 process)",
    "spread_threads": "P1 spread, `eventshop serve` with EVENTSHOP_PROJECTIONS_PROCESS=false"
    " (read models in threads of the API process) vs floor (1 process)",
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
    "spread_threads": "P1 spread, serve, read models in threads",
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
                "floor_p99": found["floor"]["p99"],
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
