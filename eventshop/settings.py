"""The shop's one settings object: read from the environment (and an optional ``.env``)
once, prefixed ``EVENTSHOP_``, typed, and handed to the composition root."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, PlainValidator, SecretStr, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from domain.values import DEFAULT_CURRENCY
from eventstore.url import DEFAULT_URL, StoreURL, store_url
from projections.webhooks.targets import parse_entry

DatabaseURL = Annotated[StoreURL, NoDecode, PlainValidator(store_url)]


def _hosts(value: object) -> list[str]:
    """A comma-separated list (or a list) of allow-list entries, each checked."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ValueError("must be a comma-separated list of hosts, addresses or networks")
    return [parse_entry(str(item)) for item in items if str(item).strip()]


AllowedHosts = Annotated[list[str], NoDecode, BeforeValidator(_hosts)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EVENTSHOP_", env_file=".env", extra="ignore")

    database_url: DatabaseURL = Field(
        default_factory=lambda: StoreURL.parse(DEFAULT_URL),
        description="sqlite:///path, postgresql://user@host:port/db?schema=s, memory://",
    )
    database_password: SecretStr | None = Field(
        default=None,
        description="the PostgreSQL password, kept out of the URL (any character allowed)",
    )
    database_pool_size: int = Field(
        default=5, gt=0, le=1000, description="PostgreSQL connections each process keeps open"
    )
    database_max_overflow: int = Field(
        default=20, ge=0, le=1000, description="connections opened past the pool under load"
    )
    database_wait_seconds: int = Field(
        default=2,
        gt=0,
        le=300,
        description="longest wait to connect, for a pooled connection, or for a lock; with"
        " the database down, a request answers 503 after about this long",
    )
    database_statement_seconds: int = Field(
        default=30,
        gt=0,
        le=3600,
        description="longest any one SQL statement may run (PostgreSQL statement_timeout)",
    )
    command_wait_seconds: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="longest wait of a command for its turn on a busy aggregate or to be"
        " written (then 503)",
    )
    jwt_secret: str = Field(default="", description="HS256 key; generated under var/ if empty")
    admin_user: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="the user name of the admin who may sign in with a password (the console's"
        " login form, POST /api/auth/login); unset: no one signs in with a password",
    )
    admin_password_hash: SecretStr | None = Field(
        default=None,
        description="that admin's password, hashed with `eventshop admin-password-hash`",
    )
    admin_roles: list[str] = Field(
        default_factory=lambda: ["admin", "auditor", "staff"],
        description="the roles of the tokens the admin's login gets (a JSON list)",
    )
    currency: str = DEFAULT_CURRENCY
    var_dir: Path = Path("var")
    max_body_bytes: int = 64 * 1024
    idempotency_ttl_seconds: float = Field(
        default=24 * 3600, gt=0, description="how long an Idempotency-Key is remembered"
    )
    log_level: str = Field(default="INFO", description="of the JSON logs `eventshop serve` writes")
    opentelemetry: bool = Field(
        default=False,
        description="FastAPI's own OpenTelemetry traces, metrics and logs, to the providers"
        " the OpenTelemetry SDK is configured with (off: /metrics, the request ids and the"
        " JSON logs remain; on costs an environment lookup per request even with no SDK)",
    )
    run_projections: bool = Field(
        default=True, description="feed the read models in this process (off: `eventshop worker`)"
    )
    projections_process: bool = Field(
        default=True,
        description="on PostgreSQL, `eventshop serve` feeds the read models from an `eventshop"
        " worker` process it starts and supervises (off: from threads of the API process)",
    )
    payment_window_seconds: float = Field(
        default=1800.0,
        gt=0,
        description="an order unpaid this long after it was placed is cancelled",
    )
    read_wait_seconds: float = Field(
        default=5.0, gt=0, le=60, description="how long a query waits for `min_position`"
    )
    read_waiters: int = Field(
        default=200,
        ge=0,
        le=100_000,
        description="most queries waiting for `min_position` at once in a process; past it,"
        " 503 at once",
    )
    audit_signing_key: SecretStr | None = Field(
        default=None,
        description="Ed25519 private key signing audit receipts (PEM or base64, or a file of"
        " one); generated once under var/ if unset. Keep it off the database host",
    )
    audit_trusted_keys: str = Field(
        default="",
        description="public keys (comma-separated) of earlier signing keys whose receipts"
        " verify still trusts",
    )
    audit_receipt_events: int = Field(
        default=1000, gt=0, description="the writer signs a receipt after this many events"
    )
    audit_receipt_seconds: float = Field(
        default=60.0, gt=0, description="... or this long after the last one, if events came"
    )
    personal_data_master_key: SecretStr | None = Field(
        default=None,
        description="AES-256 key (base64 or hex, or a file of one) wrapping the customers'"
        " data keys; generated once under var/ if unset. Keep it off the database host:"
        " with it lost, no sealed personal data can be read",
    )
    personal_data_encryption: bool = Field(
        default=True,
        description="seal personal fields of new events with the customer's key (off: stored"
        " in plain text, e.g. to measure the cost; sealed ones are still read)",
    )
    personal_key_cache_seconds: float = Field(
        default=3.0,
        ge=0,
        le=300,
        description="how long a process keeps a data key it unwrapped (and an aggregate"
        " decrypted with one); an erasure waits twice this long before it answers, so that"
        " no process still holds either then",
    )
    personal_key_cache_size: int = Field(
        default=10_000, ge=1, description="most data keys a process keeps unwrapped"
    )
    nats_url: str | None = Field(
        default=None,
        description="NATS server (JetStream) the integration events are published to, e.g."
        " nats://127.0.0.1:4222; none: `eventshop worker` publishes nothing",
    )
    nats_stream: str = Field(
        default="EVENTSHOP",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="the JetStream stream the integration events are published to",
    )
    nats_subject_prefix: str = Field(
        default="eventshop",
        pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$",
        max_length=100,
        description="subjects are <prefix>.<type>, e.g. eventshop.order.placed",
    )
    event_source: str = Field(
        default="/eventshop", min_length=1, description="the CloudEvents `source` of every event"
    )
    stock_low_threshold: int = Field(
        default=5, ge=0, description="stock.low when a SKU's available units fall below this"
    )
    stock_low_thresholds: dict[str, int] = Field(
        default_factory=dict,
        description='per-SKU thresholds, as JSON: {"MUG-1": 20}',
    )
    webhook_allowed_hosts: AllowedHosts = Field(
        default_factory=list,
        description="where webhooks may be sent, comma-separated: host names, *.domain,"
        " addresses, networks (CIDR); none: no webhook can be subscribed",
    )
    webhook_attempts: int = Field(
        default=8, ge=1, le=100, description="attempts of a webhook delivery before it is parked"
    )
    webhook_first_wait_seconds: float = Field(
        default=1.0, gt=0, le=3600, description="wait before a webhook's second attempt (doubles)"
    )
    webhook_max_wait_seconds: float = Field(
        default=600.0, gt=0, le=86400, description="longest wait between two webhook attempts"
    )
    webhook_timeout_seconds: float = Field(
        default=10.0, gt=0, le=300, description="to connect, send, and for the answer"
    )
    webhook_poll_seconds: float = Field(
        default=0.5, gt=0, le=60, description="how often a caught-up webhook looks for events"
    )

    @model_validator(mode="after")
    def _password_apart(self) -> Any:
        # A password with '@', ':', '/' or '#' cannot sit raw in a URL: it may come apart.
        if self.database_password is not None:
            self.database_url = self.database_url.with_password(
                self.database_password.get_secret_value()
            )
        return self

    def secret(self) -> str:
        """The JWT key: the configured one, else one generated once and kept under var/."""
        if self.jwt_secret:
            return self.jwt_secret
        path = self.var_dir / "jwt-secret"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        self.jwt_secret = path.read_text().strip()
        return self.jwt_secret
