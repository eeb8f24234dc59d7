"""Auditors' fixtures: a shop with some history on each real store, and a way to tamper.

Tampering goes straight to the database with SQL, as an attacker with database access
would, bypassing the application entirely.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from psycopg import sql

from commands.service import Shop
from domain.values import Address
from eventshop.bootstrap import open_auditor
from eventstore.causes import caused_by
from eventstore.links import LINKS_TABLE, link
from eventstore.url import StoreURL
from projections.audit.auditor import Auditor
from projections.audit.receipts import Signer, trusted
from tests.conftest import open_shop

ADDRESS = Address("Ada Lovelace", "12 Analytical Row", "London", "N1 7AA", "GB")


@pytest.fixture(params=["sqlite", "postgres"])
def audit_url(request: pytest.FixtureRequest) -> str:
    """Each persistent store: every audit test runs on SQLite and on PostgreSQL."""
    fixture = "sqlite_url" if request.param == "sqlite" else "pg_reused_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
def shop(audit_url: str) -> Iterator[Shop]:
    app = open_shop(audit_url)
    yield app
    app.close()


@dataclass
class History:
    """The ids of the aggregates :func:`make_history` touched."""

    cart_id: UUID
    order_id: UUID
    stock_id: UUID
    product_id: UUID


def make_history(shop: Shop) -> History:
    """About twenty events across every aggregate type, each caused by someone."""
    with caused_by("staff-1", "staff", "req-catalogue"):
        shop.add_product("MUG-1", "Mug", "12.50")
        shop.add_product("TEA-1", "Tea", "4.00")
        shop.receive_stock("MUG-1", 10, "first delivery")
        shop.receive_stock("TEA-1", 50)
        shop.change_product("MUG-1", price="13.00")
    with caused_by("alice", "customer", "req-cart"):
        cart = shop.open_cart("alice").aggregate
        shop.add_to_cart(cart.id, "MUG-1", 2, owner="alice")
        shop.add_to_cart(cart.id, "TEA-1", 3, owner="alice")
        shop.set_cart_quantity(cart.id, "TEA-1", 5, owner="alice")
        order = shop.check_out(cart.id, ADDRESS, "ada@example.com", owner="alice").aggregate
        shop.pay(order.id, order.total, "PAY-1", owner="alice")
    with caused_by("staff-2", "staff", "req-ship"):
        shop.ship(order.id, "DHL", "TRACK-1")
    return History(cart.id, order.id, shop.stock("MUG-1").id, shop.product("MUG-1").id)


@pytest.fixture
def history(shop: Shop) -> History:
    return make_history(shop)


@pytest.fixture
def auditor(shop: Shop) -> Auditor:
    return open_auditor(shop, checkpoint_every=4, batch=7)


class Tamper:
    """Change the stored events of a shop's store behind the application's back."""

    def __init__(self, shop: Shop, url: str) -> None:
        recorder: Any = shop.recorder
        self.url = url
        self.sqlite = url.startswith("sqlite")
        self.table = recorder.events_table_name
        if not self.sqlite:
            self.schema = recorder.datastore.schema

    def _run(self, statement: str, *params: Any) -> list[Any]:
        """Run one statement; ``{t}`` is the events table and ``{p}`` its position column,
        ``{l}`` the links table."""
        if self.sqlite:
            with sqlite3.connect(self.url.removeprefix("sqlite:///")) as conn:
                query = statement.format(t=self.table, p="rowid", l=LINKS_TABLE)
                return conn.execute(query, params).fetchall()
        with psycopg.connect(StoreURL.parse(self.url).dsn(), autocommit=True) as conn:
            query = sql.SQL(statement.replace("%", "%%").replace("?", "%s")).format(
                t=sql.Identifier(self.schema, self.table),
                p=sql.Identifier("notification_id"),
                l=sql.Identifier(self.schema, LINKS_TABLE),
            )
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def state(self, position: int) -> bytes:
        return bytes(self._run("SELECT state FROM {t} WHERE {p} = ?", position)[0][0])

    def set_state(self, position: int, state: bytes) -> None:
        self._run("UPDATE {t} SET state = ? WHERE {p} = ?", state, position)

    def flip_byte(self, position: int, index: int) -> None:
        state = bytearray(self.state(position))
        state[index] ^= 0x01
        self.set_state(position, bytes(state))

    def delete(self, position: int) -> None:
        self._run("DELETE FROM {t} WHERE {p} = ?", position)

    def set_topic(self, position: int) -> None:
        self._run("UPDATE {t} SET topic = topic || 'x' WHERE {p} = ?", position)

    def set_version(self, position: int) -> None:
        self._run(
            "UPDATE {t} SET originator_version = originator_version + 100 WHERE {p} = ?", position
        )

    def set_aggregate(self, position: int) -> None:
        other = uuid4()
        self._run(
            "UPDATE {t} SET originator_id = ? WHERE {p} = ?",
            other.hex if self.sqlite else other,
            position,
        )

    def insert_copy(self, position: int) -> int:
        """Insert a copy of the event at ``position`` (as a later version) at the end."""
        self._run(
            "INSERT INTO {t} (originator_id, originator_version, topic, state)"
            " SELECT originator_id, originator_version + 1000, topic, state FROM {t}"
            " WHERE {p} = ?",
            position,
        )
        return int(self._run("SELECT max({p}) FROM {t}")[0][0])

    def delete_link(self, position: int) -> None:
        self._run("DELETE FROM {l} WHERE position = ?", position)

    def relink(self, auditor: Auditor, after: int) -> None:
        """Recompute every link after ``after`` over the events as they are now, as an
        attacker with the database can."""
        previous = auditor.links.at_or_before(after)
        head = previous[1] if previous else bytes(32)
        self._run("DELETE FROM {l} WHERE position > ?", after)
        for event in auditor.stream(after):
            head = link(
                head,
                event.id,
                event.originator_id,
                event.originator_version,
                event.topic,
                event.state,
            )
            self._run("INSERT INTO {l} (position, link) VALUES (?, ?)", event.id, head)

    def swap(self, first: int, second: int) -> None:
        """Exchange the log positions of two events (through a free position)."""
        spare = 10**9
        self._run("UPDATE {t} SET {p} = ? WHERE {p} = ?", spare, first)
        self._run("UPDATE {t} SET {p} = ? WHERE {p} = ?", first, second)
        self._run("UPDATE {t} SET {p} = ? WHERE {p} = ?", second, spare)


@pytest.fixture
def tamper(shop: Shop, audit_url: str) -> Tamper:
    return Tamper(shop, audit_url)


SIGNER = Signer(Ed25519PrivateKey.generate())
KEYS: dict[str, Ed25519PublicKey] = trusted([SIGNER.public])


def contents(url: str) -> dict[str, list[Any]]:
    """Every row of every table of the store, to show that something wrote nothing."""
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            names = [
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            ]
            return {n: sorted(map(repr, conn.execute(f'SELECT * FROM "{n}"'))) for n in names}
    store = StoreURL.parse(url)
    with psycopg.connect(store.dsn()) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s", (store.schema,)
            )
        ]
        return {
            n: sorted(
                map(
                    repr,
                    conn.execute(
                        sql.SQL("SELECT * FROM {}").format(sql.Identifier(store.schema, n))
                    ),
                )
            )
            for n in names
        }
