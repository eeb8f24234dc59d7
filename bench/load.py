"""A small closed-loop HTTP load generator: N clients, each sending one request at a time."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms)

    @property
    def p99(self) -> float:
        return self.percentile(99)


async def _client(
    http: httpx.AsyncClient,
    request: Callable[[int, int], tuple[str, str, dict]],
    client_no: int,
    stop_at: float,
    result: LoadResult,
) -> None:
    n = 0
    while time.perf_counter() < stop_at:
        method, url, kwargs = request(client_no, n)
        started = time.perf_counter()
        response = await http.request(method, url, **kwargs)
        result.latencies_ms.append((time.perf_counter() - started) * 1000)
        result.requests += 1
        if response.status_code >= 400:
            result.errors += 1
        n += 1


async def _run(
    base_url: str,
    request: Callable[[int, int], tuple[str, str, dict]],
    clients: int,
    seconds: float,
    headers: dict[str, str],
) -> LoadResult:
    result = LoadResult(0, 0, 0.0, [])
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=base_url, limits=limits, headers=headers, timeout=30
    ) as http:
        started = time.perf_counter()
        stop_at = started + seconds
        await asyncio.gather(*(_client(http, request, c, stop_at, result) for c in range(clients)))
        result.seconds = time.perf_counter() - started
    return result


def run_load(
    base_url: str,
    request: Callable[[int, int], tuple[str, str, dict]],
    *,
    clients: int = 32,
    seconds: float = 10.0,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    """Drive ``clients`` loops for ``seconds``; ``request(client, n)`` names each call."""
    return asyncio.run(_run(base_url, request, clients, seconds, headers or {}))
