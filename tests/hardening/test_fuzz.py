"""Fuzzing: schemathesis generates requests from /openapi.json and sends them to the app.

The app is the real one on SQLite, called in-process through its ASGI interface, with
a small shop already in it (products, carts and orders of one customer), so that many
requests reach real aggregates rather than stopping at "not found". Each operation is
fuzzed with schema-valid requests and with schema-violating ones, mostly as the caller
it is for (staff, that customer, an auditor), and every answer must:

- never be a 5xx;
- conform to the OpenAPI document: documented status, content type, headers and body
  schema (schemathesis' own checks), and a schema-violating request must be refused;
- if it refuses (4xx), have recorded no event at all (the log head did not move).

Not checked: that every schema-valid request is accepted. The domain refuses some on
purpose, with a 422 naming the field, where JSON Schema cannot say why (a price over
the maximum as a decimal string, ``377.0`` for a strict integer, a name of spaces,
an adjustment of 0, a PATCH that changes nothing).

The number of examples per operation and mode is ``EVENTSHOP_FUZZ_EXAMPLES``: 16 by
default, about 1,050 requests over the two shards in some 25 s of one core here, mostly
Hypothesis generating them; ``make soak`` fuzzes with 200 (about 13,000 requests). Each
shard prints one summary line: how many requests, by status, and what was found.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, reject, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import ignored_auth, positive_data_acceptance

from api.app import create_app, open_shop
from commands.service import Shop
from eventshop.bootstrap import open_read_side
from eventshop.settings import Settings
from projections import ReadSide
from tests.api.conftest import SECRET, Headers, bearer
from tests.hardening.conftest import ALICE, STAFF, World

EXAMPLES = int(os.environ.get("EVENTSHOP_FUZZ_EXAMPLES", "16"))
AUDITOR = bearer("auditor", sub="audit-1")
# The domain refuses some schema-valid requests on purpose (see above), and the tokens
# are the test's own: the authorization matrix (test_authorization.py) covers bad ones.
EXCLUDED_CHECKS = [positive_data_acceptance, ignored_auth]
# How often a generated path parameter is swapped for the id of something that exists.
KNOWN_SHARE = 0.7


@dataclass
class Tally:
    """What the fuzzing did and found."""

    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    findings: list[str] = field(default_factory=list)

    def line(self, operations: int, seconds: float) -> str:
        by_status = ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items()))
        return (
            f"schemathesis: {self.requests} generated requests over {operations} operations"
            f" in {seconds:.0f} s ({by_status}); findings: {len(self.findings)}"
        )


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    the_shop = open_shop(settings_for(tmp_path))
    yield the_shop
    the_shop.close()


def settings_for(folder: Path) -> Settings:
    return Settings(
        database_url=f"sqlite:///{folder / 'fuzz.db'}", jwt_secret=SECRET, var_dir=folder
    )


@pytest.fixture
def read_side(shop: Shop, tmp_path: Path) -> Iterator[ReadSide]:
    the_read_side = open_read_side(settings_for(tmp_path), shop)
    the_read_side.start()
    yield the_read_side
    the_read_side.close()


@pytest.fixture
def app(shop: Shop, read_side: ReadSide, tmp_path: Path) -> FastAPI:
    # The shop and read side are passed in, so that the clients schemathesis opens per
    # request (each running the app's lifespan) neither close nor restart them.
    return create_app(settings_for(tmp_path), shop=shop, read_side=read_side)


def seed(app: FastAPI) -> dict[str, list[str]]:
    """Things for the fuzzer to find: the ids each path parameter may take."""
    with TestClient(app) as client:
        world = World(client)
        skus = [world.product(units=50) for _ in range(3)]
        carts = [world.cart(sku=sku)[0] for sku in skus]
        orders = [world.order(state)["id"] for state in ("placed", "placed", "paid", "shipped")]
    return {
        "sku": skus,
        "cart_id": carts,
        "order_id": orders,
        "aggregate_id": carts + orders,
    }


def callers_for(operation: Any) -> list[Headers]:
    """Mostly whoever the route is for, so that requests get past the role check; the
    other one now and then. The auditor's live feed never ends: it is fuzzed as others."""
    path, method = operation.path, operation.method.upper()
    if path.startswith("/api/audit/") and not path.endswith("/live"):
        right = [AUDITOR]
    elif path.startswith("/api/carts") or path.endswith(("/payment", "/cancellation")):
        right = [ALICE]
    elif path.startswith("/api/orders/") and method == "GET":
        right = [ALICE, STAFF]
    else:
        right = [STAFF]
    wrong = [caller for caller in (STAFF, ALICE) if caller not in right]
    return right * 4 + wrong


def fuzz_operation(
    operation: Any,
    mode: GenerationMode,
    shop: Shop,
    client: asgi.ASGIClient,
    known: dict[str, list[str]],
    tally: Tally,
) -> None:
    """Send up to EXAMPLES generated requests for one operation; record what fails."""
    callers = callers_for(operation)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
    def run(case: Case, data: st.DataObject) -> None:
        if mode.is_negative and not _surely_invalid(case):
            reject()
        for name in case.path_parameters or {}:
            # A negative case keeps its broken parameters: they are what it tests.
            if mode.is_negative:
                break
            if name in known and data.draw(st.floats(0, 1)) < KNOWN_SHARE:
                case.path_parameters[name] = data.draw(st.sampled_from(known[name]))
        # Set on the case itself (not only sent): schemathesis then re-checks whether a
        # negative case is still invalid before judging the answer.
        case.headers = {**dict(case.headers or {}), **data.draw(st.sampled_from(callers))}  # type: ignore[assignment]
        head = shop.head()
        response = case.call(session=client)
        tally.requests += 1
        tally.statuses[response.status_code] += 1
        if 400 <= response.status_code < 500:
            assert shop.head() == head, (
                f"{case.method} {case.formatted_path} was refused with"
                f" {response.status_code} but recorded {shop.head() - head} event(s)"
            )
        case.validate_response(response, excluded_checks=EXCLUDED_CHECKS)

    try:
        run()
    except Unsatisfiable:
        # Nothing to violate: the operation takes no parameters and no body.
        pass
    except (Exception, BaseExceptionGroup) as error:
        # Schemathesis reports its failures as a group, ours are assertions, and an
        # error that escapes the app (a 500) arrives as itself.
        tally.findings.append(f"{operation.label} ({mode.value}): {error!r}"[:3000])


def _surely_invalid(case: Case) -> bool:
    """Whether a negative case is still invalid as sent, as schemathesis expects: not
    when its only faults are a query or header value of another JSON type (``null``
    made ``5`` or ``[false]``): sent as text, it is a valid string.
    """
    data = getattr(getattr(case.meta, "phase", None), "data", None)
    mutations = list(getattr(data, "mutations", ()) or ())
    as_text = ("query", "header")
    return not mutations or not all(
        getattr(m.parameter_location, "value", m.parameter_location) in as_text
        and tuple(m.keywords) == ("type",)
        for m in mutations
    )


# The operations are fuzzed in shards, each its own test with its own shop, so that
# pytest-xdist's two workers share them out (each shard costs some 1.5 s to set up).
SHARDS = 2


@pytest.mark.parametrize("shard", range(SHARDS))
def test_fuzz_the_api(
    app: FastAPI, shop: Shop, shard: int, capsys: pytest.CaptureFixture[str]
) -> None:
    known = seed(app)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    # The test sends each case as one of its callers: generated Authorization headers
    # (nine in ten of the negative cases, all thrown away) would be wasted work.
    schema.config.generation.update(with_security_parameters=False)
    # An operation the loader cannot read raises here, failing the test.
    every = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    operations = every[shard::SHARDS]
    tally = Tally()
    started = time.monotonic()
    # One client for every request: schemathesis would otherwise open one per request,
    # each with a thread and an event loop of its own (two thirds of the test's time).
    with asgi.get_client(app) as client:
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                fuzz_operation(operation, mode, shop, client, known, tally)
    summary = tally.line(len(operations), time.monotonic() - started)
    with capsys.disabled():
        print(f"\n{summary}")
        for finding in tally.findings:
            print(f"\n{finding}")
    assert not tally.findings, summary
    # Every operation was exercised, and not only by refusals.
    assert tally.requests >= len(operations) * 2
    assert sum(n for status, n in tally.statuses.items() if status < 300) > len(operations)
