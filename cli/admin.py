"""`eventshop admin-password-hash`: the hash of the admin's password, for
EVENTSHOP_ADMIN_PASSWORD_HASH (the console's login form)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from api.passwords import hash_password


def admin_password_hash(
    stdin: Annotated[
        bool, typer.Option("--stdin", help="read the password from standard input (one line)")
    ] = False,
) -> None:
    """Print the hash of a password for EVENTSHOP_ADMIN_PASSWORD_HASH (scrypt, salted).

    Asks for the password twice, unless --stdin; the password itself is kept nowhere.
    Set EVENTSHOP_ADMIN_USER too: that admin then signs in to /console with the two.
    """
    if stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        # The prompts go to stderr: stdout holds the hash alone, for $(...).
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    if not password:
        typer.echo("the password is empty", err=True)
        raise typer.Exit(1)
    typer.echo(hash_password(password))
