"""Every ``--help`` of ``eventshop`` reads as plain text at 80 columns: no markup left
over from docstrings, no type labels in place of a flag's value."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
import typer
from typer.testing import CliRunner

from cli.main import app

LEFTOVERS = ("``", "<bool>", "<list[", ":class:", ":func:", "[/", "\\b")


def command_paths(command: object = None, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command and group of the app, as the words that name it."""
    command = command or typer.main.get_command(app)
    yield path
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from command_paths(sub, (*path, name))


PATHS = list(command_paths())


def test_the_walk_finds_every_command() -> None:
    assert ("audit", "history") in PATHS and ("projections", "parked", "list") in PATHS
    assert len(PATHS) > 20


@pytest.mark.parametrize("path", PATHS, ids=lambda path: " ".join(path) or "eventshop")
def test_help_is_plain_text_that_fits_80_columns(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    text = result.stdout
    for leftover in LEFTOVERS:
        assert leftover not in text, f"{leftover!r} in the help of {' '.join(path)}:\n{text}"
    assert all(len(line) <= 80 for line in text.splitlines()), text
    # A value shows its metavar (``--upto POSITION``), a flag nothing after its name.
    assert "<str>" not in text.split("Options:")[-1], text
    assert "<int" not in text.split("Options:")[-1], text
    # Paragraphs are wrapped to the width, not broken where the docstring's lines were:
    # within a paragraph, a line ends only where the next word would not fit.
    description = text.split("\nArguments:")[0].split("\nOptions:")[0]
    lines = description.splitlines()
    for line, following in itertools.pairwise(lines):
        if line.strip() and following.strip():
            next_word = following.split()[0]
            assert len(line) + 1 + len(next_word) > 80, (line, following)


def test_a_flag_and_a_value_read_as_they_are_typed() -> None:
    verify = CliRunner().invoke(app, ["audit", "verify", "--help"], env={"COLUMNS": "80"})
    assert "--json " in verify.stdout and "--upto POSITION" in verify.stdout
    assert "--public-key KEY" in verify.stdout
    token = CliRunner().invoke(app, ["token", "--help"], env={"COLUMNS": "80"})
    assert "-r, --role ROLE" in token.stdout


SHOWING = [
    ("seed",),
    ("audit", "history"),
    ("audit", "state"),
    ("audit", "export"),
    ("audit", "digest"),
    ("audit", "checkpoint"),
    ("audit", "verify"),
    ("audit", "receipts"),
    ("audit", "public-key"),
    ("projections", "status"),
    ("projections", "rebuild"),
    ("projections", "parked", "list"),
    ("projections", "parked", "retry"),
    ("projections", "parked", "skip"),
]


@pytest.mark.parametrize("path", SHOWING, ids=" ".join)
def test_every_command_that_lists_or_shows_takes_json(path: tuple[str, ...]) -> None:
    assert path in PATHS
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80"})
    assert "--json" in result.stdout
