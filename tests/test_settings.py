"""The one settings object and the store URL it parses once."""

from __future__ import annotations

import threading
import time
import uuid

import psycopg
import pytest
from pydantic import ValidationError

from domain.errors import Busy
from eventshop import bootstrap
from eventshop.settings import Settings
from eventstore.url import StoreURL

AWKWARD = "p@ss:w/rd#1"


def test_a_sqlite_url_names_a_file_relative_or_absolute() -> None:
    assert StoreURL.parse("sqlite:///var/shop.db").path == "var/shop.db"
    assert StoreURL.parse("sqlite:////tmp/shop.db").path == "/tmp/shop.db"
    assert StoreURL.parse("sqlite:////tmp/shop.db").library_env() == {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": "/tmp/shop.db",
    }
    assert str(StoreURL.parse("sqlite:///var/shop.db")) == "sqlite:///var/shop.db"


def test_a_postgres_url_gives_the_library_its_settings() -> None:
    store = StoreURL.parse("postgresql://shop:secret@db.example:6543/orders?schema=s1&pool_size=9")
    assert store.is_postgres and store.schema == "s1"
    env = store.library_env()
    assert env["POSTGRES_DBNAME"] == "orders"
    assert (env["POSTGRES_HOST"], env["POSTGRES_PORT"]) == ("db.example", "6543")
    assert (env["POSTGRES_USER"], env["POSTGRES_PASSWORD"]) == ("shop", "secret")
    assert (env["POSTGRES_SCHEMA"], env["POSTGRES_POOL_SIZE"]) == ("s1", "9")


def test_the_password_never_shows_in_the_text_of_a_url() -> None:
    store = StoreURL.parse("postgresql://shop:secret@db:5432/orders?schema=s1")
    assert "secret" not in str(store) and "secret" not in repr(store)
    assert str(store) == "postgresql://shop:***@db:5432/orders?schema=s1"
    # The full URL, for another process, reads back as the same store.
    assert StoreURL.parse(store.url()) == store


@pytest.mark.parametrize(
    "url",
    [
        "mysql://db/x",
        "sqlite://",
        "postgresql://db/x?colour=red",
        "postgresql://db:port/x",
        "nonsense",
    ],
)
def test_a_url_that_names_no_store_is_refused(url: str) -> None:
    with pytest.raises(ValueError):
        StoreURL.parse(url)


def test_settings_refuse_a_bad_database_url() -> None:
    with pytest.raises(ValidationError, match="unsupported database URL"):
        Settings(_env_file=None, database_url="mysql://db/x")  # type: ignore[call-arg]


def test_settings_read_the_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTSHOP_DATABASE_URL", "postgresql://shop@db:5432/orders?schema=x")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.database_url == StoreURL.parse("postgresql://shop@db:5432/orders?schema=x")


def test_a_password_kept_apart_may_hold_any_character(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTSHOP_DATABASE_URL", "postgresql://eventshop@postgres:5432/eventshop")
    monkeypatch.setenv("EVENTSHOP_DATABASE_PASSWORD", AWKWARD)
    store = Settings(_env_file=None).database_url  # type: ignore[call-arg]
    assert store.password == AWKWARD
    assert psycopg.conninfo.conninfo_to_dict(store.dsn())["password"] == AWKWARD
    assert AWKWARD not in str(store)
    assert StoreURL.parse(store.url()).password == AWKWARD


def test_a_password_works_against_a_real_server(pg_database: str) -> None:
    """A role whose password is full of URL delimiters signs in with it (PostgreSQL)."""
    admin = StoreURL.parse(pg_database)
    role = f"eventshop_awkward_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin.dsn(), autocommit=True) as conn:
        conn.execute(f"DROP ROLE IF EXISTS {role}")
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{AWKWARD}'")
    try:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            database_url=f"postgresql://{role}@{admin.host}:{admin.port}/{admin.dbname}",
            database_password=AWKWARD,
        )
        with psycopg.connect(settings.database_url.dsn()) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (role,)
    finally:
        with psycopg.connect(admin.dsn(), autocommit=True) as conn:
            conn.execute(f"DROP ROLE IF EXISTS {role}")


def test_the_composition_root_opens_both_sides_from_one_settings_object(sqlite_url: str) -> None:
    settings = Settings(_env_file=None, database_url=sqlite_url, currency="CHF")  # type: ignore[call-arg]
    shop = bootstrap.open_shop(settings)
    read_side = bootstrap.open_read_side(settings)
    try:
        done = shop.add_product("MUG-1", "Mug", "9.00")
        assert done.aggregate.currency == "CHF"
        read_side.start()
        assert read_side.wait_for("catalogue", done.position, timeout=10)
        assert read_side.catalogue.get_product("MUG-1")["price"] == "9.00"
    finally:
        read_side.close()
        shop.close()


def test_pool_and_waits_come_from_the_settings_unless_the_url_names_them() -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url="postgresql://shop@db:5432/orders?pool_size=3&lock_timeout=9",
        database_max_overflow=7,
        database_wait_seconds=2,
        database_statement_seconds=20,
    )
    env = bootstrap.pool_env(settings)
    assert "POSTGRES_POOL_SIZE" not in env  # the URL's pool_size=3 stands
    assert env["POSTGRES_MAX_OVERFLOW"] == "7"
    # Both sides, and every worker process, open the store with the waits as its options.
    waits = bootstrap.store_of(settings).library_env()
    assert waits["POSTGRES_CONNECT_TIMEOUT"] == "2"
    assert waits["POSTGRES_LOCK_TIMEOUT"] == "9"  # the URL's
    assert waits["POSTGRES_STATEMENT_TIMEOUT"] == "20"
    assert bootstrap.pool_env(Settings(_env_file=None, database_url="memory://")) == {}  # type: ignore[call-arg]


def test_a_command_waits_for_its_turn_as_long_as_the_settings_say(sqlite_url: str) -> None:
    settings = Settings(_env_file=None, database_url=sqlite_url, command_wait_seconds=0.25)  # type: ignore[call-arg]
    shop = bootstrap.open_shop(settings)
    try:
        shop.add_product("MUG-1", "Mug", "9.00")
        stock_id = shop.stock("MUG-1").id
        held = threading.Event()
        release = threading.Event()

        def hold() -> None:
            with shop.turns.of(stock_id):
                held.set()
                release.wait(10)

        holder = threading.Thread(target=hold)
        holder.start()
        held.wait(10)
        started = time.monotonic()
        with pytest.raises(Busy):
            shop.receive_stock("MUG-1", 1)
        assert time.monotonic() - started < 5
        release.set()
        holder.join(10)
        assert shop.receive_stock("MUG-1", 1).aggregate.on_hand == 1
    finally:
        shop.close()


def test_the_waits_reach_every_connection_of_both_sides(pg_reused_url: str) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=pg_reused_url,
        database_wait_seconds=3,
        database_statement_seconds=7,
    )
    shop = bootstrap.open_shop(settings)
    read_side = bootstrap.open_read_side(settings, shop)
    try:
        for datastore in (shop.recorder.datastore, read_side.orders.view.datastore):  # type: ignore[attr-defined]
            pool = datastore.pool
            assert pool.timeout == pool.reconnect_timeout == 3
            with datastore.get_connection() as conn:
                shown = conn.execute("SHOW statement_timeout").fetchone()
                assert shown == {"statement_timeout": "7s"}
                assert conn.info.get_parameters()["connect_timeout"] == "3"
    finally:
        read_side.close()
        shop.close()
