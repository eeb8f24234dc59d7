"""The console's page and assets as the app serves them: all from this origin, under a
Content-Security-Policy that allows nothing else. (tests/browser runs it in Chromium.)"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.console import STATIC
from tests.conftest import settings_for

# Any absolute URL; the SVG and XHTML namespaces are names, never fetched.
_ABSOLUTE_URL = re.compile(r"(?:https?:)?//(?!www\.w3\.org/)[a-z0-9.-]+\.[a-z]{2,}", re.I)
_IMPORT = re.compile(r"""(?:from|import)\s+["'](\.{1,2}/[^"']+)["']""")


@pytest.fixture
def client(sqlite_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = settings_for(sqlite_url, var_dir=tmp_path, run_projections=False)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def assets() -> list[Path]:
    return sorted(p for p in STATIC.rglob("*") if p.is_file())


def test_the_page_is_served_under_a_policy_that_allows_this_origin_only(
    client: TestClient,
) -> None:
    page = client.get("/console")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self';" in policy and "connect-src 'self';" in policy
    assert client.get("/console/", follow_redirects=False).headers["location"] == "/console"
    # The console is no part of the API's contract.
    paths = client.get("/openapi.json").json()["paths"]
    assert not any(path.startswith("/console") for path in paths)


def test_every_asset_is_served_by_the_app_and_names_no_other_host(client: TestClient) -> None:
    served = {}
    for path in assets():
        url = f"/console/assets/{path.relative_to(STATIC).as_posix()}"
        answer = client.get(url)
        assert answer.status_code == 200, url
        served[url] = answer.text
        assert not _ABSOLUTE_URL.search(answer.text), f"{url} names another host"
    # What the page loads, and what each module imports, is among them.
    page = client.get("/console").text
    for linked in re.findall(r'(?:src|href)="(/console/assets/[^"]+)"', page):
        assert linked in served, linked
    for url, text in served.items():
        for relative in _IMPORT.findall(text):
            target = (Path(url).parent / relative).resolve().as_posix()
            assert target in served, f"{url} imports {relative}, which is not served"
    assert client.get("/console/assets/../__init__.py").status_code == 404
