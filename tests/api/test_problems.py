"""Every problem's ``type`` is a page the app serves, saying what went wrong and what to do."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.errors import _kebab
from api.problems import TYPES
from domain.errors import DomainError
from tests.api.conftest import ALICE, SECRET, STAFF
from tests.conftest import settings_for


@pytest.fixture
def client(sqlite_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = settings_for(sqlite_url, var_dir=tmp_path, jwt_secret=SECRET, run_projections=False)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def every_subclass(cls: type) -> set[type]:
    return {cls} | {sub for child in cls.__subclasses__() for sub in every_subclass(child)}


def test_every_domain_error_has_a_page() -> None:
    # The shop's own errors: tests may define more (tests.projections.support does).
    kinds = {
        _kebab(error.__name__)
        for error in every_subclass(DomainError)
        if not error.__module__.startswith("tests.")
    }
    assert kinds - TYPES.keys() == set()


def test_the_type_of_each_problem_resolves_to_its_page(client: TestClient) -> None:
    answers: list[httpx.Response] = [
        client.get("/api/products"),  # 401
        client.post("/api/products", json={}, headers=ALICE),  # 403
        client.get("/api/nothing"),  # 404, no route
        client.get("/api/products/NOPE", headers=STAFF),  # 404, the domain's
        client.delete("/api/products/NOPE", headers=STAFF),  # 405
        client.post("/api/products", content=b"{}", headers=STAFF),  # 415
        client.post("/api/products", json={"sku": "A"}, headers=STAFF),  # 422
        client.post(
            "/api/products",
            content=b"{",
            headers={**STAFF, "Content-Type": "application/json"},
        ),  # 400
    ]
    seen = set()
    for answer in answers:
        problem = answer.json()
        assert problem["type"].startswith("http://testserver/problems/"), problem
        page = client.get(problem["type"].removeprefix("http://testserver"))
        assert page.status_code == 200, problem["type"]
        assert page.headers["content-type"].startswith("text/html")
        assert f"(HTTP {problem['status']})" in page.text
        seen.add(problem["status"])
    assert seen == {400, 401, 403, 404, 405, 415, 422}
    assert client.get("/problems/no-such-thing").status_code == 404
