"""The rebuilds (and resets) a process runs: at most one per read model across every
process, each holding the read model's *rebuild lock* from start to end, in a thread of
its own or its caller's, publishing its progress for every process's ``status()``."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from domain.errors import RuleBroken
from projections.engine.base import ReadModel, stamp
from projections.engine.locks import LockKeeper
from projections.engine.outcome import RebuildOutcome
from projections.engine.progress import HEARTBEAT_SECONDS, Progress, ProgressCallback
from projections.engine.tables import LostOwnership

log = logging.getLogger("eventshop.projections")


class AlreadyRebuilding(RuleBroken):
    """The read model is being rebuilt already, by this process or another (409)."""

    title = "Rebuild already running"


class RebuildStopped(Exception):
    """The process is shutting down; the rebuild is abandoned (the live copy untouched)."""


@dataclass
class Job:
    """One rebuild (or reset) of one read model in this process."""

    name: str
    progress: Progress
    on_progress: ProgressCallback | None = None
    """Called with the progress after every batch, and at each phase."""
    done: threading.Event = field(default_factory=threading.Event)
    outcome: RebuildOutcome | None = None
    published: float = 0.0
    """When its progress was last written to the database (monotonic clock)."""
    phases: dict[str, float] = field(default_factory=dict)
    """Seconds spent copying, indexing and swapping."""


class Jobs:
    """The rebuild jobs of this process, and the rebuild locks they hold."""

    def __init__(self, models: Mapping[str, ReadModel], locks: LockKeeper, worker_id: str) -> None:
        self.models = models
        self.locks = locks
        self.worker_id = worker_id
        self.stopping = threading.Event()
        self._jobs: dict[str, Job] = {}
        self._holders: dict[str, int] = {}
        """Per read model, the changes of its parked events running here (``exclusive``)."""
        self._mutex = threading.Lock()
        self._threads: list[threading.Thread] = []

    def claim(self, name: str, on_progress: ProgressCallback | None = None) -> Job:
        """A new job for ``name``, holding its rebuild lock. KeyError for an unknown name;
        :class:`AlreadyRebuilding` when it is being rebuilt, here or in another process."""
        model = self.models[name]
        with self._mutex:
            running = self._jobs.get(name)
            if running is not None and not running.done.is_set():
                raise AlreadyRebuilding(f"the {name} read model is being rebuilt already")
            if self._holders.get(name):
                raise AlreadyRebuilding(
                    f"a parked event of the {name} read model is being retried or skipped;"
                    " try again in a moment"
                )
            if not self.locks.try_acquire(name):
                raise AlreadyRebuilding(_elsewhere(model))
            progress = Progress(name, self.worker_id, stamp(datetime.now(UTC)))
            job = self._jobs[name] = Job(name, progress, on_progress)
        return job

    @contextlib.contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """Hold ``name``'s rebuild lock for a change of its parked events, which a rebuild
        running meanwhile would undo at its swap: :class:`AlreadyRebuilding` if one runs
        (here or elsewhere). Changes in this process share the lock."""
        model = self.models[name]
        with self._mutex:
            running = self._jobs.get(name)
            if running is not None and not running.done.is_set():
                raise AlreadyRebuilding(f"the {name} read model is being rebuilt; try after it")
            if not self._holders.get(name) and not self.locks.try_acquire(name):
                raise AlreadyRebuilding(_elsewhere(model))
            self._holders[name] = self._holders.get(name, 0) + 1
        try:
            yield
        finally:
            with self._mutex:
                self._holders[name] -= 1
                if not self._holders[name]:
                    del self._holders[name]
                    with contextlib.suppress(Exception):
                        self.locks.release(name)

    def finish(self, job: Job, outcome: RebuildOutcome | None) -> None:
        """The job has ended (``outcome``: how), its lock is free."""
        job.outcome = outcome
        with contextlib.suppress(Exception):
            self.locks.release(job.name)
        job.done.set()

    def progress(self, name: str) -> Progress | None:
        """The progress of a job for ``name`` running in this process, if any."""
        with self._mutex:
            job = self._jobs.get(name)
        return None if job is None or job.done.is_set() else job.progress

    def wait(self, name: str, timeout: float) -> RebuildOutcome | None:
        """The outcome of this process's last job for ``name`` once it ends (None if
        none ran here, or on timeout)."""
        with self._mutex:
            job = self._jobs.get(name)
        if job is None or not job.done.wait(timeout):
            return None
        return job.outcome

    def check(self, job: Job) -> None:
        """Raise unless the job may go on: the process is not stopping, the lock is held."""
        if self.stopping.is_set():
            raise RebuildStopped("the process is stopping")
        if not self.locks.holds(job.name):
            raise LostOwnership(f"the rebuild lock of {job.name} was lost")

    def publish(self, job: Job, *, force: bool = False, database: bool = True) -> None:
        """Tell the job's caller its progress; and every process, at most once a second
        (unless ``force``), through the versions table."""
        if job.on_progress is not None:
            job.on_progress(job.progress)
        now = time.monotonic()
        if not database or (not force and now - job.published < HEARTBEAT_SECONDS):
            return
        job.published = now
        news = {**job.progress.as_dict(), "heartbeat_at": stamp(datetime.now(UTC))}
        try:
            self.models[job.name].view.write_rebuild(job.name, news)
        except Exception as error:  # progress is news, not state: the rebuild goes on
            log.debug("could not publish the progress of %s: %s", job.name, error)

    def spawn(self, name: str, target: Callable[[], Any]) -> None:
        """Run ``target`` in a thread that ``stop`` waits for."""
        thread = threading.Thread(target=target, name=name, daemon=True)
        with self._mutex:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def stop(self, timeout: float) -> None:
        """Make every job give up, wait for their threads, and free the locks."""
        self.stopping.set()
        with self._mutex:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)
        self.locks.close()


def _elsewhere(model: ReadModel) -> str:
    message = f"the {model.name} read model is being rebuilt already by another process"
    with contextlib.suppress(Exception):
        running = model.view.read_versions().get(model.name, {}).get("rebuild")
        if running:
            message += f" ({running['worker']}, since {running['started_at']})"
    return message
