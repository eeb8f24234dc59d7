"""kill -9 of the JetStream publisher mid-stream (issue 17): the publisher deployed as a
user deploys it, ``eventshop publisher`` in an OS process of its own, SIGKILLed while it
is publishing a backlog (the stream holds some but not all of it), then started again:
the stream holds every expected CloudEvent exactly once, in log order.

Two mechanisms give this together, each covering what the other cannot:

* **The tracking position** (``jetstream_tracking``, written only after JetStream
  acknowledged every event of a batch, behind the read models' fence) says where a
  restarted publisher resumes. It is never *ahead* of the stream, so nothing is skipped
  (no gap); but it may be *behind* it: the events acknowledged since the last stored
  batch, up to a batch of them, are sent again after a kill.
* **JetStream's de-duplication** (``Nats-Msg-Id`` = the CloudEvent ``id``) drops those
  re-sent events: the stream remembers every id it stored within its duplicate window
  (2 min for a stream the publisher makes), so the re-sent tail is acknowledged as a
  duplicate and not stored again (no duplicate). A restart after the window has passed
  is covered by the publisher reading the stream's last event and not sending what it
  shows the stream holds (``tests/integration/test_jetstream.py``).

Events are sent one at a time, each acknowledged before the next, so the stream never
holds a later event without every earlier one: the order is the log's.

Its own PostgreSQL schema, stream and subjects; NATS and PostgreSQL on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench.deploy import eventshop_command
from bench.rebuild import seed
from eventshop.bootstrap import open_read_side
from projections.integration.jetstream import PublisherState, Target
from tests.conftest import open_shop, settings_for
from tests.integration.test_jetstream import (
    _connected,
    checked,
    consumed,
    expected,
    stocked,
    trade,
)
from tests.integration.test_jetstream import target as target  # a fixture

BACKLOG_EVENTS = 6000
"""Log events seeded before the first publisher starts (about 1,700 integration events)."""
START_TIMEOUT = 60.0  # a loaded 2-core machine takes seconds to start a process


def stream_messages(target: Target) -> int:
    async def count(js: Any) -> int:
        info = await js.stream_info(target.stream)
        return int(info.state.messages)

    return int(asyncio.run(_connected(count, missing_ok=True)) or 0)


def last_sequence(target: Target) -> int:
    """The log position (CloudEvent ``sequence``) of the stream's last event."""

    async def last(js: Any) -> int:
        info = await js.stream_info(target.stream)
        message = await js.get_msg(target.stream, info.state.last_seq)
        return int(json.loads(message.data)["sequence"])

    return int(asyncio.run(_connected(last)))


def integration_positions(shop: Any, after: int, upto: int) -> list[int]:
    """The log positions in (after, upto] whose events give an integration event."""
    from projections.integration.events import Translator

    translator = Translator()
    return [
        n.id
        for n in shop.recorder.select_notifications(after + 1, 10**6, stop=upto)
        if translator.translate(n.id, shop.mapper.to_domain_event(n)) is not None
    ]


def start_publisher(url: str, target: Target, folder: Path, name: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "EVENTSHOP_DATABASE_URL": url,
        "EVENTSHOP_NATS_URL": target.url,
        "EVENTSHOP_NATS_STREAM": target.stream,
        "EVENTSHOP_NATS_SUBJECT_PREFIX": target.prefix,
        "EVENTSHOP_EVENT_SOURCE": target.source,
        "EVENTSHOP_VAR_DIR": str(folder / "var"),
    }
    with (folder / f"{name}.log").open("ab") as log:
        return subprocess.Popen(
            [*eventshop_command(), "publisher"],
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def until(
    condition: Callable[[], bool], process: subprocess.Popen[bytes], log: Path, what: str
) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the publisher exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen in {START_TIMEOUT:.0f} s")
        time.sleep(0.005)


def test_a_publisher_killed_mid_stream_leaves_no_gap_and_no_duplicate(
    pg_url: str, tmp_path: Path, target: Target
) -> None:
    shop = open_shop(pg_url, POSTGRES_POOL_SIZE="2")
    # The publisher's tracking position, as its processes store it.
    state = open_read_side(settings_for(pg_url), models=(PublisherState,))
    view = state.projection(PublisherState.name).view
    processes: list[subprocess.Popen[bytes]] = []
    try:
        seed(shop, BACKLOG_EVENTS)
        backlog = expected(shop)
        assert len(backlog) > 1000

        first = start_publisher(pg_url, target, tmp_path, "first")
        processes.append(first)
        until(
            lambda: stream_messages(target) >= len(backlog) // 4,
            first,
            tmp_path / "first.log",
            "a quarter of the backlog in the stream",
        )
        os.kill(first.pid, signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL

        held = stream_messages(target)
        assert 0 < held < len(backlog), "killed mid-stream: some, not all, of the backlog"
        stored = view.position("Shop")
        # Never ahead of the stream: no integration event of the log lies between the
        # stream's last one and the stored position (events with none to give may; and
        # whatever the position is behind is sent again on restart).
        assert integration_positions(shop, last_sequence(target), stored) == []

        # Commands meanwhile, while no publisher runs.
        trade(stocked(shop), rounds=3)
        everything = expected(shop)

        second = start_publisher(pg_url, target, tmp_path, "second")
        processes.append(second)
        until(
            lambda: view.position("Shop") >= shop.head(),
            second,
            tmp_path / "second.log",
            "the restarted publisher catching up",
        )
        second.send_signal(signal.SIGTERM)
        assert second.wait(20) == 0

        # Exactly once each, in log order, each valid against its schema.
        assert stream_messages(target) == len(everything)
        assert checked(consumed(target)) == everything
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        state.close()
        shop.close()
