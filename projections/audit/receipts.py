"""Signed receipts: ``{position, link, time, key id, tree size, tree root}`` signed with an
Ed25519 key.

The private key is never in the database (``EVENTSHOP_AUDIT_SIGNING_KEY``, or a file
under ``var/``), so whoever can rewrite the events and recompute every link still
cannot make a receipt for what they wrote: a receipt proves that nothing at or before
its position changed since it was signed. Receipts are kept in ``audit_receipts``
beside the log; auditors should keep copies elsewhere too (``GET /api/audit/receipts``),
as anyone with the database can delete rows.

Since inclusion proofs (``proofs.py``), a receipt also signs the Merkle tree over the
links up to its position (its size and root): one event can then be shown to be in the
log the receipt covers with O(log n) hashes. Those receipts are signed as message v2;
receipts made before (v1, no tree) still verify as they were signed, and a v2 receipt
stripped of its tree is a v1 message its signature does not match.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from eventsourcing.persistence import ApplicationRecorder
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from psycopg import sql

from domain.errors import InvalidValue

RECEIPTS_TABLE = "audit_receipts"
# Signed before the fields, so that a receipt's signature means nothing anywhere else;
# the version says which fields follow.
_CONTEXT_V1 = b"eventshop audit receipt v1\n"
_CONTEXT_V2 = b"eventshop audit receipt v2\n"


@dataclass(frozen=True)
class Receipt:
    """The link at ``position`` as the holder of key ``key_id`` saw it at ``time``, and
    the root of the Merkle tree over the ``tree_size`` links up to it (None: a receipt
    made before inclusion proofs)."""

    position: int
    link: bytes
    time: str
    key_id: str
    signature: bytes
    tree_size: int | None = None
    tree_root: bytes | None = None

    @property
    def tree(self) -> Tree | None:
        if self.tree_size is None or self.tree_root is None:
            return None
        return Tree(self.tree_size, self.tree_root)

    def message(self) -> bytes:
        return _message(self.position, self.link, self.time, self.key_id, self.tree)

    def as_json(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "link": self.link.hex(),
            "time": self.time,
            "key_id": self.key_id,
            "tree_size": self.tree_size,
            "tree_root": self.tree_root.hex() if self.tree_root is not None else None,
            "signature": base64.b64encode(self.signature).decode(),
        }

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> Receipt:
        try:
            size, root = item.get("tree_size"), item.get("tree_root")
            return cls(
                int(item["position"]),
                bytes.fromhex(item["link"]),
                str(item["time"]),
                str(item["key_id"]),
                base64.b64decode(item["signature"], validate=True),
                int(size) if size is not None else None,
                bytes.fromhex(root) if root is not None else None,
            )
        except (KeyError, TypeError, ValueError, AttributeError, binascii.Error) as error:
            raise InvalidValue("receipts", f"not a receipt: {error}") from None

    def problem(self, keys: Mapping[str, Ed25519PublicKey]) -> str | None:
        """Why this receipt proves nothing with ``keys`` (by key id); None if it holds."""
        key = keys.get(self.key_id)
        if key is None:
            known = ", ".join(sorted(keys)) or "none"
            return (
                f"it is signed by key {self.key_id}, which is not trusted here (trusted: {known})"
            )
        try:
            key.verify(self.signature, self.message())
        except InvalidSignature:
            return f"its signature is not key {self.key_id}'s: the receipt was altered or forged"
        return None


@dataclass(frozen=True)
class Tree:
    """The Merkle tree over the first ``size`` links of the log (``merkle.py``)."""

    size: int
    root: bytes


def _message(position: int, link: bytes, time: str, key_id: str, tree: Tree | None) -> bytes:
    fields = f"{position}\n{link.hex()}\n{time}\n{key_id}"
    if tree is None:
        return _CONTEXT_V1 + fields.encode()
    return _CONTEXT_V2 + f"{fields}\n{tree.size}\n{tree.root.hex()}".encode()


def read_receipts(text: str) -> list[Receipt]:
    """Receipts from JSON: a list, or a page of ``GET /api/audit/receipts`` (``items``)."""
    try:
        data = json.loads(text)
    except ValueError as error:
        raise InvalidValue("receipts", f"not JSON: {error}") from None
    items = data.get("items") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise InvalidValue("receipts", "expected a list of receipts, or an object with items")
    return [Receipt.from_json(item) for item in items]


# --- keys ----------------------------------------------------------------------------


def key_id(public: Ed25519PublicKey) -> str:
    """A short name of a public key: the first 16 hex digits of its SHA-256."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _text_of(value: str) -> str:
    """A key given as a file path is read from the file; otherwise it is the key."""
    value = value.strip()
    if "\n" not in value and not value.startswith("-----") and len(value) < 4096:
        path = Path(value).expanduser()
        if path.is_file():
            return path.read_text().strip()
    return value


def private_key(value: str) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM (PKCS#8) or a base64 32-byte seed, or a file of one."""
    text = _text_of(value)
    try:
        if text.startswith("-----"):
            key = serialization.load_pem_private_key(text.encode(), password=None)
        else:
            key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(text, validate=True))
    except (ValueError, TypeError, binascii.Error):
        key = None
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidValue("audit_signing_key", "not an Ed25519 private key (PEM or base64)")
    return key


def public_key(value: str) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM, base64 or hex of its 32 bytes, or a file of one."""
    text = _text_of(value)
    key: object = None
    try:
        if text.startswith("-----"):
            key = serialization.load_pem_public_key(text.encode())
        else:
            raw = bytes.fromhex(text) if len(text) == 64 else base64.b64decode(text, validate=True)
            key = Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, TypeError, binascii.Error):
        key = None
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidValue("public_key", "not an Ed25519 public key (PEM, base64 or hex)")
    return key


def private_pem(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def trusted(keys: Iterable[Ed25519PublicKey]) -> dict[str, Ed25519PublicKey]:
    """Public keys by key id."""
    return {key_id(key): key for key in keys}


class Signer:
    """Signs receipts with a private key held outside the database."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public = key.public_key()
        self.key_id = key_id(self.public)

    def sign(
        self, position: int, link: bytes, time: datetime | None = None, tree: Tree | None = None
    ) -> Receipt:
        """A receipt of ``link`` at ``position``; with ``tree`` (the tree over the links up
        to it), a v2 receipt that inclusion proofs can be checked against."""
        moment = (time or datetime.now(UTC)).astimezone(UTC).isoformat()
        signature = self._key.sign(_message(position, link, moment, self.key_id, tree))
        size, root = (tree.size, tree.root) if tree is not None else (None, None)
        return Receipt(position, link, moment, self.key_id, signature, size, root)


# --- where receipts are kept -----------------------------------------------------------


class ReceiptTable(Protocol):
    """The receipts issued so far, by position (one per position)."""

    def create_table(self) -> None: ...

    def add(self, receipt: Receipt) -> Receipt:
        """Keep ``receipt``; if one is kept at its position already, that one."""
        ...

    def after(self, position: int, limit: int) -> list[Receipt]:
        """The receipts after ``position``, in order, at most ``limit``."""
        ...

    def last(self) -> Receipt | None: ...


def receipt_table(recorder: ApplicationRecorder) -> ReceiptTable:
    """The receipts table beside the log ``recorder`` reads."""
    if isinstance(recorder, PostgresApplicationRecorder):
        return _PostgresReceipts(recorder)
    if isinstance(recorder, SQLiteApplicationRecorder):
        return _SQLiteReceipts(recorder)
    return _MemoryReceipts()


def _receipt(row: Sequence[Any]) -> Receipt:
    return Receipt(
        int(row[0]),
        bytes(row[1]),
        str(row[2]),
        str(row[3]),
        bytes(row[4]),
        int(row[5]) if row[5] is not None else None,
        bytes(row[6]) if row[6] is not None else None,
    )


def _values(receipt: Receipt) -> tuple[Any, ...]:
    return (
        receipt.position,
        receipt.link,
        receipt.time,
        receipt.key_id,
        receipt.signature,
        receipt.tree_size,
        receipt.tree_root,
    )


_COLUMNS = "position, link, time, key_id, signature, tree_size, tree_root"


class _PostgresReceipts:
    def __init__(self, recorder: PostgresApplicationRecorder) -> None:
        self.datastore = recorder.datastore
        self.table = sql.Identifier(self.datastore.schema, RECEIPTS_TABLE)

    def create_table(self) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (position bigint PRIMARY KEY,"
                    " link bytea NOT NULL, time text NOT NULL, key_id text NOT NULL,"
                    " signature bytea NOT NULL)"
                ).format(self.table)
            )
            # The tree came with inclusion proofs: a table made before gets its columns
            # (looked for first: ALTER TABLE would lock the table even when they exist).
            cursor.execute(
                "SELECT count(*) AS n FROM information_schema.columns WHERE table_schema = %s"
                " AND table_name = %s AND column_name IN ('tree_size', 'tree_root')",
                (self.datastore.schema, RECEIPTS_TABLE),
            )
            row = cursor.fetchone()
            if not row or row["n"] < 2:
                cursor.execute(
                    sql.SQL(
                        "ALTER TABLE {} ADD COLUMN IF NOT EXISTS tree_size bigint,"
                        " ADD COLUMN IF NOT EXISTS tree_root bytea"
                    ).format(self.table)
                )

    def _select(self, tail: str, params: Sequence[Any]) -> list[Receipt]:
        query = sql.SQL(f"SELECT {_COLUMNS} FROM {{}} {tail}").format(self.table)
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(query, params)
            return [_receipt(tuple(row.values())) for row in cursor.fetchall()]

    def add(self, receipt: Receipt) -> Receipt:
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(
                sql.SQL(
                    f"INSERT INTO {{}} ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (position) DO NOTHING"
                ).format(self.table),
                _values(receipt),
            )
        return self._select("WHERE position = %s", (receipt.position,))[0]

    def after(self, position: int, limit: int) -> list[Receipt]:
        return self._select("WHERE position > %s ORDER BY position LIMIT %s", (position, limit))

    def last(self) -> Receipt | None:
        rows = self._select("ORDER BY position DESC LIMIT 1", ())
        return rows[0] if rows else None


class _SQLiteReceipts:
    def __init__(self, recorder: SQLiteApplicationRecorder) -> None:
        self.datastore = recorder.datastore

    def create_table(self) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {RECEIPTS_TABLE} (position INTEGER PRIMARY KEY,"
                " link BLOB NOT NULL, time TEXT NOT NULL, key_id TEXT NOT NULL,"
                " signature BLOB NOT NULL)"
            )
            # The tree came with inclusion proofs: a table made before gets its columns.
            cursor.execute(f"PRAGMA table_info({RECEIPTS_TABLE})")
            columns = {row[1] for row in cursor.fetchall()}
            for column, kind in (("tree_size", "INTEGER"), ("tree_root", "BLOB")):
                if column not in columns:
                    cursor.execute(f"ALTER TABLE {RECEIPTS_TABLE} ADD COLUMN {column} {kind}")

    def _select(self, tail: str, params: Sequence[Any]) -> list[Receipt]:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(f"SELECT {_COLUMNS} FROM {RECEIPTS_TABLE} {tail}", params)
            return [_receipt(tuple(row)) for row in cursor.fetchall()]

    def add(self, receipt: Receipt) -> Receipt:
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(
                f"INSERT OR IGNORE INTO {RECEIPTS_TABLE} ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                _values(receipt),
            )
        return self._select("WHERE position = ?", (receipt.position,))[0]

    def after(self, position: int, limit: int) -> list[Receipt]:
        if position > 2**63 - 1:
            return []
        return self._select("WHERE position > ? ORDER BY position LIMIT ?", (position, limit))

    def last(self) -> Receipt | None:
        rows = self._select("ORDER BY position DESC LIMIT 1", ())
        return rows[0] if rows else None


class _MemoryReceipts:
    def __init__(self) -> None:
        self.kept: dict[int, Receipt] = {}

    def create_table(self) -> None:
        """Nothing to create: the receipts live in this object."""

    def add(self, receipt: Receipt) -> Receipt:
        return self.kept.setdefault(receipt.position, receipt)

    def after(self, position: int, limit: int) -> list[Receipt]:
        return [self.kept[p] for p in sorted(self.kept) if p > position][:limit]

    def last(self) -> Receipt | None:
        return self.kept[max(self.kept)] if self.kept else None
