"""`eventshop serve`'s read models in a worker process of its own, which it supervises.

On PostgreSQL, `eventshop serve` (unless EVENTSHOP_PROJECTIONS_PROCESS=false) starts
`eventshop worker` beside its API process(es) instead of feeding the read models from
threads of the API process. The read models, timers and webhooks then take a core of
their own, and the API's requests no longer share one interpreter lock with six
read-model threads: in the write-path benchmark the same work cost the API process
0.9 ms of CPU per receipt with the read models in its threads and 0.6 ms (+ 0.1 ms in
the worker) with them apart. SQLite keeps them in threads: one writer at a time, and
an embedded store runs one process.

The worker is told the API's process id and ends by itself within a few seconds of its
parent going (even by SIGKILL); a worker that ends while the API runs is started again,
after a pause that grows with each quick failure.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time

log = logging.getLogger("eventshop.worker")

# The worker's command line, run by this interpreter (the console script may not be on
# PATH, and a virtual environment's python finds the same packages).
COMMAND = [sys.executable, "-c", "from cli.main import main; main()", "worker"]
FIRST_PAUSE, LONGEST_PAUSE = 1.0, 30.0
# A worker that ran this long before it ended is started again at once.
SETTLED_SECONDS = 60.0
STOP_SECONDS = 20.0


class FeedingWorker:
    """An `eventshop worker` process, started again whenever it ends, until stopped."""

    def __init__(self, command: list[str] | None = None) -> None:
        self.command = [*(command or COMMAND), "--exit-with", str(os.getpid())]
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._supervisor = threading.Thread(target=self._supervise, name="worker-supervisor")
        self.starts = 0

    def start(self) -> None:
        self._spawn()
        self._supervisor.start()

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._supervisor.is_alive():
            self._supervisor.join()

    @property
    def pid(self) -> int | None:
        with self._lock:
            return self._process.pid if self._process is not None else None

    def _spawn(self) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            # Its output is the API's: one stream of JSON log lines.
            self._process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL)
            self.starts += 1

    def _supervise(self) -> None:
        pause = FIRST_PAUSE
        while not self._stopping.is_set():
            with self._lock:
                process = self._process
            assert process is not None
            started = time.monotonic()
            code = process.wait()
            if self._stopping.is_set():
                return
            ran = time.monotonic() - started
            pause = FIRST_PAUSE if ran >= SETTLED_SECONDS else min(pause * 2, LONGEST_PAUSE)
            log.warning(
                "the read models' worker (pid %s) ended with %s after %.0f s; starting it"
                " again in %.0f s",
                process.pid,
                code,
                ran,
                pause,
            )
            if self._stopping.wait(pause):
                return
            self._spawn()
