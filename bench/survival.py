"""What the crash tests and the soak share: the shop's processes, run as an operator runs
them; mixed client traffic whose every acknowledged command is recorded; and the checks
that a crash lost or doubled none of them.

Used by ``tests/test_multiprocess.py`` and ``bench/soak.py`` (``tests/test_soak.py`` runs
three of its cycles in CI). Everything goes over 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
from typer.testing import CliRunner

from api.auth import mint
from bench.common import SECRET, dumps, rebuilt
from cli.main import app as cli
from commands.service import Shop
from domain.product import Product
from domain.stock import Stock
from eventshop.bootstrap import open_auditor
from projections import ReadSide

EVENTSHOP = Path(sys.executable).with_name("eventshop")
SKUS = ("MP-1", "MP-2", "MP-3")
# Deadlines, not speed targets: each only stops a run that would otherwise hang.
START_TIMEOUT = 60.0
CATCH_UP_DEADLINE = 30.0
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


def check_verify(env: dict[str, str]) -> str:
    """``eventshop audit verify`` exits 0 on the store ``env`` names; its output.

    The CLI's own command, run in this process: a process of its own would add seconds
    of start-up to every check. It recomputes the hash chain from position 1 and compares
    it with the checkpoints kept so far (and keeps new ones).
    """
    result = CliRunner().invoke(cli, ["audit", "verify"], env=env)
    output = " ".join(result.output.split())
    assert result.exit_code == 0, f"audit verify exited {result.exit_code}: {output}"
    return output
