"""The configured admin's login: name and password for a token like `eventshop token`'s;
refusals as problems with their pages; a pause after too many failures."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from api.auth import decode
from api.passwords import BadHash, PasswordHash, hash_password
from cli.main import app as cli_app
from tests.api.conftest import SECRET, problem_of
from tests.conftest import settings_for

PASSWORD = "correct horse battery staple"
HASHED = hash_password(PASSWORD)

MakeClient = Callable[..., TestClient]


@pytest.fixture
def make_client(sqlite_url: str, tmp_path: Path) -> Iterator[MakeClient]:
    clients: list[TestClient] = []

    def make(**settings: Any) -> TestClient:
        app = create_app(
            settings_for(
                sqlite_url,
                var_dir=tmp_path,
                jwt_secret=SECRET,
                run_projections=False,
                **settings,
            )
        )
        client = TestClient(app)
        clients.append(client.__enter__())
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def admin(make_client: MakeClient) -> TestClient:
    return make_client(admin_user="root", admin_password_hash=HASHED)


def login(client: TestClient, username: str, password: str) -> Any:
    return client.post("/api/auth/login", json={"username": username, "password": password})


def has_page(client: TestClient, problem: dict[str, Any]) -> bool:
    page = client.get(problem["type"].removeprefix("http://testserver"))
    return page.status_code == 200 and f"(HTTP {problem['status']})" in page.text


def test_the_admin_gets_a_token_for_every_role_of_the_console(make_client: MakeClient) -> None:
    client = admin(make_client)
    assert client.get("/api/auth/login").json() == {"password": True}
    answer = login(client, "root", PASSWORD)
    assert answer.status_code == 200, answer.text
    session = answer.json()
    caller = decode(SECRET, session["token"])
    assert (caller.sub, caller.roles) == ("root", {"admin", "auditor", "staff"})
    assert session["roles"] == ["admin", "auditor", "staff"]
    assert session["expires_in"] == 3600
    headers = {"Authorization": f"Bearer {session['token']}"}
    assert client.get("/api/projections", headers=headers).status_code == 200


def test_a_wrong_name_or_password_is_refused_then_the_address_waits(
    make_client: MakeClient,
) -> None:
    client = admin(make_client)
    for username, password in [("root", "guess")] * 4 + [("admin", PASSWORD)]:
        problem = problem_of(login(client, username, password), 401)
        assert problem["type"].endswith("/problems/login-failed")
        assert problem["detail"] == "wrong user name or password"  # which one, it does not say
    assert has_page(client, problem)
    # Five failures in a minute: even the right password waits now.
    refused = login(client, "root", PASSWORD)
    problem = problem_of(refused, 429)
    assert problem["type"].endswith("/problems/too-many-attempts")
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert has_page(client, problem)


def test_without_an_admin_there_is_no_login(make_client: MakeClient) -> None:
    client = make_client()
    assert client.get("/api/auth/login").json() == {"password": False}
    problem = problem_of(login(client, "root", PASSWORD), 404)
    assert problem["type"].endswith("/problems/login-not-configured")
    assert has_page(client, problem)


def test_a_half_or_badly_configured_admin_stops_the_start(make_client: MakeClient) -> None:
    with pytest.raises(ValueError, match="set both"):
        make_client(admin_user="root")
    with pytest.raises(BadHash):
        make_client(admin_user="root", admin_password_hash="plain-text-password")


def test_the_hash_command_makes_a_salted_hash_of_the_password() -> None:
    runner = CliRunner()
    typed = runner.invoke(cli_app, ["admin-password-hash"], input=f"{PASSWORD}\n{PASSWORD}\n")
    assert typed.exit_code == 0, typed.output
    hashed = typed.output.strip().splitlines()[-1]
    assert PasswordHash.parse(hashed).matches(PASSWORD)
    assert not PasswordHash.parse(hashed).matches(PASSWORD + " ")
    piped = runner.invoke(cli_app, ["admin-password-hash", "--stdin"], input=f"{PASSWORD}\n")
    assert piped.exit_code == 0, piped.output
    assert piped.output.strip() != hashed  # another salt
    assert PasswordHash.parse(piped.output.strip()).matches(PASSWORD)
