"""Mixed client traffic over HTTP whose every acknowledged command is recorded, with its
request id and position, for the checks of ``bench/survival.py`` (the crash tests and the
soak). Everything goes to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

import httpx

from api.auth import mint
from bench.common import SECRET
from domain.product import Product
from domain.stock import Stock

SKUS = ("MP-1", "MP-2", "MP-3")
# A deadline, not a speed target: a request unanswered this long is given up.
GIVE_UP_AFTER = 30.0
ADDRESS = {
    "name": "Ada",
    "line1": "1 Main St",
    "city": "Berlin",
    "postal_code": "10115",
    "country": "DE",
}


# --- what was acknowledged --------------------------------------------------------------------


@dataclass(frozen=True)
class Ack:
    """A command the API acknowledged (2xx), and what the log must hold for it."""

    key: str
    kind: str
    aggregate_id: UUID
    version: int
    position: int
    events: int
    at: float


@dataclass
class Ledger:
    """What the client threads sent and what came back, shared by all of them."""

    sent: set[str] = field(default_factory=set)
    acks: list[Ack] = field(default_factory=list)
    refused: list[tuple[str, int, str]] = field(default_factory=list)
    given_up: list[str] = field(default_factory=list)
    connection_errors: int = 0
    errors: list[BaseException] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def kinds(self) -> Counter[str]:
        """Acknowledged commands by kind."""
        with self.lock:
            return Counter(ack.kind for ack in self.acks)


def http_client(base_url: str, token: str | None = None) -> httpx.Client:
    # trust_env off: loopback traffic must not go through a proxy from the environment.
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=base_url, timeout=15.0, headers=headers, trust_env=False)


class Client:
    """One client thread's HTTP client.

    Every command carries a fresh Idempotency-Key, sent as its X-Request-ID too, so that
    the key is stamped on each event as its correlation id. After a connection error the
    same request goes again with the same key: the API answers it from the key if the
    first try committed, and runs it if not.
    """

    def __init__(self, base_url: str, token: str, ledger: Ledger) -> None:
        self.http = http_client(base_url, token)
        self.ledger = ledger

    def command(
        self,
        path: str,
        body: dict[str, Any],
        kind: str,
        events: int,
        aggregate_id: UUID | None = None,
    ) -> dict[str, Any] | None:
        """POST a command; its answer if acknowledged, else None (refused or given up).

        ``events``: how many events the command stores, for :func:`check_log`.
        """
        key = uuid4().hex
        headers = {"Idempotency-Key": key, "X-Request-ID": key}
        with self.ledger.lock:
            self.ledger.sent.add(key)
        deadline = time.monotonic() + GIVE_UP_AFTER
        while True:
            try:
                response = self.http.post(path, json=body, headers=headers)
                break
            except httpx.TransportError:
                with self.ledger.lock:
                    self.ledger.connection_errors += 1
                if time.monotonic() > deadline:
                    with self.ledger.lock:
                        self.ledger.given_up.append(key)
                    return None
                time.sleep(0.1)
        if not response.is_success:
            with self.ledger.lock:
                self.ledger.refused.append((kind, response.status_code, response.text))
            return None
        answer: dict[str, Any] = response.json()
        ack = Ack(
            key=key,
            kind=kind,
            aggregate_id=aggregate_id or UUID(answer["id"]),
            version=answer["version"],
            position=answer["position"],
            events=events,
            at=time.monotonic(),
        )
        with self.ledger.lock:
            self.ledger.acks.append(ack)
        return answer

    def close(self) -> None:
        self.http.close()


# --- the traffic ------------------------------------------------------------------------------


class Traffic:
    """Mixed load over HTTP: customers open carts, add items, check out, pay, and cancel
    some orders (paid or not); staff receive stock, add products, and ship and deliver
    paid orders, racing the customers who cancel them (the loser gets a 409).

    Paid orders wait in a queue for staff, from one run of threads to the next. A run
    sends ``max_commands`` at most (visits under way are finished).
    """

    KINDS = (
        "product",
        "receipt",
        "cart",
        "item",
        "checkout",
        "payment",
        "shipment",
        "delivery",
        "cancellation",
    )

    def __init__(
        self,
        base_url: str,
        ledger: Ledger,
        skus: tuple[str, ...] = SKUS,
        max_commands: int | None = None,
    ) -> None:
        self.base_url = base_url
        self.ledger = ledger
        self.skus = skus
        self.max_commands = max_commands
        self.limit: int | None = None
        self.staff_token = mint(SECRET, "staff-1", ["staff"])
        self.paid: queue.SimpleQueue[tuple[str, int]] = queue.SimpleQueue()

    def open_shop(self, receipts: int = 1) -> None:
        """The products, each with ``receipts`` receipts of 1000 units."""
        setup = Client(self.base_url, self.staff_token, self.ledger)
        try:
            for sku in self.skus:
                self.add_product(setup, sku)
                for _ in range(receipts):
                    self.receive(setup, sku, 1000)
        finally:
            setup.close()

    @contextlib.contextmanager
    def running(self, staff: int, customers: int) -> Iterator[None]:
        """``staff`` and ``customers`` client threads, sending until the block ends; then
        each finishes what it is doing (its retries included), so nothing is in flight."""
        stop = threading.Event()
        if self.max_commands is not None:
            self.limit = len(self.ledger.sent) + self.max_commands
        clients = [Client(self.base_url, self.staff_token, self.ledger) for _ in range(staff)]
        loads: list[Callable[[Client, threading.Event], None]] = [self.staff] * staff
        for i in range(customers):
            token = mint(SECRET, f"customer-{i}", ["customer"])
            clients.append(Client(self.base_url, token, self.ledger))
            loads.append(self.customer)
        threads = [
            threading.Thread(target=self._guarded(load, client, stop))
            for client, load in zip(clients, loads, strict=True)
        ]
        for thread in threads:
            thread.start()
        try:
            yield
        finally:
            stop.set()
            for thread in threads:
                thread.join(GIVE_UP_AFTER + 20)
            for client in clients:
                client.close()

    def staff(self, client: Client, stop: threading.Event) -> None:
        """A new product first, then: ship (and deliver every other) paid order waiting,
        else receive goods, round the SKUs."""
        self.add_product(client, f"S-{uuid4().hex[:12].upper()}")
        i = 0
        while self.going(stop):
            try:
                order_id, lines = self.paid.get_nowait()
            except queue.Empty:
                self.receive(client, self.skus[i % len(self.skus)], 5)
            else:
                path = f"/api/orders/{order_id}"
                body = {"carrier": "DHL", "tracking_number": f"T-{i}"}
                # The order shipped, and each SKU's reserved units gone from stock.
                if client.command(f"{path}/shipment", body, "shipment", 1 + lines) and i % 2:
                    client.command(f"{path}/delivery", {}, "delivery", 1)
            i += 1

    def customer(self, client: Client, stop: threading.Event) -> None:
        """Visits: open a cart, add one or two products, check out; then pay (and maybe
        cancel after all), cancel, or leave the order unpaid."""
        chance = random.Random()
        while self.going(stop):
            placed = self.visit(client, chance)
            if placed is None:
                continue
            order, lines = placed
            path = f"/api/orders/{order['id']}"
            roll = chance.random()
            if roll < 0.6:
                cancel = False
                body = {"amount": order["total"], "reference": "soak"}
                if client.command(f"{path}/payment", body, "payment", 1):
                    self.paid.put((order["id"], lines))
                    cancel = chance.random() < 0.2
            else:
                cancel = roll < 0.8
            if cancel:
                # The order cancelled, and each SKU's reservation released.
                body = {"reason": "soak"}
                client.command(f"{path}/cancellation", body, "cancellation", 1 + lines)

    def going(self, stop: threading.Event) -> bool:
        return not stop.is_set() and (self.limit is None or len(self.ledger.sent) < self.limit)

    def visit(self, client: Client, chance: random.Random) -> tuple[dict[str, Any], int] | None:
        """A placed order and how many SKUs it holds, or None."""
        cart = client.command("/api/carts", {}, "cart", 1)
        if cart is None:
            return None
        skus = chance.sample(self.skus, chance.randint(1, 2))
        path = f"/api/carts/{cart['id']}"
        for sku in skus:
            item = {"sku": sku, "quantity": chance.randint(1, 2)}
            if client.command(f"{path}/items", item, "item", 1) is None:
                return None
        body = {"shipping_address": ADDRESS, "email": "ada@example.com"}
        # The order placed, the cart checked out, and one reservation per SKU.
        order = client.command(f"{path}/checkout", body, "checkout", 2 + len(skus))
        return None if order is None else (order, len(skus))

    def add_product(self, client: Client, sku: str) -> None:
        product = {"sku": sku, "name": sku, "price": "2.50"}
        # A product comes with its (empty) stock.
        client.command("/api/products", product, "product", 2, Product.create_id(sku))

    def receive(self, client: Client, sku: str, units: int) -> None:
        body = {"quantity": units, "note": "soak"}
        client.command(f"/api/stock/{sku}/receipts", body, "receipt", 1, Stock.create_id(sku))

    def _guarded(
        self, load: Callable[[Client, threading.Event], None], client: Client, stop: threading.Event
    ) -> Callable[[], None]:
        """``load`` for a thread; what it raised is kept for :func:`check_ledger`."""

        def run() -> None:
            try:
                load(client, stop)
            except BaseException as error:
                with self.ledger.lock:
                    self.ledger.errors.append(error)

        return run
