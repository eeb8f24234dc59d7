"""The load client of the write-path benchmarks: closed-loop HTTP/1.1, in a process of its own.

One client for both sides of a comparison (the shop and its floor): the orchestrator
(bench/write_path.py) starts it once per round with a JSON spec on stdin; it opens
``connections`` keep-alive connections, each sending one request at a time, runs a
warm-up it does not count, then measures for ``seconds``, and prints JSON on stdout.

It speaks HTTP/1.1 itself over asyncio streams (uvloop when installed) instead of using
httpx: on a 2-core machine the client shares the cores with the servers and PostgreSQL,
and a cheap client takes less from whichever side it drives. Its own CPU per request is
reported, so that one can see it costs both sides alike.

Scenarios (``spec["scenario"]``):

- ``requests``: every connection loops ``POST paths[(connection + n * connections) %
  len(paths)]`` with ``body``: spread over many paths or all on one.
- ``flash``: every connection is a customer looping open a cart, add one unit, check
  out (``steps`` names each one's path, with ``{cart}`` for the id the open answered).

Protocol: the spec is one line of JSON on stdin. On stdout, a line ``measuring`` when
the measured window opens, ``measured`` when it closes (the orchestrator samples CPU at
both; with ``"ack": true`` the client then waits for a line on stdin before it lets its
connections go), then one line of JSON.

    echo '{"base": "http://127.0.0.1:8000", ...}' | python -m bench.load
"""

from __future__ import annotations

import asyncio
import json
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

GRACE_SECONDS = 30.0  # longest a request may still run after the window closed


def percentiles(samples: list[float]) -> dict[str, float]:
    """n, p50, p99 and mean of latencies in ms (zeros when there are none)."""
    if not samples:
        return {"n": 0, "p50": 0.0, "p99": 0.0, "mean": 0.0}
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return {
        "n": len(ordered),
        "p50": statistics.median(ordered),
        "p99": p99,
        "mean": statistics.fmean(ordered),
    }


class Connection:
    """One keep-alive HTTP/1.1 connection; reconnects when the server closes it."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self.head = f"Host: {host}:{port}\r\nContent-Type: application/json\r\n{extra}"
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(
            f"{method} {path} HTTP/1.1\r\n{self.head}Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            fields = {}
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(":")
                    fields[name.strip().lower()] = value.strip()
            if fields.get("transfer-encoding", "").lower() == "chunked":
                payload = await self._chunked()
            else:
                payload = await self.reader.readexactly(int(fields.get("content-length", "0")))
        except (asyncio.IncompleteReadError, ConnectionError):
            await self.close()
            raise
        if fields.get("connection", "").lower() == "close":
            await self.close()
        return status, payload

    async def _chunked(self) -> bytes:
        assert self.reader is not None
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None


@dataclass
class Tally:
    """What the measured window saw."""

    requests: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    failures: int = 0  # connection errors (no HTTP status)
    cycles: int = 0  # flash: checkouts answered 2xx
    refused: int = 0  # flash: checkouts answered 409
    per_second: list[int] = field(default_factory=list)


class Run:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.measuring = False
        self.started = 0.0
        self.tally = Tally()

    def record(self, step: str, status: int | None, ms: float, finished: float) -> None:
        if not self.measuring or finished < self.started:
            return
        tally = self.tally
        tally.requests += 1
        if status is None:
            tally.failures += 1
            key = "error"
        else:
            key = str(status)
        tally.statuses[key] = tally.statuses.get(key, 0) + 1
        tally.latencies.setdefault(step, []).append(ms)
        second = int(finished - self.started)
        while len(tally.per_second) <= second:
            tally.per_second.append(0)
        tally.per_second[second] += 1
        if step == "checkout" and status is not None:
            if 200 <= status < 300:
                tally.cycles += 1
            elif status == 409:
                tally.refused += 1

    async def call(
        self, conn: Connection, step: str, path: str, body: bytes
    ) -> tuple[int | None, bytes]:
        began = time.perf_counter()
        try:
            status: int | None
            status, payload = await conn.request("POST", path, body)
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            status, payload = None, b""
            await asyncio.sleep(0.05)  # a refused connection: do not spin
        finished = time.perf_counter()
        self.record(step, status, (finished - began) * 1000, finished)
        return status, payload

    async def requests_loop(self, conn: Connection, number: int, stop: asyncio.Event) -> None:
        paths: list[str] = self.spec["paths"]
        body = json.dumps(self.spec.get("body", {})).encode()
        connections = self.spec["connections"]
        n = 0
        while not stop.is_set():
            await self.call(conn, "request", paths[(number + n * connections) % len(paths)], body)
            n += 1

    async def flash_loop(self, conn: Connection, number: int, stop: asyncio.Event) -> None:
        steps: dict[str, dict[str, Any]] = self.spec["steps"]
        bodies = {name: json.dumps(step.get("body", {})).encode() for name, step in steps.items()}
        n = 0
        while not stop.is_set():
            status, payload = await self.call(conn, "open", steps["open"]["path"], bodies["open"])
            cart = f"{number}-{n}"
            if status is not None and 200 <= status < 300:
                cart = json.loads(payload).get("id", cart)
            elif "{cart}" in steps["add"]["path"]:
                n += 1
                continue  # no cart to fill
            for name in ("add", "checkout"):
                path = steps[name]["path"].replace("{cart}", str(cart))
                status, _ = await self.call(conn, name, path, bodies[name])
                if status is None or not 200 <= status < 300:
                    break
            n += 1

    async def main(self) -> dict[str, Any]:
        spec = self.spec
        parts = urlsplit(spec["base"])
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        common = spec.get("headers", {})
        own = spec.get("connection_headers") or [{}] * spec["connections"]
        conns = [
            Connection(host, port, {**common, **own[i % len(own)]})
            for i in range(spec["connections"])
        ]
        loop = self.flash_loop if spec["scenario"] == "flash" else self.requests_loop
        stop = asyncio.Event()
        tasks = [asyncio.create_task(loop(c, i, stop)) for i, c in enumerate(conns)]
        await asyncio.sleep(spec.get("warmup", 0.0))
        cpu_before = _cpu()
        self.started = time.perf_counter()
        self.measuring = True
        print("measuring", flush=True)
        await asyncio.sleep(spec["seconds"])
        stop.set()
        # Requests in flight finish and count (a closed loop): the window ends with them.
        _, late = await asyncio.wait(tasks, timeout=GRACE_SECONDS)
        for task in late:
            task.cancel()
        elapsed = time.perf_counter() - self.started
        self.measuring = False
        cpu = _cpu() - cpu_before
        print("measured", flush=True)
        if spec.get("ack"):
            # The orchestrator samples CPU now: hold the connections until it says so.
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        for conn in conns:
            await conn.close()
        tally = self.tally
        ok = sum(n for key, n in tally.statuses.items() if key.startswith("2"))
        return {
            "scenario": spec["scenario"],
            "connections": spec["connections"],
            "seconds": elapsed,
            "requests": tally.requests,
            "requests_per_second": tally.requests / elapsed,
            "ok": ok,
            "non_2xx": tally.requests - ok,
            "statuses": dict(sorted(tally.statuses.items())),
            "failures": tally.failures,
            "unfinished": len(late),
            "latency": {step: percentiles(found) for step, found in tally.latencies.items()},
            "cycles": tally.cycles,
            "cycles_per_second": tally.cycles / elapsed,
            "refused": tally.refused,
            "per_second": tally.per_second,
            "client_cpu_seconds": cpu,
        }


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    spec = json.loads(sys.stdin.readline())
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        runner = asyncio.run
    result = runner(Run(spec).main())
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
