"""What the read-side tests share: fresh stores, a command language, rebuilds, workers."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

# Re-exported: the benchmarks and the soak (bench/) open, dump and rebuild read models too.
from bench.common import dumps as dumps
from bench.common import opened as opened
from bench.common import rebuilt as rebuilt
from commands.service import Shop
from domain.errors import DomainError
from domain.order import CANCELLED
from domain.values import Address
from projections import ReadSide
from tests.conftest import SchemaPool

ROOT = Path(__file__).resolve().parents[2]
ADDRESS = Address(name="Ada", line1="1 Main St", city="Berlin", postal_code="10115", country="DE")


@contextlib.contextmanager
def fresh_store(kind: str, schemas: SchemaPool | None) -> Iterator[str]:
    """A URL of an empty store of ``kind``, removed (SQLite) or emptied (PostgreSQL: see
    ``pg_reused_url``) afterwards: one per hypothesis example."""
    if kind == "sqlite":
        folder = tempfile.mkdtemp(prefix="eventshop-rs-")
        try:
            yield f"sqlite:///{folder}/shop.db"
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    assert schemas is not None
    url = schemas.take()
    try:
        yield url
    finally:
        schemas.give_back(url, "a hypothesis example")


def event_count(shop: Shop) -> int:
    """How many events the log holds (positions may have gaps on PostgreSQL)."""
    return len(shop.recorder.select_notifications(None, 10**7))


def applied(read_side: ReadSide) -> dict[str, int]:
    """Events each read model has committed, summed over every worker that ever fed it."""
    return {s["name"]: s["events_applied"] for s in read_side.status()}


# --- a small language of shop commands -----------------------------------------------------

SKUS = ("A-1", "B-2", "C-3")
CUSTOMERS = ("ann", "bob")
PRICES = ("1.00", "2.50", "9.99", "12.34")


class World:
    """Runs abstract commands against a shop; a refused command just records nothing."""

    def __init__(self, shop: Shop) -> None:
        self.shop = shop
        self.carts: list[Any] = []
        self.orders: list[Any] = []

    def run(self, command: tuple[Any, ...]) -> None:
        name, *args = command
        with contextlib.suppress(DomainError):
            getattr(self, name)(*args)

    def add_product(self, sku: str, price: str) -> None:
        self.shop.add_product(sku, f"Product {sku}", price)

    def change_product(self, sku: str, name: str | None, price: str | None) -> None:
        self.shop.change_product(sku, name=name, price=price)

    def receive(self, sku: str, units: int) -> None:
        self.shop.receive_stock(sku, units, "delivery")

    def adjust(self, sku: str, delta: int) -> None:
        self.shop.adjust_stock(sku, delta, "count")

    def open_cart(self, customer: str) -> None:
        self.carts.append(self.shop.open_cart(customer).aggregate.id)

    def add_to_cart(self, cart: int, sku: str, units: int) -> None:
        self.shop.add_to_cart(self._cart(cart), sku, units)

    def set_quantity(self, cart: int, sku: str, units: int) -> None:
        self.shop.set_cart_quantity(self._cart(cart), sku, units)

    def remove(self, cart: int, sku: str) -> None:
        self.shop.remove_from_cart(self._cart(cart), sku)

    def check_out(self, cart: int) -> None:
        done = self.shop.check_out(self._cart(cart), ADDRESS, "ada@example.com")
        self.orders.append(done.aggregate.id)

    def buy(self, customer: str, lines: list[tuple[str, int]]) -> None:
        """A whole visit: open a cart, fill it, check out."""
        self.open_cart(customer)
        for sku, units in lines:
            self.run(("add_to_cart", -1, sku, units))
        self.check_out(-1)

    def pay(self, order: int) -> None:
        order_id = self._order(order)
        self.shop.pay(order_id, self.shop.order(order_id).total, "ref-1")

    def ship(self, order: int) -> None:
        self.shop.ship(self._order(order), "DHL", "TRACK-1")

    def deliver(self, order: int) -> None:
        self.shop.deliver(self._order(order))

    def cancel(self, order: int) -> None:
        self.shop.cancel(self._order(order), "changed my mind")

    def _cart(self, index: int) -> Any:
        if not self.carts:
            raise NotThere("no cart yet")
        return self.carts[index % len(self.carts)]

    def _order(self, index: int) -> Any:
        if not self.orders:
            raise NotThere("no order yet")
        return self.orders[index % len(self.orders)]

    def seed(self, rounds: int) -> None:
        """A busy shop: products, stock, and many carts checked out and moved along."""
        for sku in SKUS:
            self.run(("add_product", sku, "2.50"))
            self.run(("receive", sku, 1000))
        for i in range(rounds):
            self.run(("open_cart", CUSTOMERS[i % 2]))
            self.run(("add_to_cart", -1, SKUS[i % 3], 1 + i % 3))
            self.run(("add_to_cart", -1, SKUS[(i + 1) % 3], 1))
            self.run(("check_out", -1))
            for step in (("pay", -1), ("ship", -1)) if i % 3 else (("cancel", -1),):
                self.run(step)
            if i % 50 == 49:
                for sku in SKUS:
                    self.run(("receive", sku, 200))


class NotThere(DomainError):
    """The command names a cart or order that the sequence has not made yet."""


def check_against_write_side(world: World, read_side: ReadSide) -> None:
    """Each read model says what the aggregates say."""
    shop = world.shop
    for sku in SKUS:
        try:
            product, stock = shop.product(sku), shop.stock(sku)
        except DomainError:
            continue
        assert read_side.catalogue.get_product(sku)["price"] == str(product.price)
        assert read_side.catalogue.get_product(sku)["available"] == stock.available
        level = read_side.stock.get_stock(sku)
        assert (level["on_hand"], level["reserved"]) == (stock.on_hand, stock.reserved)
    for cart_id in world.carts:
        cart, view = shop.cart(cart_id), read_side.carts.get_cart(cart_id)
        assert view["status"] == cart.status
        assert view["total"] == str(cart.total)
        assert {line["sku"]: line["quantity"] for line in view["lines"]} == {
            sku: line.quantity for sku, line in cart.lines.items()
        }
    revenue = Decimal("0.00")
    for order_id in world.orders:
        order, view = shop.order(order_id), read_side.orders.get_order(order_id)
        assert (view["status"], view["total"]) == (order.status, str(order.total))
        assert [h["status"] for h in view["status_history"]][-1] == order.status
        if order.status != CANCELLED:
            revenue += order.total
    assert read_side.sales.sales_report()["totals"]["revenue"] == str(revenue)


# --- worker processes ----------------------------------------------------------------------


def spawn_worker(url: str, *args: str) -> subprocess.Popen[bytes]:
    """``python -m projections URL``, as ``eventshop worker`` would run."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "projections", url, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition`` until it is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``: its children, theirs, and so on."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found: set[int] = set()
    level = {pid}
    while level:
        level = {child for child, parent in parents.items() if parent in level} - found
        found |= level
    return found


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
