"""Reading the log never runs DDL: only ``open_auditor`` creates the checkpoints table.

On PostgreSQL, an event trigger on ``ddl_command_start`` refuses every DDL statement in
the test's database while the auditor is read through every method and route. It fires
before the statement runs, so even a ``CREATE TABLE IF NOT EXISTS`` of a table that
exists is refused: the trap is shown to work on exactly that before it is trusted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import psycopg
import pytest
from eventsourcing.persistence import ProgrammingError
from fastapi.testclient import TestClient
from psycopg import sql

from api.app import create_app
from api.auth import mint
from api.routers.audit import live_events
from eventshop.bootstrap import open_auditor
from eventstore.url import StoreURL
from projections.audit.auditor import Auditor
from projections.audit.chain import chain_head, read_export
from tests.audit.conftest import make_history
from tests.conftest import open_shop, settings_for

SECRET = "test-secret-of-the-no-ddl-test-0123456789"
AUDITOR = {"Authorization": f"Bearer {mint(SECRET, 'audit-1', ['auditor'])}"}


@contextmanager
def refusing_ddl(url: str) -> Iterator[None]:
    """Inside the block, any DDL in the database of ``url`` fails with "DDL while reading".

    The database is this test run's own (tests/conftest.py), so nothing else is caught.
    """
    store = StoreURL.parse(url)
    function = sql.Identifier(store.schema, "refuse_ddl")
    trigger = sql.Identifier(f"refuse_ddl_{store.schema}")
    with psycopg.connect(store.dsn(), autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "CREATE FUNCTION {}() RETURNS event_trigger LANGUAGE plpgsql AS"
                " $$ BEGIN RAISE EXCEPTION 'DDL while reading: %', tg_tag; END $$"
            ).format(function)
        )
        conn.execute(
            sql.SQL("CREATE EVENT TRIGGER {} ON ddl_command_start EXECUTE FUNCTION {}()").format(
                trigger, function
            )
        )
    try:
        yield
    finally:
        # Event triggers do not fire for commands on event triggers: this always runs.
        with psycopg.connect(store.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP EVENT TRIGGER {}").format(trigger))
            conn.execute(sql.SQL("DROP FUNCTION {}()").format(function))


def test_reading_the_log_runs_no_ddl(pg_url: str, tmp_path: Path) -> None:
    shop = open_shop(pg_url)
    try:
        history = make_history(shop)
        # Opening is where tables are made: the auditor's (and the app's) before the trap.
        auditor = open_auditor(shop, checkpoint_every=4, batch=7)
        settings = settings_for(pg_url, jwt_secret=SECRET, var_dir=tmp_path, run_projections=False)
        app = create_app(settings, shop=shop)
        with TestClient(app) as client, refusing_ddl(pg_url):
            with pytest.raises(ProgrammingError, match="DDL while reading: CREATE TABLE"):
                auditor.create_tables()  # IF NOT EXISTS, of a table that exists

            # Making an Auditor runs none either.
            fresh = Auditor(shop.recorder, shop.mapper, checkpoint_every=4, batch=7)
            for reader in (auditor, fresh):
                assert reader.head() == 19
                assert len(list(reader.stream())) == 19
                assert reader.events(limit=5).next_cursor == "5"
                where = reader.log_filter("ItemAdded", history.cart_id)
                assert [i["type"] for i in reader.events(where=where).items] == [
                    "Cart.ItemAdded",
                    "Cart.ItemAdded",
                ]
                cart = reader.history(history.cart_id)
                assert len(cart) == 5
                assert reader.state(history.cart_id, version=2)["version"] == 2
                assert reader.state(history.cart_id, at=cart[2]["timestamp"])["version"] == 3
                digest = reader.digest()
                assert chain_head(read_export(reader.export()))[1].hex() == digest.head
                assert reader.verify({}, digest.head, digest.upto).ok
                kept = reader.checkpoint()
                assert kept is not None and kept.position == 16

            # Every read route of the app.
            shop.receive_stock("MUG-1", 1)  # a write: an INSERT, no DDL
            base = "/api/audit"
            cart_url = f"{base}/aggregates/{history.cart_id}"
            first = client.get(f"{base}/events", params={"limit": 10}, headers=AUDITOR).json()
            moment = first["items"][-1]["timestamp"]  # position 10: the cart exists
            for path, params in [
                (f"{base}/events", {"cursor": first["next_cursor"]}),
                (f"{base}/events", {"type": "Order.Paid", "from": moment, "to": moment}),
                (f"{base}/events", {"aggregate_id": str(history.order_id)}),
                (f"{cart_url}/events", {}),
                (f"{cart_url}/state", {}),
                (f"{cart_url}/state", {"version": 2}),
                (f"{cart_url}/state", {"at": moment}),
                (f"{base}/digest", {}),
                (f"{base}/digest", {"upto": 5}),
                (f"{base}/receipts", {}),
                (f"{base}/verify", {}),
                (f"{base}/public-key", {}),
            ]:
                response = client.get(path, params=params, headers=AUDITOR)
                assert response.status_code == 200, (path, params, response.text)
            exported = client.get(f"{base}/export", headers=AUDITOR).text.splitlines()
            assert [json.loads(line)["position"] for line in exported] == list(range(1, 21))

            # The live feed, as its route runs it.
            async def take(count: int) -> list[str]:
                feed = live_events(auditor, 17, poll_seconds=0.05)
                got = []
                with anyio.fail_after(10):
                    async for message in feed:
                        got.append(message["id"])
                        if len(got) == count:
                            break
                await feed.aclose()
                return got

            assert anyio.run(take, 3) == ["18", "19", "20"]
            assert auditor.checkpoint() == fresh.checkpoint()
            assert auditor.verify({}).status == "unanchored"
    finally:
        shop.close()
