"""Queries waiting for ``min_position`` hold no thread, and only so many wait at once
(issue 14, reproduction 3: 60 waiting readers took every worker thread, and commands
went from 57 ms to 4.7 s)."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from eventshop.settings import Settings
from tests.api.conftest import ALICE, SECRET, problem_of


@pytest.fixture
def lagging_app(sqlite_url: str, tmp_path: Path) -> Iterator[Callable[..., FastAPI]]:
    """An API whose read models nobody feeds (its workers are down): every query with a
    ``min_position`` waits, for as long as the settings say."""
    apps: list[FastAPI] = []

    def make(**settings: object) -> FastAPI:
        app = create_app(
            Settings(  # type: ignore[call-arg]
                _env_file=None,
                database_url=sqlite_url,
                jwt_secret=SECRET,
                var_dir=tmp_path,
                run_projections=False,
                **settings,
            )
        )
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.state.read_side.close()
        app.state.shop.close()


def run(app: FastAPI, scenario: Callable[[httpx.AsyncClient], Awaitable[None]]) -> None:
    async def main() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
            await scenario(client)

    asyncio.run(main())


async def waiting(app: FastAPI, count: int) -> None:
    deadline = time.monotonic() + 10
    while app.state.position_waits.waiting < count:
        assert time.monotonic() < deadline, "the readers never started waiting"
        await asyncio.sleep(0.005)


def readers(client: httpx.AsyncClient, count: int, position: int) -> list[asyncio.Task]:  # type: ignore[type-arg]
    """``count`` clients asking for orders at ``position`` again and again, as clients
    told 503 (not there yet) do, until cancelled."""

    async def read() -> None:
        while True:
            await client.get("/api/orders", params={"min_position": position}, headers=ALICE)

    return [asyncio.ensure_future(read()) for _ in range(count)]


# Commands per phase and round: idle, then with 60 readers waiting, in two rounds, so
# that the ups and downs of a shared machine fall on both phases alike.
ROUNDS, COMMANDS = 2, 10


def test_sixty_waiting_readers_leave_commands_as_fast_as_when_idle(
    lagging_app: Callable[..., FastAPI],
) -> None:
    app = lagging_app(read_wait_seconds=2)
    ratios: list[float] = []

    async def scenario(client: httpx.AsyncClient) -> None:
        async def commands(seconds: list[float]) -> None:
            for _ in range(COMMANDS):
                started = time.perf_counter()
                response = await client.post("/api/carts", json={}, headers=ALICE)
                seconds.append(time.perf_counter() - started)
                assert response.status_code == 201, response.text

        head = (await client.post("/api/carts", json={}, headers=ALICE)).json()["position"]
        await commands([])  # warm
        # A noisy neighbour can still make one measurement lose: the best of three counts.
        while len(ratios) < 3 and (not ratios or min(ratios) > 1.5):
            idle: list[float] = []
            busy: list[float] = []
            for _ in range(ROUNDS):
                await commands(idle)
                tasks = readers(client, 60, head)
                await waiting(app, 60)
                assert anyio.to_thread.current_default_thread_limiter().borrowed_tokens == 0
                await commands(busy)
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            ratios.append(statistics.median(busy) / statistics.median(idle))

    run(app, scenario)
    assert min(ratios) <= 1.5, f"command p50 with 60 readers waiting / idle: {ratios}"


def test_past_the_cap_a_waiting_reader_is_refused_at_once(
    lagging_app: Callable[..., FastAPI],
) -> None:
    app = lagging_app(read_wait_seconds=5, read_waiters=2)

    async def scenario(client: httpx.AsyncClient) -> None:
        head = (await client.post("/api/carts", json={}, headers=ALICE)).json()["position"]
        tasks = readers(client, 2, head)
        await waiting(app, 2)
        started = time.monotonic()
        refused = await client.get("/api/orders", params={"min_position": head}, headers=ALICE)
        assert time.monotonic() - started < 1
        assert "too many" in problem_of(refused, 503)["detail"]
        assert refused.headers["Retry-After"] == "1"
        # A reader whose read model is fresh enough does not wait, so is never refused.
        assert (await client.get("/api/orders", headers=ALICE)).status_code == 200
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert app.state.position_waits.waiting == 0

    run(app, scenario)
