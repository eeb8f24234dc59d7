"""Operations on the read side: each projection's progress, blue/green rebuilds, and the
events its handlers failed on (parked: retry after a fix, or skip)."""

from __future__ import annotations

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


@router.get(
    "",
    summary="Each projection's position, the log head, lag, state and speed",
    responses=problem_responses(401, 403),
)
def list_projections(read_side: ReadSideDep, _: Admin) -> dict[str, Any]:
    return {"items": read_side.status()}


@router.post(
    "/{name}/rebuild",
    status_code=202,
    summary="Start a blue/green rebuild: the live copy serves until the new one has caught up",
    responses=problem_responses(401, 403, 404, 409, 422),
)
def rebuild(name: Name, read_side: ReadSideDep, _: Admin) -> dict[str, Any]:
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
def list_parked(name: Name, read_side: ReadSideDep, _: Admin) -> ParkedList:
    _known(read_side, name)
    return ParkedList(items=[ParkedView.of(entry) for entry in read_side.parked(name)])


@router.post(
    "/{name}/parked/{position}/retry",
    response_model=ParkedOutcome,
    summary="Apply a parked event now (after a fix), exactly once, with the events of its"
    " aggregate parked behind it; 409 if it still fails (nothing written) or a rebuild runs",
    responses=problem_responses(401, 403, 404, 409, 422),
)
def retry_parked(name: Name, position: Position, read_side: ReadSideDep, _: Admin) -> ParkedOutcome:
    _known(read_side, name)
    entry = read_side.retry_parked(name, position)
    return _outcome(read_side, name, "applied", entry)


@router.post(
    "/{name}/parked/{position}/skip",
    response_model=ParkedOutcome,
    summary="Give up on a parked event: it is never applied; the skip is recorded (who, when)",
    responses=problem_responses(401, 403, 404, 409, 422),
)
def skip_parked(
    name: Name, position: Position, read_side: ReadSideDep, admin: Admin
) -> ParkedOutcome:
    _known(read_side, name)
    entry = read_side.skip_parked(name, position, by=admin.sub)
    return _outcome(read_side, name, "skipped", entry)
