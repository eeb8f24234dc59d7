"""The one pagination helper of the read side: limits and opaque keyset cursors.

A list answers ``{"items": [...], "next_cursor": str | None}``. The cursor is the sort
key of the last item (plus the name of the list, so that a cursor of one list is not
accepted by another), base64-encoded: clients must not build or read it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from domain.errors import InvalidValue

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


@dataclass(frozen=True)
class Keyset:
    """One page request of a list sorted by a unique key: how many, and after which key."""

    kind: str
    limit: int
    after: list[Any] | None

    @classmethod
    def parse(cls, kind: str, limit: int | None, cursor: str | None, size: int) -> Keyset:
        """Check ``limit`` and decode ``cursor`` (a key of ``size`` values); 422 if bad."""
        if limit is None:
            limit = DEFAULT_LIMIT
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise InvalidValue("limit", f"limit must be a whole number from 1 to {MAX_LIMIT}")
        return cls(kind, limit, None if cursor is None else _decode(kind, cursor, size))

    @property
    def fetch(self) -> int:
        """Rows to fetch: one more than the page, to know whether another page follows."""
        return self.limit + 1

    def page(
        self,
        rows: Sequence[dict[str, Any]],
        key: Callable[[dict[str, Any]], Sequence[Any]],
        shape: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> dict[str, Any]:
        """The answer for rows fetched with ``LIMIT self.fetch`` after ``self.after``."""
        items = rows[: self.limit]
        more = len(rows) > self.limit
        return {
            "items": [shape(row) for row in items],
            "next_cursor": _encode(self.kind, key(items[-1])) if more else None,
        }


def _encode(kind: str, key: Sequence[Any]) -> str:
    raw = json.dumps([kind, *key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(kind: str, cursor: str, size: int) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        value = None
    if (
        not isinstance(value, list)
        or len(value) != size + 1
        or value[0] != kind
        or not all(isinstance(v, str | int) and not isinstance(v, bool) for v in value[1:])
    ):
        raise InvalidValue("cursor", "cursor is not one this list handed out")
    return value[1:]
