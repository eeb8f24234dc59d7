"""Crypto-shredding: personal fields sealed with their subject's data key.

An event class that declares personal fields (``domain/personal.py``) has them taken out
of its state before it is stored and put back, encrypted, under one key of the state
(``SEALED_KEY``): AES-256-GCM with the data key of the event's subject (a customer), the
event's aggregate id and version as associated data, so a sealed value cannot be moved
to another event. Everything else stays readable JSON, and the hash link of the event
covers the stored bytes, ciphertext included.

Data keys are random, one per subject, stored in their own table (``eventstore/keys.py``)
wrapped (AES-GCM) by the master key of the settings, never in clear. Erasing a subject
deletes its key: its sealed fields then read as the values the event class declares
for erased data, wherever the log is read (read models, histories, exports, replays).

Keys are cached in each process (at most ``size`` of them), each for at most ``ttl``
seconds from the moment its lookup *began*; the write side's aggregate cache keeps an
aggregate holding decrypted personal data at most ``ttl`` seconds from the moment its
read began (``commands/cache.py``). An erasure deletes the key, then waits ``2 * ttl``
before it records the erasure and answers: a key cached before the deletion is gone
from every cache after ``ttl``, and whatever was decrypted with it after another
``ttl``. So nothing read after the erasure's answer, in any process, is decrypted with
the key or served from a copy decrypted with it (see README, "Personal data").
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from domain.personal import PersonalData, personal_data
from eventstore.keys import KeyTable, StoredKey

SEALED_KEY = "__sealed__"
"""The key of a stored state under which its personal fields are kept, encrypted."""
_NONCE = 12


class MasterKeyMismatch(Exception):
    """A data key was wrapped by another master key than the one configured."""


def master_key(value: str) -> bytes:
    """A master key from its configured form: 32 bytes, base64 or hex, or a file of one."""
    text = value.strip()
    if len(text) < 200 and os.path.isfile(text):
        with open(text) as file:
            text = file.read().strip()
    for decode in (base64.b64decode, bytes.fromhex):
        try:
            raw = decode(text)
        except ValueError:
            continue
        if len(raw) == 32:
            return raw
    raise ValueError("the personal-data master key must be 32 bytes, in base64 or hex")


def new_master_key() -> str:
    """A fresh master key, base64 (as ``master_key`` reads it)."""
    return base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()


def master_key_at(configured: str | None, var_dir: Path) -> bytes:
    """The master key: the configured one, else one generated once and kept in
    ``var_dir`` (like the audit signing key; production: configure it, kept elsewhere)."""
    if configured is not None:
        return master_key(configured)
    path = var_dir / "personal-data-master-key"
    if not path.exists():
        write_once(path, new_master_key)
    return master_key(str(path))


def write_once(path: Path, make: Callable[[], str]) -> None:
    """Write a new secret to ``path`` unless another process got there first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole under another name, then linked into place (which fails if the
    # name exists): processes starting together keep the first one's secret, and none
    # reads a file half written.
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    with open(os.open(draft, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600), "w") as file:
        file.write(make())
    try:
        os.link(draft, path)
    except FileExistsError:
        pass
    finally:
        draft.unlink()


class _Expiring:
    """A bounded cache whose entries live ``ttl`` seconds from a given moment."""

    def __init__(self, size: int, ttl: float) -> None:
        self.size, self.ttl = size, ttl
        self._entries: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._guard = threading.Lock()

    def get(self, name: str) -> Any:
        with self._guard:
            entry = self._entries.get(name)
            if entry is None:
                return None
            if entry[0] <= time.monotonic():
                del self._entries[name]
                return None
            self._entries.move_to_end(name)
            return entry[1]

    def put(self, name: str, value: Any, since: float) -> None:
        with self._guard:
            self._entries[name] = (since + self.ttl, value)
            self._entries.move_to_end(name)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def drop(self, name: str) -> None:
        with self._guard:
            self._entries.pop(name, None)


class KeyRing:
    """The data keys of one store, unwrapped on demand and cached (see the module)."""

    def __init__(
        self, table: KeyTable, master: bytes, *, ttl: float = 2.0, size: int = 10_000
    ) -> None:
        self.table, self.ttl = table, ttl
        self._master = AESGCM(master)
        self._master_bytes = master
        self.master_id = hashlib.sha256(b"eventshop-master-key" + master).hexdigest()[:16]
        self._by_subject = _Expiring(size, ttl)
        self._by_id = _Expiring(size, ttl)
        # A destroyed key never comes back (ids are random): remembering that is safe.
        self._destroyed = _Expiring(size, float("inf"))

    def __reduce__(self) -> Any:
        # To a rebuild's worker process: the same table and master key, caches of its own.
        return (_key_ring, (self.table, self._master_bytes, self.ttl, self._by_id.size))

    def close(self) -> None:
        self.table.close()

    def create_table(self) -> None:
        self.table.create_table()

    def foreign_master_keys(self) -> str | None:
        """What is wrong if the stored keys were wrapped by another master key than this
        one (a host that generated its own instead of being given the deployment's):
        every read of their sealed fields would fail (None: nothing wrong)."""
        other = self.table.other_master(self.master_id)
        if other is None:
            return None
        return (
            f"the store's data keys were wrapped by master key {other},"
            f" not by this process's ({self.master_id}): sealed personal data cannot be"
            " read; give every process the same EVENTSHOP_PERSONAL_DATA_MASTER_KEY, the one"
            " the store was written with"
        )

    def key_for(self, subject: str) -> tuple[str, AESGCM]:
        """The subject's key (made now if it has none) and its id: for sealing."""
        cached = self._by_subject.get(subject)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        since = time.monotonic()
        stored = self.table.of_subject(subject)
        if stored is None:
            fresh = AESGCM.generate_key(bit_length=256)
            key_id = uuid.uuid4().hex
            stored = self.table.add(
                StoredKey(key_id, subject, self._wrap(subject, key_id, fresh), self.master_id)
            )
        found = (stored.key_id, AESGCM(self._unwrap(stored)))
        self._by_subject.put(subject, found, since)
        self._by_id.put(stored.key_id, found[1], since)
        return found

    def key(self, key_id: str) -> AESGCM | None:
        """The key ``key_id``, or None once it was destroyed: for unsealing."""
        cached = self._by_id.get(key_id)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        if self._destroyed.get(key_id):
            return None
        since = time.monotonic()
        stored = self.table.by_id(key_id)
        if stored is None:
            self._destroyed.put(key_id, True, since)
            return None
        aead = AESGCM(self._unwrap(stored))
        self._by_id.put(key_id, aead, since)
        return aead

    def has_key(self, subject: str) -> bool:
        """Whether the subject has a key now (asked of the table, not the cache)."""
        return self.table.of_subject(subject) is not None

    def destroy(self, subject: str) -> list[str]:
        """Delete the subject's key(s), and forget them in this process; their ids.

        Other processes may still hold one for up to ``ttl`` seconds: wait that long
        (:meth:`wait_out_caches`) before telling anyone the data is erased."""
        gone = self.table.destroy(subject)
        self._by_subject.drop(subject)
        now = time.monotonic()
        for key_id in gone:
            self._by_id.drop(key_id)
            self._destroyed.put(key_id, True, now)
        return gone

    def wait_out_caches(self, sleep: Callable[[float], None] = time.sleep) -> None:
        """Wait until every key cached anywhere before now has expired, and every copy
        of data decrypted with one (module doc)."""
        sleep(2 * self.ttl)

    def _wrap(self, subject: str, key_id: str, key: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + self._master.encrypt(nonce, key, _wrap_aad(subject, key_id))

    def _unwrap(self, stored: StoredKey) -> bytes:
        if stored.master_id != self.master_id:
            raise MasterKeyMismatch(
                f"the data key of {stored.subject!r} was wrapped by master key"
                f" {stored.master_id}, not by the configured one ({self.master_id}):"
                " set EVENTSHOP_PERSONAL_DATA_MASTER_KEY to the key this store was written with"
            )
        nonce, wrapped = stored.wrapped[:_NONCE], stored.wrapped[_NONCE:]
        return self._master.decrypt(nonce, wrapped, _wrap_aad(stored.subject, stored.key_id))


def _key_ring(table: KeyTable, master: bytes, ttl: float, size: int) -> KeyRing:
    return KeyRing(table, master, ttl=ttl, size=size)


def _wrap_aad(subject: str, key_id: str) -> bytes:
    return f"eventshop-data-key\x1f{subject}\x1f{key_id}".encode()


class Sealer:
    """Seals and unseals the personal fields of stored states with a :class:`KeyRing`.

    ``encrypt`` off (``EVENTSHOP_PERSONAL_DATA_ENCRYPTION=false``) stores new events in
    plain text; sealed ones are still read.
    """

    def __init__(
        self,
        keys: KeyRing | None,
        encode: Callable[[Any], bytes],
        decode: Callable[[bytes], Any],
        *,
        encrypt: bool = True,
    ) -> None:
        self.keys, self.encrypt = keys, encrypt and keys is not None
        self._encode, self._decode = encode, decode

    def seal(self, event_class: type[Any], state: dict[str, Any]) -> None:
        """Take the declared personal fields out of ``state`` and put them back sealed."""
        declared = personal_data(event_class) if self.encrypt else None
        if declared is None or self.keys is None:
            return
        fields = {name: state.pop(name) for name in declared.fields if name in state}
        if not fields:
            return
        key_id, aead = self.keys.key_for(str(state[declared.subject]))
        nonce = os.urandom(_NONCE)
        sealed = aead.encrypt(nonce, self._encode(fields), _aad(state))
        state[SEALED_KEY] = {"key": key_id, "data": base64.b64encode(nonce + sealed).decode()}

    def unseal(self, event_class: type[Any], state: dict[str, Any]) -> None:
        """Put the sealed fields of ``state`` back: decrypted, or as erased."""
        envelope = state.pop(SEALED_KEY, None)
        if envelope is None:
            return
        declared = personal_data(event_class) or PersonalData(subject="", erased={})
        aead = self.keys.key(envelope["key"]) if self.keys is not None else None
        if aead is not None:
            raw = base64.b64decode(envelope["data"])
            try:
                state.update(self._decode(aead.decrypt(raw[:_NONCE], raw[_NONCE:], _aad(state))))
                return
            except InvalidTag:
                pass  # sealed for another event: as good as erased
        for name in declared.fields:
            state[name] = declared.erased_value(name)

    @staticmethod
    def is_sealed(state: dict[str, Any]) -> bool:
        return SEALED_KEY in state


def _aad(state: dict[str, Any]) -> bytes:
    originator = state["originator_id"]
    oid = originator.hex if isinstance(originator, uuid.UUID) else str(originator)
    return f"{oid}\x1f{state['originator_version']}".encode()
