"""The layout is the architecture: dependencies point inwards, modules stay small.

api/ and cli/ → eventshop/ (the composition root) → commands/, projections/ →
eventstore/ → domain/. The read side never imports the write side, and the domain
imports none of them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("domain", "eventstore", "commands", "projections", "api", "cli", "eventshop")
# What each package may NOT import (of the project's own packages).
FORBIDDEN = {
    "domain": {"eventstore", "commands", "projections", "api", "cli", "eventshop"},
    "eventstore": {"commands", "projections", "api", "cli", "eventshop"},
    "commands": {"projections", "api", "cli", "eventshop"},
    "projections": {"commands", "api", "cli", "eventshop"},
    "eventshop": {"api", "cli"},
    "api": {"cli"},
    "cli": set(),
}
MAX_LINES = 500


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def imported_packages(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_dependencies_point_inwards(package: str) -> None:
    wrong = {
        f"{path.relative_to(ROOT)} imports {', '.join(sorted(bad))}"
        for path in modules(package)
        if (bad := imported_packages(path) & FORBIDDEN[package])
    }
    assert not wrong, sorted(wrong)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_is_over_500_lines(package: str) -> None:
    long = {
        str(path.relative_to(ROOT)): lines
        for path in modules(package)
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, long


def test_the_domain_does_no_io() -> None:
    io = {"psycopg", "sqlite3", "fastapi", "starlette", "socket", "requests", "httpx"}
    wrong = {
        str(path.relative_to(ROOT)): sorted(bad)
        for path in modules("domain")
        if (bad := imported_packages(path) & io)
    }
    assert not wrong, wrong
