"""Settings from the environment (and an optional ``.env``), prefixed ``EVENTSHOP_``."""

from __future__ import annotations

import secrets
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from eventstore.url import DEFAULT_URL


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EVENTSHOP_", env_file=".env", extra="ignore")

    database_url: str = DEFAULT_URL
    jwt_secret: str = Field(default="", description="HS256 key; generated under var/ if empty")
    currency: str = "EUR"
    var_dir: Path = Path("var")
    max_body_bytes: int = 64 * 1024
    idempotency_ttl_seconds: float = Field(
        default=24 * 3600, gt=0, description="how long an Idempotency-Key is remembered"
    )
    log_level: str = Field(default="INFO", description="of the JSON logs `eventshop serve` writes")
    run_projections: bool = Field(
        default=True, description="feed the read models in this process (off: `eventshop worker`)"
    )
    read_wait_seconds: float = Field(
        default=5.0, gt=0, le=60, description="how long a query waits for `min_position`"
    )

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
