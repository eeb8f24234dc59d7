"""Password hashes for the configured admin's login: scrypt (the standard library's
``hashlib.scrypt``), kept as ``scrypt:<log2 n>:<r>:<p>:<salt>:<hash>`` (base64; no
``$``, which shells and docker compose would expand), so that the cost can be raised
later without breaking the hashes made before."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

SCHEME = "scrypt"
# 2**15 x 8 x 1: 32 MiB and about a tenth of a second a check, which makes guessing slow
# even for someone holding the hash.
LOG2_N, R, P = 15, 8, 1
_KEY_BYTES = 32
_MAX_MEMORY = 256 * 1024 * 1024


class BadHash(ValueError):
    """The text is no password hash this module made."""


@dataclass(frozen=True)
class PasswordHash:
    log2_n: int
    r: int
    p: int
    salt: bytes
    key: bytes

    @classmethod
    def parse(cls, text: str) -> PasswordHash:
        parts = text.strip().split(":")
        if len(parts) != 6 or parts[0] != SCHEME:
            raise BadHash(
                f"a password hash is {SCHEME}:<log2 n>:<r>:<p>:<salt>:<hash>, as"
                " `eventshop admin-password-hash` prints it"
            )
        try:
            log2_n, r, p = (int(part) for part in parts[1:4])
            salt, key = (base64.b64decode(part, validate=True) for part in parts[4:])
        except ValueError as error:
            raise BadHash(f"the password hash is malformed: {error}") from None
        if not (1 <= log2_n <= 20 and 1 <= r <= 32 and 1 <= p <= 16) or len(key) < 16:
            raise BadHash("the password hash's parameters are out of range")
        return cls(log2_n, r, p, salt, key)

    def __str__(self) -> str:
        salt, key = (base64.b64encode(b).decode() for b in (self.salt, self.key))
        return f"{SCHEME}:{self.log2_n}:{self.r}:{self.p}:{salt}:{key}"

    def _derive(self, password: str) -> bytes:
        return hashlib.scrypt(
            password.encode(),
            salt=self.salt,
            n=2**self.log2_n,
            r=self.r,
            p=self.p,
            maxmem=_MAX_MEMORY,
            dklen=len(self.key),
        )

    def matches(self, password: str) -> bool:
        """Whether ``password`` is the one hashed; the comparison takes the same time
        whichever byte differs."""
        return hmac.compare_digest(self._derive(password), self.key)


def hash_password(password: str) -> str:
    """A new hash of ``password``, with a random salt."""
    made = PasswordHash(LOG2_N, R, P, secrets.token_bytes(16), b"\0" * _KEY_BYTES)
    return str(PasswordHash(LOG2_N, R, P, made.salt, made._derive(password)))
