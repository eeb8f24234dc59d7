"""SIGKILL of the server while it writes batches of saves (group commit), again and again.

One ``eventshop serve`` (read models fed in-process) takes concurrent commands from many
clients, so that its saves are written in shared transactions; it is killed with SIGKILL
at a random moment, restarted on the same port, and killed again, ROUNDS times (5 here;
``EVENTSHOP_KILL_ROUNDS=20`` for a longer run). Clients retry a command whose connection
broke with the same Idempotency-Key, as a client should. Checked at the end: every
acknowledged command's events are in the log exactly once, no request was executed
twice, and the read models equal a rebuild from the log.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from functools import partial
from pathlib import Path

import pytest

from api.auth import mint
from domain.product import Product
from domain.stock import Stock
from tests.projections.support import opened
from tests.test_multiprocess import (
    EVENTSHOP,
    SECRET,
    SKUS,
    START_TIMEOUT,
    Client,
    Ledger,
    Processes,
    answered,
    check_log,
    check_read_models,
    customer_load,
    free_port,
    guarded,
    http_client,
    running,
    staff_load,
    wait_until,
)

ROUNDS = int(os.environ.get("EVENTSHOP_KILL_ROUNDS", "5"))
STAFF_CLIENTS = 8
CUSTOMER_CLIENTS = 4


@pytest.mark.slow
def test_acknowledged_commands_survive_sigkills_during_group_commits(
    pg_url: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "EVENTSHOP_DATABASE_URL": pg_url,
        "EVENTSHOP_JWT_SECRET": SECRET,
        # Small pools, as on a small database server: the test runs beside others.
        "EVENTSHOP_DATABASE_POOL_SIZE": "2",
        "EVENTSHOP_DATABASE_MAX_OVERFLOW": "4",
        "EVENTSHOP_LOG_LEVEL": "WARNING",
    }
    subprocess.run(
        [str(EVENTSHOP), "migrate"], env=env, cwd=tmp_path, check=True, timeout=START_TIMEOUT
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    staff = mint(SECRET, "staff-1", ["staff"])
    ledger = Ledger()
    chance = random.Random()
    with (
        running(Processes(env, tmp_path)) as processes,
        opened(pg_url) as (shop, read_side),
        http_client(base, staff) as probe,
    ):

        def serve(name: str) -> subprocess.Popen[bytes]:
            server = processes.start(name, "serve", "--port", str(port))
            wait_until(lambda: answered(probe, "/health/ready"), START_TIMEOUT, "ready API")
            return server

        server = serve("serve-0")
        setup = Client(base, staff, ledger)
        for sku in SKUS:
            product = {"sku": sku, "name": sku, "price": "2.50"}
            setup.command("/api/products", product, "product", 2, Product.create_id(sku))
            body = {"quantity": 1000, "note": "opening stock"}
            setup.command(f"/api/stock/{sku}/receipts", body, "receipt", 1, Stock.create_id(sku))
        setup.close()

        stop = threading.Event()
        clients = [Client(base, staff, ledger) for _ in range(STAFF_CLIENTS)] + [
            Client(base, mint(SECRET, f"customer-{i}", ["customer"]), ledger)
            for i in range(CUSTOMER_CLIENTS)
        ]
        loads = [staff_load] * STAFF_CLIENTS + [customer_load] * CUSTOMER_CLIENTS
        threads = [
            threading.Thread(target=guarded(ledger, partial(load, client, stop)))
            for client, load in zip(clients, loads, strict=True)
        ]
        for thread in threads:
            thread.start()
        acked_before_kill = []
        try:
            for round_ in range(1, ROUNDS + 1):
                time.sleep(chance.uniform(0.5, 1.5))
                acked_before_kill.append(len(ledger.acks))
                os.kill(server.pid, signal.SIGKILL)
                assert server.wait(10) == -signal.SIGKILL
                server = serve(f"serve-{round_}")
            time.sleep(1.0)
        finally:
            stop.set()
            for thread in threads:
                thread.join(60)
            for client in clients:
                client.close()

        print(
            f"\n{ROUNDS} SIGKILLs: {len(ledger.acks)} commands acknowledged"
            f" ({acked_before_kill} before each kill), {len(ledger.refused)} refused,"
            f" {ledger.connection_errors} connection errors retried"
        )
        assert not ledger.errors, ledger.errors
        assert not ledger.given_up
        assert {status for _, status, _ in ledger.refused} <= {409}, ledger.refused
        # The load really ran between the kills, not only before the first.
        assert len(set(acked_before_kill)) == ROUNDS, acked_before_kill
        check_log(shop, ledger)
        check_read_models(shop, read_side, pg_url)
