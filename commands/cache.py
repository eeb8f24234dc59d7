"""Recently used aggregates, kept in memory between commands.

The library's repository cache, as it comes, brings a cached aggregate up to date from
the log on every load ("fast-forward"): one query per command, even when nothing else
wrote the aggregate. Here a command that holds an aggregate's turn in this process
(commands/turns.py), on an aggregate no other process contends, takes the cached copy
as it is: nothing in this process can have changed it meanwhile, and if another process
did, the save's version check refuses the save (``RecordConflictError``), the entry is
dropped, and the command runs again from the log. Every other load (an aggregate the
command reads but does not change, like a product's price; a contended one) is brought
up to date from the log, as before.

Cached aggregates are never changed in place, so that copies can be taken without a
lock: a load hands out a deep copy, and a save replaces the entry with the saved
aggregate (the library's own behaviour with ``AGGREGATE_CACHE_FASTFORWARD=n``, which
the Shop sets; its fast-forward would change entries in place).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from copy import deepcopy
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Repository, project_aggregate
from eventsourcing.domain import Aggregate

# Aggregates kept (the least recently used go first), unless the Shop is given another
# AGGREGATE_CACHE_MAXSIZE; and the library's settings this module relies on.
CACHE_SIZE = "10000"
CACHE_ENV = {"AGGREGATE_CACHE_FASTFORWARD": "n", "DEEPCOPY_FROM_AGGREGATE_CACHE": "y"}


class Aggregates:
    """Loads aggregates through the repository's cache (see the module's docstring)."""

    def __init__(self, repository: Repository[Any], trusted: Callable[[UUID], bool]) -> None:
        """``trusted(id)``: whether this thread may take the cached copy of ``id`` as it
        is (it holds the aggregate's turn, and no other process contends it)."""
        self.repository = repository
        self.trusted = trusted

    def load(self, aggregate_id: UUID) -> Aggregate:
        """The aggregate, a copy of its own (``AggregateNotFoundError`` if none)."""
        cache = self.repository.cache
        if cache is None:
            return self._get(aggregate_id)
        try:
            cached: Aggregate = cache.get(aggregate_id)  # type: ignore[assignment]
        except KeyError:
            return self._get(aggregate_id)  # read from the log, and cached
        aggregate: Aggregate = deepcopy(cached)
        if self.trusted(aggregate_id):
            return aggregate
        newer = self.repository.event_store.get(originator_id=aggregate_id, gt=aggregate.version)
        if project_aggregate(aggregate, newer) is None:
            raise AggregateNotFoundError(aggregate_id)
        return aggregate  # brought up to date in place (it is this load's own copy)

    def forget(self, aggregate_ids: Iterable[UUID]) -> None:
        """Drop these entries (their saves lost a race: another process wrote them)."""
        cache = self.repository.cache
        if cache is None:
            return
        for aggregate_id in aggregate_ids:
            with contextlib.suppress(KeyError):
                cache.get(aggregate_id, evict=True)

    def _get(self, aggregate_id: UUID) -> Aggregate:
        aggregate: Aggregate = self.repository.get(aggregate_id)
        return aggregate
