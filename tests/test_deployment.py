"""docker-compose.yml and the Dockerfile, checked by parsing (no Docker engine runs here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.main import get_command

from api.cli import app as cli_app

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return dict(compose["services"])


def test_postgres_keeps_its_data_in_a_volume_and_reports_health(services: dict[str, Any]) -> None:
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:15")
    assert any(v.endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])


@pytest.mark.parametrize("name", ["migrate", "api", "worker"])
def test_every_eventshop_service_points_at_the_postgres_service(
    services: dict[str, Any], name: str
) -> None:
    env = services[name]["environment"]
    assert "@postgres:5432/" in env["EVENTSHOP_DATABASE_URL"]
    assert env["EVENTSHOP_JWT_SECRET"].startswith("${EVENTSHOP_JWT_SECRET")
    assert services[name]["build"] == "."


def test_api_waits_for_tables_and_reports_readiness(services: dict[str, Any]) -> None:
    api = services["api"]
    assert api["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "/health/ready" in " ".join(api["healthcheck"]["test"])
    assert api["environment"]["EVENTSHOP_RUN_PROJECTIONS"] == "false"


def test_workers_are_scaled_out(services: dict[str, Any]) -> None:
    assert services["worker"]["deploy"]["replicas"] >= 2


@pytest.mark.parametrize("name", ["migrate", "api", "worker"])
def test_each_service_runs_a_command_the_cli_has(services: dict[str, Any], name: str) -> None:
    program, command, *_ = services[name]["command"]
    assert program == "eventshop"
    assert command in get_command(cli_app).commands  # type: ignore[attr-defined]


def test_the_dockerfile_installs_every_package_and_serves() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in ("domain", "commands", "projections", "api"):
        assert f"COPY {package} ./{package}" in dockerfile
    assert '"eventshop", "serve"' in dockerfile
