"""docker-compose.yml and the Dockerfile, checked by parsing (no Docker engine runs here)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict, make_conninfo
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
    assert env["EVENTSHOP_DATABASE_URL"] == "postgresql://eventshop@postgres:5432/eventshop"
    # The password goes apart from the URL, where '@', ':', '/' or '#' in it would break it.
    assert env["EVENTSHOP_DATABASE_PASSWORD"] == "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
    postgres_password = services["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert env["EVENTSHOP_DATABASE_PASSWORD"] == postgres_password
    assert env["EVENTSHOP_JWT_SECRET"].startswith("${EVENTSHOP_JWT_SECRET")
    # Every container wraps and unwraps the customers' data keys with the same key.
    assert env["EVENTSHOP_PERSONAL_DATA_MASTER_KEY"].startswith(
        "${EVENTSHOP_PERSONAL_DATA_MASTER_KEY:?"
    )
    assert services[name]["build"] == "."


VARIABLE = re.compile(
    r"""\$(?:
        (?P<escaped>\$)
        | \{(?P<braced>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}
        | (?P<bare>\w+)
    )""",
    re.VERBOSE,
)


def interpolate(value: str, environ: dict[str, str]) -> str:
    """A compose file's value as `docker compose` makes it from the environment: $$, $NAME,
    ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error} and ${NAME?error}."""

    def one(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["bare"]
        op, arg = match["op"], match["arg"] or ""
        value = environ.get(name)
        unset = value is None or (op is not None and op.startswith(":") and value == "")
        if op in (":?", "?") and unset:
            raise KeyError(f"{name}: {arg}")
        if op in (":-", "-") and unset:
            return arg
        return value or ""

    return VARIABLE.sub(one, value)


def test_interpolate_reads_values_as_compose_does() -> None:
    environ = {"A": "p@ss", "EMPTY": ""}
    assert interpolate("x${A}y$A$$A", environ) == "xp@ssyp@ss$A"
    assert interpolate("${EMPTY:-d} ${EMPTY-d} ${UNSET-d}", environ) == "d  d"
    assert interpolate("${A:?need A}", environ) == "p@ss"
    with pytest.raises(KeyError, match="need B"):
        interpolate("${B:?need B}", environ)


AWKWARD_PASSWORD = "p@ss:w/rd#1"


@pytest.mark.parametrize("name", ["migrate", "api", "worker"])
def test_a_password_with_url_delimiters_reaches_libpq_intact(
    services: dict[str, Any], name: str
) -> None:
    environ = {
        "POSTGRES_PASSWORD": AWKWARD_PASSWORD,
        "EVENTSHOP_JWT_SECRET": "k",
        "EVENTSHOP_PERSONAL_DATA_MASTER_KEY": "m",
    }
    given = services[name]["environment"]
    env = {key: interpolate(str(value), environ) for key, value in given.items()}
    postgres_env = services["postgres"]["environment"]
    assert interpolate(postgres_env["POSTGRES_PASSWORD"], environ) == AWKWARD_PASSWORD

    # What the app is given: a URL without a password, and the password on its own.
    url = urlsplit(env["EVENTSHOP_DATABASE_URL"])
    assert url.password is None
    assert env["EVENTSHOP_DATABASE_PASSWORD"] == AWKWARD_PASSWORD
    conninfo = make_conninfo(
        host=url.hostname,
        port=str(url.port),
        dbname=unquote(url.path.lstrip("/")),
        user=unquote(url.username or ""),
        password=env["EVENTSHOP_DATABASE_PASSWORD"],
    )
    params = conninfo_to_dict(conninfo)
    assert params["password"] == AWKWARD_PASSWORD
    assert params["user"] == postgres_env["POSTGRES_USER"] == "eventshop"
    assert params["dbname"] == postgres_env["POSTGRES_DB"] == "eventshop"
    assert (params["host"], params["port"]) == ("postgres", "5432")

    # The old way, the same password inside the URL, comes apart: this is why it moved out.
    inline = urlsplit(f"postgresql://eventshop:{AWKWARD_PASSWORD}@postgres:5432/eventshop")
    assert inline.password != AWKWARD_PASSWORD


def release_parts(image: str) -> int:
    """How many dot-separated numbers an image's tag starts with (postgres:15.19 -> 2)."""
    _, _, tag = image.partition(":")
    match = re.match(r"\d+(?:\.\d+)*", tag)
    return len(match.group().split(".")) if match else 0


def test_images_are_pinned_to_a_minor_release(services: dict[str, Any]) -> None:
    # PostgreSQL numbers its minor releases 15.19; Python its 3.11.17. A tag without the
    # minor release ("postgres:15", "python:3.11-slim") moves under the same name.
    assert release_parts(services["postgres"]["image"]) >= 2, services["postgres"]["image"]
    for name, service in services.items():
        if "build" not in service:  # eventshop's own image is built from the Dockerfile
            assert release_parts(service["image"]) >= 2, (name, service["image"])
    (base,) = re.findall(r"^FROM\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert base.startswith("python:") and release_parts(base) >= 3, base


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


PACKAGES = ("domain", "eventstore", "commands", "projections", "api", "cli", "eventshop")


def test_the_dockerfile_installs_every_package_from_the_lock_and_serves() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in PACKAGES:
        assert (ROOT / package / "__init__.py").exists(), package
        assert f"COPY {package} ./{package}" in dockerfile
    assert "pip install --no-cache-dir -r requirements/runtime.txt" in dockerfile
    assert "pip install --no-cache-dir --no-deps ." in dockerfile
    assert "USER eventshop" in dockerfile
    assert '"eventshop", "serve"' in dockerfile


def locked(name: str) -> dict[str, str]:
    """requirements/NAME.txt's pins: package name -> version specifier."""
    text = (ROOT / "requirements" / f"{name}.txt").read_text()
    return dict(re.findall(r"^([A-Za-z0-9._-]+)(\S*)", text, re.MULTILINE))


def requirement_names(requirements: list[str]) -> set[str]:
    """The project names of PEP 508 requirements, normalised as in the lock files."""
    names = (re.match(r"[A-Za-z0-9._-]+", r) for r in requirements)
    return {re.sub(r"[-_.]+", "-", m.group()).lower() for m in names if m}


def test_the_locks_hold_every_dependency_of_pyproject() -> None:
    # A dependency added to pyproject.toml without `make lock` is missing from every
    # install (make run, make test, the Dockerfile, CI): this names it.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = requirement_names(project["dependencies"])
    test = requirement_names(project["optional-dependencies"]["test"])
    assert runtime - locked("runtime").keys() == set(), "run `make lock`"
    assert (runtime | test) - locked("test").keys() == set(), "run `make lock`"


def test_the_locks_pin_every_requirement_with_hashes() -> None:
    runtime = (ROOT / "requirements" / "runtime.txt").read_text()
    test = (ROOT / "requirements" / "test.txt").read_text()
    pins = {}
    for name, text in (("runtime", runtime), ("test", test)):
        lines = re.findall(r"^([A-Za-z0-9._-]+)(\S*)", text, re.MULTILINE)
        assert lines, name
        for package, spec in lines:
            assert spec.startswith("=="), (name, package, spec)
        pins[name] = {package: spec for package, spec in lines}
        # Every pin carries hashes, so pip installs the lock in --require-hashes mode.
        assert text.count("--hash=sha256:") >= len(lines), name
    # The test lock holds the runtime one, with the same versions.
    assert pins["runtime"].items() <= pins["test"].items()
    assert {"fastapi", "eventsourcing", "psycopg", "uvicorn"} <= pins["runtime"].keys()
    assert {"pytest", "mypy", "ruff"} <= pins["test"].keys()
    assert not {"pytest", "mypy", "ruff", "matplotlib"} & pins["runtime"].keys()
