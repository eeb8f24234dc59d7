"""Fixtures of the read-side tests: every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest

from tests.projections.support import fresh_store


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest) -> str:
    """An empty store for one test (the suite's ``sqlite_url`` / ``pg_reused_url``)."""
    fixture = "sqlite_url" if request.param == "sqlite" else "pg_reused_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def new_store(request: pytest.FixtureRequest) -> Callable[[], AbstractContextManager[str]]:
    """Makes a fresh, empty store per call: one per hypothesis example."""
    schemas = request.getfixturevalue("pg_schemas") if request.param == "postgres" else None
    return lambda: fresh_store(str(request.param), schemas)
