"""Text across the command line: arguments refuse control characters; what the shop
stored is printed as it is, never as Rich markup or terminal control sequences."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from api.auth import decode
from cli.main import app
from cli.text import literal, shown


@pytest.mark.parametrize(
    "args",
    [
        ["token", "--role", "customer", "--sub", "alice\x1b[8m"],
        ["token", "--role", "customer", "--sub", "two\nlines"],
        ["serve", "--host", "127.0.0.1\r"],
        ["audit", "verify", "--digest", "ab\x07", "--upto", "1"],
    ],
)
def test_an_argument_with_a_control_character_is_refused(args: list[str]) -> None:
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    assert "control characters" in result.output


@pytest.mark.parametrize(
    "stored",
    [
        "[/bold]",
        "[link=https://evil.example]click[/link]",
        "ends with a backslash \\",
        "\x1b]8;;https://evil.example\x1b\\click",
    ],
)
def test_stored_text_is_printed_as_it_is(stored: str) -> None:
    console = Console(record=True, force_terminal=True, width=200)
    console.print(literal(stored))
    console.print(f"[red]{shown(stored)}[/red]")
    text = console.export_text()
    expected = stored.replace("\x1b", "\\x1b")
    assert text == f"{expected}\n{expected}\n"
    assert "\x1b]8;" not in console.export_text(styles=True)


def test_token_refuses_to_invent_a_key(tmp_path: Path) -> None:
    env = {"EVENTSHOP_VAR_DIR": str(tmp_path / "var"), "EVENTSHOP_JWT_SECRET": "", "COLUMNS": "200"}
    refused = CliRunner().invoke(app, ["token", "--role", "staff"], env=env)
    assert refused.exit_code == 1
    assert "no key to sign with" in refused.output and "jwt-secret" in refused.output
    assert not (tmp_path / "var").exists()
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "jwt-secret").write_text("k" * 40)
    signed = CliRunner().invoke(app, ["token", "--role", "staff", "--sub", "s"], env=env)
    assert signed.exit_code == 0, signed.output
    assert decode("k" * 40, signed.output.strip()).sub == "s"
