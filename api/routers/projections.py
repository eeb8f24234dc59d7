"""Operations on the read side: each projection's progress, and blue/green rebuilds."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path

from api.auth import Principal
from api.deps import require
from api.errors import problem_responses
from api.freshness import get_read_side
from projections import ReadSide

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
