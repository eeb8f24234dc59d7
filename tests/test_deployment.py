"""docker-compose.yml and the Dockerfile, checked by parsing (no Docker engine runs here)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.main import get_command

from cli.main import WORKER_ALIVE_FILE, WORKER_BEAT_SECONDS
from cli.main import app as cli_app
from eventshop.settings import Settings

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
    assert services["worker"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )


def test_the_api_is_scaled_out_without_a_fixed_host_port(services: dict[str, Any]) -> None:
    api = services["api"]
    assert api["deploy"]["replicas"] >= 2
    # Two replicas cannot both bind one host port: publish the container port only.
    for mapping in api["ports"]:
        published = mapping.get("published") if isinstance(mapping, dict) else None
        assert published is None and ":" not in str(mapping), mapping


def test_every_long_running_service_reports_its_health(services: dict[str, Any]) -> None:
    for name, service in services.items():
        if service.get("restart") == "no":
            continue  # a one-shot job (migrate): the others wait for it to complete
        assert service["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name


@pytest.mark.parametrize("name", ["migrate", "api", "worker"])
def test_configuration_names_only_settings_eventshop_has(
    services: dict[str, Any], name: str
) -> None:
    for variable in services[name]["environment"]:
        field = variable.removeprefix("EVENTSHOP_").lower()
        assert variable.startswith("EVENTSHOP_") and field in Settings.model_fields, variable


def run_healthcheck(service: dict[str, Any], var_dir: Path) -> int:
    """The service's healthcheck command, run here as the container would run it."""
    kind, program, *args = service["healthcheck"]["test"]
    assert (kind, program) == ("CMD", "python")
    env = {**os.environ, "EVENTSHOP_VAR_DIR": str(var_dir)}
    return subprocess.run([sys.executable, *args], env=env, capture_output=True).returncode


def test_the_worker_healthcheck_reads_the_heartbeat_the_worker_writes(
    services: dict[str, Any], tmp_path: Path
) -> None:
    worker = services["worker"]
    assert run_healthcheck(worker, tmp_path) != 0  # no heartbeat yet
    alive = tmp_path / WORKER_ALIVE_FILE
    alive.touch()
    assert run_healthcheck(worker, tmp_path) == 0
    # A worker that beats on time stays healthy between two beats, even a late one.
    late = time.time() - 3 * WORKER_BEAT_SECONDS
    os.utime(alive, (late, late))
    assert run_healthcheck(worker, tmp_path) == 0
    stale = time.time() - 120
    os.utime(alive, (stale, stale))
    assert run_healthcheck(worker, tmp_path) != 0


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
