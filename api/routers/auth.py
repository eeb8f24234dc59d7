"""The configured admin's login (EVENTSHOP_ADMIN_USER, EVENTSHOP_ADMIN_PASSWORD_HASH): a
user name and password for a bearer token like those `eventshop token` prints, so that
the console can be signed into without the CLI. No token is needed to ask."""

from __future__ import annotations

import hmac
import logging
import time
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from pydantic import BaseModel, Field

from api.auth import ROLES, mint
from api.errors import problem, problem_responses
from api.passwords import PasswordHash
from api.text import SINGLE_LINE
from eventshop.settings import Settings

router = APIRouter(prefix="/api/auth", tags=["auth"])
log = logging.getLogger("eventshop.api")

TOKEN_SECONDS = 3600
# Failed logins a client address may make in a minute; then 429 until the oldest is a
# minute old. With scrypt's cost per check, guessing stays slow.
FAILURES_PER_MINUTE = 5
FAILURES = RateLimitItemPerMinute(FAILURES_PER_MINUTE)


@dataclass
class Logins:
    """Who may sign in with a password (no one if no admin is configured), and the
    failed attempts of each client address."""

    user: str | None
    password: PasswordHash | None
    roles: list[str]
    secret: str
    failures: MovingWindowRateLimiter | None = field(default=None, repr=False)

    @classmethod
    def of(cls, settings: Settings) -> Logins:
        """The logins ``settings`` allow (BadHash, ValueError if misconfigured)."""
        hashed = settings.admin_password_hash
        if (settings.admin_user is None) != (hashed is None):
            raise ValueError(
                "set both EVENTSHOP_ADMIN_USER and EVENTSHOP_ADMIN_PASSWORD_HASH, or neither"
            )
        unknown = set(settings.admin_roles) - set(ROLES)
        if unknown:
            raise ValueError(f"EVENTSHOP_ADMIN_ROLES: unknown roles {sorted(unknown)}")
        if hashed is None:
            return cls(None, None, settings.admin_roles, "")
        return cls(
            settings.admin_user,
            PasswordHash.parse(hashed.get_secret_value()),
            settings.admin_roles,
            settings.secret(),
            MovingWindowRateLimiter(MemoryStorage()),
        )

    @property
    def available(self) -> bool:
        return self.password is not None

    def check(self, user: str, password: str) -> bool:
        """Whether these are the admin's name and password. The password is checked even
        for a wrong name, and compared in constant time, so that the answer's timing
        tells neither apart."""
        assert self.user is not None and self.password is not None
        right_user = _same(user, self.user)
        return self.password.matches(password) and right_user

    def retry_after(self, address: str) -> int | None:
        """Seconds until ``address`` may try again; None if it may now."""
        assert self.failures is not None
        if self.failures.test(FAILURES, address):
            return None
        reset = self.failures.get_window_stats(FAILURES, address).reset_time
        return max(1, round(reset - time.time()))

    def failed(self, address: str) -> None:
        assert self.failures is not None
        self.failures.hit(FAILURES, address)


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def get_logins(request: Request) -> Logins:
    return request.app.state.logins  # type: ignore[no-any-return]


LoginsDep = Annotated[Logins, Depends(get_logins)]


class LoginOptions(BaseModel):
    password: bool = Field(description="whether an admin may sign in with a password here")


class Login(BaseModel):
    username: Annotated[str, SINGLE_LINE] = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1024)


class Session(BaseModel):
    """A bearer token for the admin, as `eventshop token` prints one."""

    token: str = Field(description="send it as `Authorization: Bearer <token>`")
    token_type: str = Field(default="Bearer", examples=["Bearer"])
    expires_in: int = Field(description="seconds until the token expires")
    sub: str
    roles: list[str]


@router.get("/login", response_model=LoginOptions)
def get_login_options(logins: LoginsDep) -> LoginOptions:
    """Whether a password login is configured here (the console shows its form if so)."""
    return LoginOptions(password=logins.available)


@router.post(
    "/login",
    response_model=Session,
    responses=problem_responses(400, 401, 404, 413, 422, 429),
)
def log_in(body: Login, request: Request, logins: LoginsDep) -> Any:
    """The configured admin's name and password for a bearer token (401 if wrong; 429
    after too many wrong ones from one address; 404 if no admin is configured)."""
    if not logins.available or logins.user is None:
        return problem(
            request,
            404,
            "no admin is configured here: sign in with a token (`eventshop token`)",
            title="Login not configured",
            kind="login-not-configured",
        )
    address = request.client.host if request.client else "unknown"
    wait = logins.retry_after(address)
    if wait is not None:
        return problem(
            request,
            429,
            f"too many failed logins from {address}; try again in {wait} s",
            title="Too many attempts",
            kind="too-many-attempts",
            headers={"Retry-After": str(wait)},
        )
    if not logins.check(body.username, body.password):
        logins.failed(address)
        log.warning("a login failed for user %r from %s", body.username, address)
        return problem(
            request,
            401,
            "wrong user name or password",
            title="Login failed",
            kind="login-failed",
            headers={"WWW-Authenticate": "Bearer"},
        )
    log.info("the admin %r signed in from %s", logins.user, address)
    token = mint(logins.secret, logins.user, logins.roles, TOKEN_SECONDS)
    return Session(token=token, expires_in=TOKEN_SECONDS, sub=logins.user, roles=logins.roles)
