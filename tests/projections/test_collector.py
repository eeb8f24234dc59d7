"""Garbage is collected less often while the log is replayed, and as before afterwards."""

from __future__ import annotations

import gc
import threading

from projections.engine.collector import REPLAY_THRESHOLD, fewer_collections


def test_the_threshold_is_raised_while_replaying_and_restored_after() -> None:
    before = gc.get_threshold()
    with fewer_collections():
        assert gc.get_threshold() == (max(before[0], REPLAY_THRESHOLD), *before[1:])
    assert gc.get_threshold() == before


def test_overlapping_replays_restore_it_only_when_the_last_ends() -> None:
    before = gc.get_threshold()
    inside, leave = threading.Event(), threading.Event()

    def other_replay() -> None:
        with fewer_collections():
            inside.set()
            leave.wait(5)

    thread = threading.Thread(target=other_replay)
    with fewer_collections():
        thread.start()
        assert inside.wait(5)
    assert gc.get_threshold()[0] == max(before[0], REPLAY_THRESHOLD)  # the other still runs
    leave.set()
    thread.join(5)
    assert gc.get_threshold() == before


def test_it_is_restored_when_a_replay_fails() -> None:
    before = gc.get_threshold()
    try:
        with fewer_collections():
            raise RuntimeError("a poison event")
    except RuntimeError:
        pass
    assert gc.get_threshold() == before
