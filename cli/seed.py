"""``eventshop seed``: fill the configured store with a realistic history (cli/demo.py)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from cli.demo import SHOP_ENV
from cli.demo import seed as run_seed
from cli.output import AsJson, emit_json
from eventshop.bootstrap import open_shop
from eventshop.settings import Settings


def seed(
    orders: Annotated[
        int,
        typer.Option(min=1, metavar="N", help="orders to place (abandoned carts come on top)"),
    ],
    seed: Annotated[
        int, typer.Option(metavar="N", help="the same seed writes the same history")
    ] = 1,
    threads: Annotated[int, typer.Option(min=1, max=32, metavar="N", help="worker threads")] = 4,
    as_json: AsJson = False,
) -> None:
    """Write a realistic history through the shop's commands to EVENTSHOP_DATABASE_URL.

    Products, stock receipts, carts, checkouts, payments, shipments, deliveries,
    cancellations, stock adjustments and the odd refused checkout; for demos and
    benchmarks. Prints the events written and the rate (with --json as one document, and
    no progress bars on stderr).
    """
    console = Console(stderr=True)
    shop = open_shop(Settings(), **SHOP_ENV)
    if (held := shop.head()) > 0:
        shop.close()
        # Its catalogue would collide with the one already there, product by product.
        typer.echo(
            f"the store already holds {held:,} events: seed writes a new shop into an empty"
            " store (set EVENTSHOP_DATABASE_URL to another one)",
            err=True,
        )
        raise typer.Exit(1)
    try:
        with Progress(
            TextColumn("{task.description:<9}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=as_json,
        ) as progress:
            tasks: list[TaskID] = []

            def on_start(phase: str, steps: int) -> None:
                tasks.append(progress.add_task(phase, total=steps, rate=""))

            def on_step() -> None:
                progress.advance(tasks[-1])
                task = progress.tasks[-1]
                if task.speed:
                    progress.update(tasks[-1], rate=f"{task.speed:,.0f}/s")

            report = run_seed(
                shop, orders, seed=seed, threads=threads, on_start=on_start, on_step=on_step
            )
    finally:
        shop.close()
    if as_json:
        emit_json(
            {
                "products": report.products,
                "orders": report.orders,
                "abandoned_carts": report.abandoned_carts,
                "refused_checkouts": report.refused,
                "stock_adjustments": report.adjustments,
                "events": report.events,
                "seconds": round(report.seconds, 3),
                "events_per_second": round(report.events_per_second, 1),
                "threads": threads,
            }
        )
        return
    by_status = ", ".join(f"{n:,} {status}" for status, n in report.orders.items())
    typer.echo(f"products: {report.products:,}")
    typer.echo(f"orders: {sum(report.orders.values()):,} ({by_status})")
    typer.echo(f"abandoned carts: {report.abandoned_carts:,}")
    typer.echo(f"checkouts refused for want of stock: {report.refused:,}")
    typer.echo(f"stock adjustments: {report.adjustments:,}")
    typer.echo(
        f"events written: {report.events:,} in {report.seconds:.1f} s"
        f" ({report.events_per_second:,.0f} events/s, {threads} threads)"
    )
