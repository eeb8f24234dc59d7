"""Bearer tokens: HS256 JWTs carrying ``sub``, ``roles`` and ``exp``.

A token that passed every check is remembered (with its key) until it expires, so
that a client sending the same token with every request has it decoded once: PyJWT
takes ~0.1-0.2 ms a token, most of it re-checking the key. A remembered token is only
taken as it is while its ``exp`` (and any ``iat``/``nbf``) still hold; otherwise it is
decoded again, and refused the way PyJWT refuses it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

import jwt

from domain.values import SINGLE_LINE_REFUSED

ROLES = ("customer", "staff", "auditor", "admin")
ALGORITHM = "HS256"

Access = Literal["read", "act"]
# Who reaches every customer's carts, orders and account, by what they do with them
# (API.md): staff, auditors ("read everything") and admins read them; only staff act
# on them (take a payment, cancel an order) on a customer's behalf.
_EVERY_CUSTOMER: dict[Access, frozenset[str]] = {
    "read": frozenset({"staff", "auditor", "admin"}),
    "act": frozenset({"staff"}),
}


class InvalidToken(Exception):
    """The token is missing, expired, badly signed or malformed."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's subject and roles."""

    sub: str
    roles: frozenset[str]

    def has(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))

    def confined_to(self, access: Access) -> str | None:
        """The one customer whose carts, orders and account this caller may ``access``
        (its own ``sub``), or None when it may reach every customer's.

        The one ownership rule of the API. Reading: staff, auditors and admins see
        everyone's. Acting (paying, cancelling): staff only; auditors change nothing. A
        confined caller gets 404 for another customer's things, as if they did not exist.
        A cart is changed by its owner alone, staff or not: its commands require the
        customer role and pass the caller's own ``sub``.
        """
        return None if self.has(*_EVERY_CUSTOMER[access]) else self.sub


def mint(secret: str, sub: str, roles: list[str], ttl_seconds: int = 3600) -> str:
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}; choose from {ROLES}")
    now = int(time.time())
    claims = {"sub": sub, "roles": roles, "iat": now, "exp": now + ttl_seconds}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


# Tokens that passed, by (key, token): the caller, and the times between which it holds.
_VERIFIED: dict[tuple[str, str], tuple[Principal, int, int]] = {}
_VERIFIED_MAX = 4096
_verified_lock = threading.Lock()


def decode(secret: str, token: str) -> Principal:
    """The caller a valid token names; InvalidToken (saying why) for any other."""
    known = _VERIFIED.get((secret, token))
    if known is not None:
        caller, not_before, expires = known
        # PyJWT's own checks: expired once ``exp <= now``; not valid yet while ``iat``
        # or ``nbf`` is ahead of now.
        if not_before <= time.time() < expires:
            return caller
    caller, claims = _decode(secret, token)
    not_before = max(int(claims.get(name, 0)) for name in ("iat", "nbf"))
    with _verified_lock:
        if len(_VERIFIED) >= _VERIFIED_MAX:
            _VERIFIED.clear()
        _VERIFIED[(secret, token)] = (caller, not_before, int(claims["exp"]))
    return caller


def _decode(secret: str, token: str) -> tuple[Principal, dict[str, Any]]:
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "exp"]}
        )
    except jwt.ExpiredSignatureError:
        raise InvalidToken("the token has expired") from None
    except jwt.PyJWTError as error:
        raise InvalidToken(f"the token is invalid: {error}") from None
    roles = claims.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise InvalidToken("the token's roles claim must be a list of strings")
    if not isinstance(claims["sub"], str) or not claims["sub"]:
        raise InvalidToken("the token's sub claim must be a non-empty string")
    if SINGLE_LINE_REFUSED.search(claims["sub"]):
        # The sub is a customer's id, kept in events and read models like any text.
        raise InvalidToken("the token's sub claim must not contain control characters")
    return Principal(sub=claims["sub"], roles=frozenset(roles) & frozenset(ROLES)), claims
