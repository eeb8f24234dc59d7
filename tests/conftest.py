"""Shared fixtures: real stores to test against.

Every PostgreSQL test runs in a database created for this test run (dropped at the
end) and a schema of its own, so that runs and tests never collide. PostgreSQL is
never mocked and a test that needs it never skips: if the server is down, the test
fails and says so.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from commands.service import Shop
from eventshop import bootstrap
from eventshop.settings import Settings
from eventstore.url import StoreURL

ADMIN_URL = os.environ.get(
    "EVENTSHOP_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _admin() -> psycopg.Connection:
    try:
        return psycopg.connect(StoreURL.parse(ADMIN_URL).dsn(), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        pytest.fail(
            f"PostgreSQL is not reachable at {ADMIN_URL} ({error}); start it with\n"
            "  pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """The URL of a PostgreSQL database that exists for this test run only."""
    name = f"eventshop_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with _admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base = ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with _admin() as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def pg_url(pg_database: str) -> Iterator[str]:
    """A PostgreSQL URL whose schema belongs to this test alone."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    url = f"{pg_database}?schema={schema}"
    StoreURL.parse(url).prepare()
    yield url
    with psycopg.connect(StoreURL.parse(url).dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'eventshop.db'}"


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest) -> str:
    """Each store eventshop runs on: the same test runs once on each."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_url"))


def settings_for(url: str, **overrides: object) -> Settings:
    """The shop's settings for a store, ignoring any .env file of the machine."""
    return Settings(_env_file=None, database_url=url, **overrides)  # type: ignore[call-arg]


def open_shop(url: str, **library_env: str) -> Shop:
    """The write side on ``url``, opened by the composition root as the app opens it."""
    return bootstrap.open_shop(settings_for(url), **library_env)


@pytest.fixture
def shop(store_url: str) -> Iterator[Shop]:
    app = open_shop(store_url)
    yield app
    app.close()
