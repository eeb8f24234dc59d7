"""Which event store to use, from one URL: SQLite file, PostgreSQL, or in memory.

The URL is turned into the environment that eventsourcing's persistence modules read,
so the application code path is the same for every store.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import psycopg
from psycopg import sql

DEFAULT_URL = "sqlite:///var/eventshop.db"

# Query parameters of a postgresql:// URL that map onto eventsourcing settings.
_POSTGRES_OPTIONS = {
    "schema": "POSTGRES_SCHEMA",
    "pool_size": "POSTGRES_POOL_SIZE",
    "max_overflow": "POSTGRES_MAX_OVERFLOW",
    "lock_timeout": "POSTGRES_LOCK_TIMEOUT",
    "connect_timeout": "POSTGRES_CONNECT_TIMEOUT",
}


def store_env(url: str) -> dict[str, str]:
    """The eventsourcing environment for a database URL.

    ``sqlite:///var/shop.db`` (relative) or ``sqlite:////abs/shop.db``;
    ``postgresql://user:pass@host:port/db?schema=s&pool_size=n``; ``memory://``.
    """
    parts = urlsplit(url)
    if parts.scheme == "memory":
        return {}
    if parts.scheme == "sqlite":
        path = unquote(parts.path[1:]) if parts.path.startswith("/") else unquote(parts.path)
        if not path:
            raise ValueError(f"{url!r} names no SQLite file")
        return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": path}
    if parts.scheme in ("postgresql", "postgres"):
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": unquote(parts.path.lstrip("/")) or "postgres",
            "POSTGRES_HOST": parts.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(parts.port or 5432),
            "POSTGRES_USER": unquote(parts.username or "postgres"),
            "POSTGRES_PASSWORD": unquote(parts.password or ""),
        }
        for key, values in parse_qs(parts.query).items():
            if key not in _POSTGRES_OPTIONS:
                raise ValueError(f"unknown option {key!r} in database URL")
            env[_POSTGRES_OPTIONS[key]] = values[-1]
        return env
    raise ValueError(f"unsupported database URL {url!r}: use sqlite://, postgresql:// or memory://")


def prepare(url: str) -> None:
    """Make sure the place the store writes to exists (SQLite folder, PostgreSQL schema)."""
    env = store_env(url)
    if env.get("PERSISTENCE_MODULE") == "eventsourcing.sqlite":
        Path(env["SQLITE_DBNAME"]).parent.mkdir(parents=True, exist_ok=True)
    elif schema := env.get("POSTGRES_SCHEMA"):
        with psycopg.connect(postgres_dsn(url), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))


def postgres_dsn(url: str) -> str:
    """The libpq connection string of a postgresql:// URL (without our own options)."""
    env = store_env(url)
    return psycopg.conninfo.make_conninfo(
        dbname=env["POSTGRES_DBNAME"],
        host=env["POSTGRES_HOST"],
        port=env["POSTGRES_PORT"],
        user=env["POSTGRES_USER"],
        password=env["POSTGRES_PASSWORD"] or None,
    )
