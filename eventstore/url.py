"""Which event store to use, from one URL: SQLite file, PostgreSQL, or in memory.

The URL is parsed once into a :class:`StoreURL`, a value the rest of the code passes
around; it gives the environment eventsourcing's persistence modules read, so the
application code path is the same for every store.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, quote, unquote, urlsplit

import psycopg
from psycopg import sql

DEFAULT_URL = "sqlite:///var/eventshop.db"

# Query parameters of a postgresql:// URL that map onto eventsourcing settings.
POSTGRES_OPTIONS = {
    "schema": "POSTGRES_SCHEMA",
    "pool_size": "POSTGRES_POOL_SIZE",
    "max_overflow": "POSTGRES_MAX_OVERFLOW",
    "lock_timeout": "POSTGRES_LOCK_TIMEOUT",
    "connect_timeout": "POSTGRES_CONNECT_TIMEOUT",
    "statement_timeout": "POSTGRES_STATEMENT_TIMEOUT",
}
# The library's PostgreSQL persistence, with its waits bounded (eventstore/postgres.py).
POSTGRES_MODULE = "eventstore.postgres:Factory"

Kind = Literal["memory", "sqlite", "postgres"]


@dataclass(frozen=True)
class StoreURL:
    """Where the event store and the read models beside it live, parsed once.

    ``sqlite:///var/shop.db`` (relative) or ``sqlite:////abs/shop.db``;
    ``postgresql://user:pass@host:port/db?schema=s&pool_size=n``; ``memory://``.
    """

    kind: Kind
    path: str = ""
    dbname: str = "postgres"
    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"
    password: str = field(default="", repr=False)
    options: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, url: str) -> StoreURL:
        """The store a URL names; ValueError for anything else."""
        parts = urlsplit(url)
        if parts.scheme == "memory":
            return cls("memory")
        if parts.scheme == "sqlite":
            path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
            if not path:
                raise ValueError(f"{url!r} names no SQLite file")
            return cls("sqlite", path=path)
        if parts.scheme in ("postgresql", "postgres"):
            options = []
            for key, values in parse_qs(parts.query).items():
                if key not in POSTGRES_OPTIONS:
                    raise ValueError(f"unknown option {key!r} in database URL")
                options.append((key, values[-1]))
            try:
                port = parts.port or 5432
            except ValueError as error:
                raise ValueError(f"bad port in database URL: {error}") from None
            return cls(
                "postgres",
                dbname=unquote(parts.path.lstrip("/")) or "postgres",
                host=parts.hostname or "127.0.0.1",
                port=port,
                user=unquote(parts.username or "postgres"),
                password=unquote(parts.password or ""),
                options=tuple(sorted(options)),
            )
        raise ValueError(
            f"unsupported database URL {url!r}: use sqlite://, postgresql:// or memory://"
        )

    @property
    def is_postgres(self) -> bool:
        return self.kind == "postgres"

    @property
    def is_sqlite(self) -> bool:
        return self.kind == "sqlite"

    @property
    def is_memory(self) -> bool:
        return self.kind == "memory"

    @property
    def schema(self) -> str:
        """The PostgreSQL schema the store's tables live in (``public`` unless named)."""
        return dict(self.options).get("schema", "public")

    def option(self, name: str) -> str | None:
        return dict(self.options).get(name)

    def with_options(self, **options: str) -> StoreURL:
        """The same store with these URL options set (``schema``, ``pool_size``, ...)."""
        unknown = set(options) - set(POSTGRES_OPTIONS)
        if unknown:
            raise ValueError(f"unknown option(s) {sorted(unknown)}")
        merged = {**dict(self.options), **options}
        return dataclasses.replace(self, options=tuple(sorted(merged.items())))

    def with_password(self, password: str) -> StoreURL:
        return dataclasses.replace(self, password=password)

    def library_env(self) -> dict[str, str]:
        """The environment eventsourcing's persistence modules read for this store."""
        if self.kind == "memory":
            return {}
        if self.kind == "sqlite":
            return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": self.path}
        env = {
            "PERSISTENCE_MODULE": POSTGRES_MODULE,
            "POSTGRES_DBNAME": self.dbname,
            "POSTGRES_HOST": self.host,
            "POSTGRES_PORT": str(self.port),
            "POSTGRES_USER": self.user,
            "POSTGRES_PASSWORD": self.password,
        }
        env.update((POSTGRES_OPTIONS[key], value) for key, value in self.options)
        return env

    def dsn(self) -> str:
        """The libpq connection string of a PostgreSQL store (without our own options)."""
        if self.kind != "postgres":
            raise ValueError(f"{self} is not a PostgreSQL store")
        return psycopg.conninfo.make_conninfo(
            dbname=self.dbname,
            host=self.host,
            port=str(self.port),
            user=self.user,
            password=self.password or None,
        )

    def prepare(self) -> None:
        """Make sure the place the store writes to exists (SQLite folder, PostgreSQL schema)."""
        if self.kind == "sqlite":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        elif self.kind == "postgres" and (schema := self.option("schema")):
            with psycopg.connect(self.dsn(), autocommit=True, connect_timeout=10) as conn:
                conn.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
                )

    def __str__(self) -> str:
        """The URL, with any password masked: fit for logs and messages."""
        if self.kind == "memory":
            return "memory://"
        if self.kind == "sqlite":
            return f"sqlite:///{quote(self.path)}"
        secret = ":***" if self.password else ""
        query = "&".join(f"{key}={quote(value)}" for key, value in self.options)
        return (
            f"postgresql://{quote(self.user, safe='')}{secret}@{self.host}:{self.port}/"
            f"{quote(self.dbname, safe='')}" + (f"?{query}" if query else "")
        )

    def url(self) -> str:
        """The full URL, password included (to hand to another process)."""
        if self.kind != "postgres" or not self.password:
            return str(self)
        masked = str(self)
        return masked.replace(":***@", f":{quote(self.password, safe='')}@", 1)


def store_url(value: object) -> StoreURL:
    """A StoreURL from a URL string (or a StoreURL, unchanged): for settings and callers."""
    if isinstance(value, StoreURL):
        return value
    if isinstance(value, str):
        return StoreURL.parse(value)
    raise ValueError(f"a database URL must be a string, not {type(value).__name__}")
