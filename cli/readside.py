"""The read side a ``eventshop projections`` command works on, and how its errors end
the command: a line on stderr and an exit code, never a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer

from cli.output import err
from cli.text import shown
from domain.errors import DomainError
from eventshop.bootstrap import open_read_side, open_shop
from eventshop.settings import Settings
from projections import AlreadyRebuilding, ReadSide


@contextmanager
def read_side() -> Iterator[ReadSide]:
    """The read side of the configured store; nothing is fed here unless a command does."""
    settings = Settings()
    if settings.database_url.is_memory:
        err().print(
            "[red]memory:// lives inside one process: there is nothing to operate from"
            " here. Point EVENTSHOP_DATABASE_URL at a sqlite:/// or postgresql:// store.[/red]"
        )
        raise typer.Exit(2)
    # The log's tables are the write side's to create, on a database nothing wrote yet.
    open_shop(settings).close()
    opened = open_read_side(settings)
    try:
        yield opened
    except (typer.Exit, typer.Abort):
        raise
    except AlreadyRebuilding as error:
        err().print(f"[red]{shown(error.detail)}[/red]")
        raise typer.Exit(1) from None
    except DomainError as error:
        err().print(f"[red]{shown(error.detail)}[/red]")
        raise typer.Exit(2) from None
    except Exception as error:
        # A failed rebuild: the live copy is untouched; say why, no traceback.
        err().print(f"[red]{type(error).__name__}: {shown(error)}[/red]")
        raise typer.Exit(1) from None
    finally:
        opened.close()


def known(opened: ReadSide, name: str) -> None:
    """Exit 2 unless ``name`` is one of the read models."""
    if name not in opened.names:
        err().print(
            f"[red]no projection named {shown(repr(name))}; there are {', '.join(opened.names)}"
        )
        raise typer.Exit(2)


def seconds(value: float | None) -> str:
    """A duration as people read it: ``45s``, ``3m07s``; ``?`` when unknown."""
    if value is None:
        return "?"
    minutes, rest = divmod(int(value), 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{rest}s"
