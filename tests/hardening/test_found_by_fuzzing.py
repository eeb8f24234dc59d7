"""What the fuzzer found, kept as plain tests on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import fields_of, problem_of
from tests.hardening.conftest import ALICE, AUDITOR, STAFF

HUGE = 2**70


@pytest.mark.parametrize(
    "query",
    [f"after={HUGE}", f"cursor={HUGE}"],
)
def test_a_position_past_any_integer_is_past_the_end_of_the_log(
    client: TestClient, query: str
) -> None:
    # It was a 500 on SQLite, whose integers are 64-bit: the driver overflowed.
    client.post("/api/carts", json={}, headers=ALICE)
    response = client.get(f"/api/audit/events?{query}", headers=AUDITOR)
    assert response.status_code == 200, response.text
    assert response.json() == {"items": [], "next_cursor": None}


def test_an_export_past_any_integer_ends_cleanly(client: TestClient) -> None:
    # It broke off mid-stream on SQLite.
    client.post("/api/carts", json={}, headers=ALICE)
    assert client.get(f"/api/audit/export?after={HUGE}", headers=AUDITOR).text == ""
    whole = client.get(f"/api/audit/export?until={HUGE}", headers=AUDITOR)
    assert whole.status_code == 200
    assert [line[:12] for line in whole.text.splitlines()] == ['{"position":']


def test_a_one_valued_query_parameter_given_twice_is_refused(client: TestClient) -> None:
    # It was answered with the last value, the others silently dropped.
    response = client.get("/api/audit/events?after=0&after=5", headers=AUDITOR)
    assert fields_of(problem_of(response, 422)) == {"after"}
    once = client.get("/api/audit/events?after=0&limit=2", headers=AUDITOR)
    assert once.status_code == 200
    # Parameters a route does not take are ignored, repeated or not.
    assert client.get("/api/products/NONE?x=1&x=2", headers=STAFF).status_code == 404
