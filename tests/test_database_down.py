"""With the database unreachable, every call answers in time; once it is back, the shop
works again without a restart (issue 14, reproduction 2).

The shop connects as a role of its own, which the test then shuts out: no new
connection allowed (CONNECTION LIMIT 0) and its sessions ended, as a server that went
away would end them. Other tests, on other roles, see nothing of it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql

from api.app import create_app
from eventstore.url import StoreURL
from tests.api.conftest import ALICE, SECRET, problem_of
from tests.conftest import settings_for


@pytest.fixture
def role_url(pg_reused_url: str) -> Iterator[tuple[str, Any]]:
    """The test's store, reached as a login role of its own; and a function that shuts
    that role out (``shut(True)``) or lets it in again (``shut(False)``)."""
    store = StoreURL.parse(pg_reused_url)
    role = f"eventshop_down_{uuid.uuid4().hex[:10]}"
    name = sql.Identifier(role)

    def admin(statement: sql.Composable, *params: Any) -> None:
        with psycopg.connect(store.dsn(), autocommit=True) as conn:
            conn.execute(statement, params)

    # A member of the tables' owner, so that it may run the shop's start-up DDL on them.
    admin(sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(name, sql.Identifier(store.user)))

    def shut(out: bool) -> None:
        limit = sql.SQL("0" if out else "-1")
        admin(sql.SQL("ALTER ROLE {} CONNECTION LIMIT {}").format(name, limit))
        if out:
            admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", role)

    try:
        yield pg_reused_url.replace(f"//{store.user}@", f"//{role}@", 1), shut
    finally:
        shut(True)  # its sessions end before it can be dropped
        admin(sql.SQL("DROP OWNED BY {}").format(name))
        admin(sql.SQL("DROP ROLE {}").format(name))


def timed(call: Any, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    started = time.monotonic()
    answer = call(*args, **kwargs)
    return time.monotonic() - started, answer


@pytest.mark.slow  # about 3.5 s: one wait for a connection, and the read models' return
def test_with_the_database_down_calls_answer_503_in_time_and_the_shop_comes_back(
    role_url: tuple[str, Any], tmp_path: Path
) -> None:
    url, shut = role_url
    settings = settings_for(url, jwt_secret=SECRET, var_dir=tmp_path)
    with TestClient(create_app(settings)) as client:
        shop = client.app.state.shop  # type: ignore[attr-defined]
        before = client.post("/api/carts", json={}, headers=ALICE)
        assert before.status_code == 201, before.text
        shut(True)

        # A command, a query and readiness at once: none waits on another's thread.
        answers: dict[str, tuple[float, Any]] = {}
        calls = {
            "command": lambda: client.post("/api/carts", json={}, headers=ALICE),
            "query": lambda: client.get("/api/orders", headers=ALICE),
            "ready": lambda: client.get("/health/ready"),
        }
        threads = [
            threading.Thread(target=lambda k=k, c=c: answers.__setitem__(k, timed(c)))
            for k, c in calls.items()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        for what in ("command", "query"):
            seconds, response = answers[what]
            assert seconds < 5, (what, seconds)
            problem_of(response, 503)
            assert int(response.headers["Retry-After"]) > 0
        seconds, response = answers["ready"]
        assert seconds < 2, seconds
        problem_of(response, 503)

        shut(False)
        back = time.monotonic() + 5
        while (after := client.post("/api/carts", json={}, headers=ALICE)).status_code == 503:
            assert time.monotonic() < back, "no command succeeded within 5 s of the database"
            time.sleep(0.05)
        assert after.status_code == 201, after.text
        # The read models resumed by themselves: a query waits for the new cart and sees it.
        cart = client.get(
            f"/api/carts/{after.json()['id']}",
            params={"min_position": after.json()["position"]},
            headers=ALICE,
        )
        assert cart.status_code == 200, cart.text
        assert client.get("/health/ready").status_code == 200
        # Nothing acknowledged was lost.
        for acknowledged in (before, after):
            assert shop.cart(uuid.UUID(acknowledged.json()["id"])).customer_id == "alice"
