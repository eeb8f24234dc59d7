"""The writer side's receipts: one after every N events, or T seconds after the last one.

Runs in each ``eventshop serve`` process (the writer side, which holds the signing key)
as a thread, woken by the commands it observes, so that a burst of commands makes a
receipt as soon as it reaches N events, and a trickle one every T seconds. Several
processes may sign the same position: the first receipt at a position is kept.
"""

from __future__ import annotations

import logging
import threading
import time

from projections.audit.auditor import Auditor
from projections.audit.receipts import Receipt, Signer

log = logging.getLogger("eventshop.audit")

# Commands come much faster than receipts are due: the log is looked at most this often.
MIN_CHECK_SECONDS = 0.05


class ReceiptIssuer:
    """Issues receipts of ``auditor``'s log with ``signer`` (module doc)."""

    def __init__(self, auditor: Auditor, signer: Signer, every_events: int, every_seconds: float):
        self.auditor = auditor
        self.signer = signer
        self.every_events = every_events
        self.every_seconds = every_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_position = 0
        self._last_time = time.monotonic()

    # The command observer's part (commands/outcome.py): a finished command may be due.
    def command_retried(self, command: str) -> None:
        """Nothing to do: only finished commands append."""

    def command_finished(self, command: str, outcome: str) -> None:
        if outcome == "ok":
            self._wake.set()

    def start(self) -> None:
        last = self.auditor.receipts.last()
        self._last_position = last.position if last else 0
        self._thread = threading.Thread(target=self._run, name="audit-receipts", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def issue(self) -> Receipt | None:
        """A receipt of the last link now (None: the log is empty)."""
        receipt = self.auditor.issue_receipt(self.signer)
        if receipt is not None:
            self._last_position, self._last_time = receipt.position, time.monotonic()
        return receipt

    def due(self) -> bool:
        """Whether N events, or T seconds with some event, passed since the last receipt."""
        last = self.auditor.links.last()
        if last is None or last[0] <= self._last_position:
            return False
        waited = time.monotonic() - self._last_time >= self.every_seconds
        return waited or last[0] - self._last_position >= self.every_events

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.every_seconds)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                if self.due():
                    self.issue()
            except Exception:
                # The store may be down a while: the next wake-up tries again.
                log.exception("could not issue an audit receipt")
            self._stop.wait(MIN_CHECK_SECONDS)
