"""The ``eventshop`` command: serve the API, mint tokens.

Other commands (the projection worker, migrations) join as functions on ``app`` or as
sub-apps with ``app.add_typer(other, name=...)``.
"""

from __future__ import annotations

import uuid
from typing import Annotated

import typer
import uvicorn

from api.auth import ROLES, mint
from api.cli_audit import audit
from api.cli_seed import seed
from api.observability import configure_logging
from api.settings import Settings

app = typer.Typer(help="eventshop: an event-sourced shop back end.", no_args_is_help=True)
app.add_typer(audit, name="audit")
app.command()(seed)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
) -> None:
    """Serve the HTTP API on the store EVENTSHOP_DATABASE_URL names (SQLite under ./var/).

    Logs are JSON lines on stderr (level: EVENTSHOP_LOG_LEVEL); the app writes its own
    access log, with each request's id, in place of uvicorn's.
    """
    level = Settings().log_level
    configure_logging(level)
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=host,
        port=port,
        log_config=None,
        log_level=level.lower(),
        access_log=False,
    )


@app.command()
def token(
    role: Annotated[
        list[str], typer.Option("--role", "-r", help=f"one of {', '.join(ROLES)}; repeatable")
    ],
    sub: Annotated[
        str | None, typer.Option(help="the subject: a customer's id (default: a new UUID)")
    ] = None,
    ttl: Annotated[int, typer.Option(min=1, help="seconds until the token expires")] = 3600,
) -> None:
    """Print a bearer token signed with the shop's secret (EVENTSHOP_JWT_SECRET)."""
    unknown = sorted(set(role) - set(ROLES))
    if unknown:
        raise typer.BadParameter(
            f"unknown role(s) {unknown}; choose from {ROLES}", param_hint="--role"
        )
    typer.echo(mint(Settings().secret(), sub or str(uuid.uuid4()), role, ttl))


def main() -> None:
    """The console script's entry point."""
    app()
