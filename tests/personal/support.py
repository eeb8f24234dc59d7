"""What the personal-data tests share: a customer's data, and a search of every table of
a store for it in any encoding a column might hold it in."""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import sql

from domain.values import Address
from eventstore.url import StoreURL

ALICE_EMAIL = "alice.secret@example.org"
ALICE_ADDRESS = Address(
    name="Alice Hidden", line1="7 Quiet Lane", city="Lubeck", postal_code="23552", country="DE"
)
BOB_EMAIL = "bob.kept@example.org"
BOB_ADDRESS = Address(
    name="Bob Kept", line1="9 Open Road", city="Bremen", postal_code="28195", country="DE"
)


def alice_needles() -> list[str]:
    """What must be gone after Alice's erasure: her e-mail and each line of her address
    (the country, shared with Bob, aside)."""
    return [ALICE_EMAIL, ALICE_ADDRESS.name, ALICE_ADDRESS.line1, ALICE_ADDRESS.postal_code]


def encodings(text: str) -> list[bytes]:
    """``text`` as a stored value might hold it: UTF-8, hex (both cases), base64 (every
    alignment inside a longer base64 text, standard and URL-safe alphabets)."""
    raw = text.encode()
    found = [raw, raw.hex().encode(), raw.hex().upper().encode()]
    for shift in range(3):
        encoded = base64.b64encode(bytes(shift) + raw)
        # Drop the characters that also depend on the bytes before and after.
        core = encoded[(shift * 4 + 2) // 3 + (1 if shift else 0) :].rstrip(b"=")[:-2]
        found += [core, core.replace(b"+", b"-").replace(b"/", b"_")]
    return [f for f in found if len(f) >= 8]


def values(url: str) -> Iterator[tuple[str, str, Any]]:
    """(table, column, value) of every cell of every table of the store."""
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            tables = [
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            ]
            for table in tables:
                cursor = conn.execute(f'SELECT * FROM "{table}"')
                columns = [d[0] for d in cursor.description]
                for row in cursor:
                    yield from ((table, c, v) for c, v in zip(columns, row, strict=True))
        return
    store = StoreURL.parse(url)
    with psycopg.connect(store.dsn()) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s", (store.schema,)
            )
        ]
        for table in tables:
            cursor = conn.execute(
                sql.SQL("SELECT * FROM {}").format(sql.Identifier(store.schema, table))
            )
            columns = [d.name for d in cursor.description or ()]
            for row in cursor:
                yield from ((table, c, v) for c, v in zip(columns, row, strict=True))


def as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, dict | list):
        return json.dumps(value).encode()
    return str(value).encode()


def traces(url: str, needles: list[str]) -> list[tuple[str, str, str]]:
    """Where in the store any of ``needles`` is, in any of its :func:`encodings`."""
    patterns = [(needle, form) for needle in needles for form in encodings(needle)]
    found = []
    for table, column, value in values(url):
        cell = as_bytes(value)
        found += [(table, column, needle) for needle, form in patterns if form in cell]
    return found


def text_traces(text: str, needles: list[str]) -> list[str]:
    """Which of ``needles`` an answer's text holds, in any encoding."""
    data = text.encode()
    return [needle for needle in needles if any(form in data for form in encodings(needle))]
