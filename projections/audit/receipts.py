"""Signed receipts: ``{position, link, time, key id}`` signed with an Ed25519 key.

The private key is never in the database (``EVENTSHOP_AUDIT_SIGNING_KEY``, or a file
under ``var/``), so whoever can rewrite the events and recompute every link still
cannot make a receipt for what they wrote: a receipt proves that nothing at or before
its position changed since it was signed. Receipts are kept in ``audit_receipts``
beside the log; auditors should keep copies elsewhere too (``GET /api/audit/receipts``),
as anyone with the database can delete rows.
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
# Signed before the fields, so that a receipt's signature means nothing anywhere else.
_CONTEXT = b"eventshop audit receipt v1\n"


@dataclass(frozen=True)
class Receipt:
    """The link at ``position`` as the holder of key ``key_id`` saw it at ``time``."""

    position: int
    link: bytes
    time: str
    key_id: str
    signature: bytes

    def message(self) -> bytes:
        return _message(self.position, self.link, self.time, self.key_id)

    def as_json(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "link": self.link.hex(),
            "time": self.time,
            "key_id": self.key_id,
            "signature": base64.b64encode(self.signature).decode(),
        }

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> Receipt:
        try:
            return cls(
                int(item["position"]),
                bytes.fromhex(item["link"]),
                str(item["time"]),
                str(item["key_id"]),
                base64.b64decode(item["signature"], validate=True),
            )
        except (KeyError, TypeError, ValueError, binascii.Error) as error:
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


def _message(position: int, link: bytes, time: str, key_id: str) -> bytes:
    return _CONTEXT + f"{position}\n{link.hex()}\n{time}\n{key_id}".encode()


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

    def sign(self, position: int, link: bytes, time: datetime | None = None) -> Receipt:
        moment = (time or datetime.now(UTC)).astimezone(UTC).isoformat()
        signature = self._key.sign(_message(position, link, moment, self.key_id))
        return Receipt(position, link, moment, self.key_id, signature)


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
    return Receipt(int(row[0]), bytes(row[1]), str(row[2]), str(row[3]), bytes(row[4]))


_COLUMNS = "position, link, time, key_id, signature"


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

    def _select(self, tail: str, params: Sequence[Any]) -> list[Receipt]:
        query = sql.SQL(f"SELECT {_COLUMNS} FROM {{}} {tail}").format(self.table)
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(query, params)
            return [_receipt(tuple(row.values())) for row in cursor.fetchall()]

    def add(self, receipt: Receipt) -> Receipt:
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(
                sql.SQL(
                    f"INSERT INTO {{}} ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s)"
                    " ON CONFLICT (position) DO NOTHING"
                ).format(self.table),
                (receipt.position, receipt.link, receipt.time, receipt.key_id, receipt.signature),
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

    def _select(self, tail: str, params: Sequence[Any]) -> list[Receipt]:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(f"SELECT {_COLUMNS} FROM {RECEIPTS_TABLE} {tail}", params)
            return [_receipt(tuple(row)) for row in cursor.fetchall()]

    def add(self, receipt: Receipt) -> Receipt:
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(
                f"INSERT OR IGNORE INTO {RECEIPTS_TABLE} ({_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                (receipt.position, receipt.link, receipt.time, receipt.key_id, receipt.signature),
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
