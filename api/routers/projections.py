"""Operations on the read side: each projection's progress, blue/green rebuilds, and the
events its handlers failed on (parked: retry after a fix, or skip)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path
from pydantic import BaseModel, Field

from api.auth import Principal
from api.deps import require
from api.errors import problem_responses
from api.freshness import get_read_side
from projections import ParkedEvent, ReadSide

router = APIRouter(prefix="/api/projections", tags=["operations"])
Admin = Annotated[Principal, Depends(require("admin"))]
ReadSideDep = Annotated[ReadSide, Depends(get_read_side)]
Name = Annotated[str, Path(pattern=r"^[a-z_]{1,40}$", description="a projection's name")]


class ProjectionState(StrEnum):
    """What a read model's feeder is doing."""

    STARTING = "starting"
    STANDBY = "standby"
    CATCHING_UP = "catching_up"
    LIVE = "live"
    DEGRADED = "degraded"
    RETRYING = "retrying"
    OUTDATED = "outdated"
    REBUILDING = "rebuilding"
    STOPPED = "stopped"
    NOT_RUNNING = "not_running"


class RebuildPhase(StrEnum):
    COPYING = "copying"
    INDEXING = "indexing"
    SWAPPING = "swapping"
    DONE = "done"
    FAILED = "failed"


class RebuildProgress(BaseModel):
    """A running rebuild: how far the new copy has read the log."""

    name: str
    worker: str = Field(description="who runs it (host:pid:id)")
    started_at: str = Field(description="ISO 8601, UTC")
    phase: RebuildPhase
    position: int
    target: int = Field(description="the log head it is to reach")
    head: int
    events: int = Field(description="events of the log read into the copy so far")
    total: int = Field(default=0, description="events of the log up to `target`")
    events_per_second: float
    eta_seconds: float | None = Field(description="null while the speed is unknown")


class TableComparison(BaseModel):
    """One table, live copy against the new one: rows and an order-independent checksum."""

    live_rows: int | None
    new_rows: int | None
    live_checksum: str | None
    new_checksum: str | None
    equal: bool


class ParkedComparison(BaseModel):
    live: int = Field(description="events parked in the live copy at the swap")
    new: int = Field(description="events parked in the new copy")
    kept: int = Field(description="of those, kept parked from the live copy")
    equal: bool


class Comparison(BaseModel):
    """The live tables against the new copy, in the swap's transaction."""

    equal: bool = Field(description="same rows everywhere, at the same position")
    live_position: int
    new_position: int
    differences: list[str] = Field(description="the tables whose rows differ")
    tables: dict[str, TableComparison]
    parked: ParkedComparison


class RebuildOutcome(BaseModel):
    """How the last rebuild (or reset) ended: ``error`` is null when it succeeded."""

    worker: str | None
    started_at: str | None
    finished_at: str | None = Field(description="null: it never finished")
    version: int | None = Field(description="the read model's code version that built it")
    previous_version: int | None
    position: int | None
    events: int | None
    seconds: float | None
    events_per_second: float | None
    phases: dict[str, float] = Field(description="seconds in each phase: copy, indexes, swap")
    comparison: Comparison | None
    error: str | None
    transient: bool = Field(description="whether the error is worth another try")
    reset: bool = Field(description="a reset (emptied and fed again), not a blue/green rebuild")


class ProjectionStatus(BaseModel):
    """A read model: its feeder's state, how far it has read the log, its rebuilds."""

    name: str
    state: ProjectionState
    position: int = Field(description="the last log position applied")
    head: int = Field(description="the log's last position")
    lag: int
    events_per_second: float
    events_applied: int
    last_error: str | None
    worker: str | None = Field(description="the process feeding it")
    parked: int = Field(description="events parked (then the state is degraded)")
    version: int = Field(description="the read model's code version")
    stored_version: int | None = Field(description="the version of the live tables")
    rebuild: RebuildProgress | None = Field(description="the rebuild running now, if any")
    last_rebuild: RebuildOutcome | None


class ProjectionList(BaseModel):
    items: list[ProjectionStatus]


@router.get(
    "",
    response_model=ProjectionList,
    summary="Each projection's position, the log head, lag, state and speed",
    responses=problem_responses(401, 403),
)
def list_projections(read_side: ReadSideDep, _: Admin) -> dict[str, Any]:
    return {"items": read_side.status()}


@router.post(
    "/{name}/rebuild",
    status_code=202,
    response_model=ProjectionStatus,
    summary="Start a blue/green rebuild: the live copy serves until the new one has caught up",
    responses=problem_responses(401, 403, 404, 409, 422),
)
def rebuild_projection(name: Name, read_side: ReadSideDep, _: Admin) -> dict[str, Any]:
    if name not in read_side.names:
        raise HTTPException(404, f"there is no projection named {name!r}")
    read_side.rebuild(name)
    return next(s for s in read_side.status() if s["name"] == name)


# --- parked events --------------------------------------------------------------------------

Position = Annotated[int, Path(ge=1, le=2**63 - 1, description="the event's position in the log")]


class ParkedView(BaseModel):
    """An event of the log a projection's handler failed on, parked: the projection went
    on without it (state ``degraded``) and the later events of its aggregate wait behind
    it."""

    position: int = Field(description="the event's position in the log")
    type: str = Field(description="the event's class, e.g. Order.Placed")
    topic: str
    aggregate_id: str
    aggregate_version: int
    error: str = Field(description="why it failed (or which parked event it waits behind)")
    parked_at: str = Field(description="ISO 8601, UTC")
    retries: int = Field(description="retries that failed again since it was parked")

    @classmethod
    def of(cls, entry: ParkedEvent) -> ParkedView:
        return cls(**entry.as_dict())


class ParkedList(BaseModel):
    items: list[ParkedView]


class ParkedOutcome(BaseModel):
    """What a retry or a skip did to a parked event."""

    outcome: Literal["applied", "skipped"]
    event: ParkedView
    parked: int = Field(description="events the projection still has parked")


def _known(read_side: ReadSide, name: str) -> None:
    if name not in read_side.names:
        raise HTTPException(404, f"there is no projection named {name!r}")


def _outcome(
    read_side: ReadSide, name: str, outcome: Literal["applied", "skipped"], entry: ParkedEvent
) -> ParkedOutcome:
    left = len(read_side.parked(name))
    return ParkedOutcome(outcome=outcome, event=ParkedView.of(entry), parked=left)


@router.get(
    "/{name}/parked",
    response_model=ParkedList,
    summary="The events the projection's handlers failed on, parked, in log order",
    responses=problem_responses(401, 403, 404, 422),
)
def list_parked_events(name: Name, read_side: ReadSideDep, _: Admin) -> ParkedList:
    _known(read_side, name)
    return ParkedList(items=[ParkedView.of(entry) for entry in read_side.parked(name)])


@router.post(
    "/{name}/parked/{position}/retry",
    response_model=ParkedOutcome,
    summary="Apply a parked event now (after a fix), exactly once, with the events of its"
    " aggregate parked behind it; 409 if it still fails (nothing written) or a rebuild runs",
    responses=problem_responses(401, 403, 404, 409, 422),
)
def retry_parked_event(
    name: Name, position: Position, read_side: ReadSideDep, _: Admin
) -> ParkedOutcome:
    _known(read_side, name)
    entry = read_side.retry_parked(name, position)
    return _outcome(read_side, name, "applied", entry)


@router.post(
    "/{name}/parked/{position}/skip",
    response_model=ParkedOutcome,
    summary="Give up on a parked event: it is never applied; the skip is recorded (who, when)",
    responses=problem_responses(401, 403, 404, 409, 422),
)
def skip_parked_event(
    name: Name, position: Position, read_side: ReadSideDep, admin: Admin
) -> ParkedOutcome:
    _known(read_side, name)
    entry = read_side.skip_parked(name, position, by=admin.sub)
    return _outcome(read_side, name, "skipped", entry)
