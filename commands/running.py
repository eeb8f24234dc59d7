"""How a command runs: answered from its first execution if its idempotency key was
done, else executed, and executed again from a fresh load after a lost race; its
aggregates saved through group commit, the aggregate cache kept. ``Shop``
(commands/service.py) holds the commands and queries themselves."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Concatenate, ParamSpec, TypeVar
from uuid import UUID

from eventsourcing.application import Application, ProcessingEvent, Recording
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import RecordConflictError
from tenacity import Retrying

from commands import idempotency
from commands.cache import Aggregates
from commands.group_commit import when_queued
from commands.idempotency import IdempotencyKeys
from commands.outcome import CommandObserver, Done, outcome_of
from commands.turns import Turns
from domain.errors import ConcurrencyConflict, DomainError
from eventstore import retry
from eventstore.causes import current_cause

P = ParamSpec("P")
S = TypeVar("S", bound="CommandRunner")

MAX_ATTEMPTS = retry.CONFLICT_ATTEMPTS
"""Runs of a command that keeps losing races before it gives up (eventstore/retry.py,
which also says how long it waits between them)."""


def retry_on_conflict(
    method: Callable[Concatenate[S, P], Done],
) -> Callable[Concatenate[S, P], Done]:
    """Run a command: replay it if its idempotency key was done, else execute it,
    re-running from a fresh load when a concurrent write got there first.

    The key is looked up again before every attempt: the write that won the race may
    have been this very request's twin, which stored the key.
    """

    @functools.wraps(method)
    def wrapper(shop: S, /, *args: P.args, **kwargs: P.kwargs) -> Done:
        name = method.__name__
        try:
            done = shop._attempt(name, functools.partial(method, shop, *args, **kwargs))
        except BaseException as error:
            shop._tell("command_finished", name, outcome_of(error))
            raise
        shop._tell("command_finished", name, "replayed" if done.replayed else "ok")
        return done

    return wrapper


class CommandRunner(Application[UUID]):
    """The running of commands, for ``Shop``, which sets up what it uses."""

    keys: IdempotencyKeys
    aggregates: Aggregates
    turns: Turns
    observers: list[CommandObserver]
    _retrying: dict[str, Retrying]

    def head(self) -> int:
        """The position of the last event in the global log (0 when empty)."""
        return self.recorder.max_notification_id() or 0

    def _attempt(self, name: str, run: Callable[[], Done]) -> Done:
        """Replay or run the command ``name``, running it again after each lost race."""
        request = idempotency.current_request()

        def once() -> Done:
            if request is not None and (done := self._replay(request)) is not None:
                return done
            self.aggregates.begin()
            try:
                return run()
            except DomainError:
                if not self.aggregates.confirmed(self.turns.timeout):
                    raise RecordConflictError("decided on a save that failed") from None
                # A twin with this key may have won meanwhile and left this run a mix of
                # old and new state that it refuses (a stale open cart beside the twin's
                # fresh reservations): then the answer is the twin's.
                if request is not None and (done := self._replay(request)) is not None:
                    return done
                raise

        retrying = self._retrying.get(name)
        if retrying is None:
            retrying = self._retrying[name] = retry.on_conflict(
                attempts=MAX_ATTEMPTS, before_retry=partial(self._tell, "command_retried", name)
            )
        try:
            return retrying(once)
        except RecordConflictError:
            raise ConcurrencyConflict(
                f"{name} lost to concurrent writes {MAX_ATTEMPTS} times; try again"
            ) from None

    def _replay(self, request: idempotency.IdempotentRequest) -> Done | None:
        """The first execution's answer if this request's key was done (else None)."""
        record = self.keys.find(current_cause().actor, request)
        if record is None:
            return None
        aggregate: Aggregate = self.repository.get(
            record.aggregate_id, version=record.aggregate_version
        )
        return Done(aggregate, record.position, replayed=True)

    def _tell(self, what: str, *args: str) -> None:
        for observer in self.observers:
            getattr(observer, what)(*args)

    def _record(self, processing_event: ProcessingEvent[UUID]) -> list[Recording[UUID]]:
        # The library's own, with the cache kept by commands/cache.py.
        try:
            recordings = self.events.put(
                processing_event.events,
                tracking=processing_event.tracking,
                **processing_event.saved_kwargs,
            )
        except BaseException:
            self.aggregates.failed(processing_event.aggregates)
            raise
        self.aggregates.saved(processing_event.aggregates)
        return recordings

    def _save_aggregates(
        self, aggregates: Sequence[Aggregate], kwargs: dict[str, Any]
    ) -> list[Recording[UUID]]:
        # Application.save() less ProcessingEvent.collect_events(), whose isinstance checks
        # against runtime Protocols cost about a tenth of a save on Python 3.11: all that
        # is saved here is aggregates.
        processing_event: ProcessingEvent[UUID] = ProcessingEvent()
        for aggregate in aggregates:
            processing_event.events.extend(aggregate.collect_events())
            processing_event.aggregates[aggregate.id] = aggregate
        processing_event.saved_kwargs.update(kwargs)
        recordings = self._record(processing_event)
        self._take_snapshots(processing_event)
        self._notify(recordings)
        return recordings

    def _save(self, *aggregates: Aggregate) -> Done:
        request = idempotency.current_request()
        kwargs: dict[str, Any] = {}
        if request is not None:
            first = aggregates[0]
            key = self.keys.record(current_cause().actor, request, first.id, first.version)
            kwargs[idempotency.SAVE_KWARG] = key

        def queued(save: object) -> None:  # the next command on them may decide now
            self.aggregates.queued({a.id: a for a in aggregates}, save)
            self.turns.release_held()

        with when_queued(queued, after=self.aggregates.followed()):
            recordings = self._save_aggregates(aggregates, kwargs)
        return Done(aggregates[0], recordings[-1].notification.id if recordings else self.head())
