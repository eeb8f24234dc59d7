"""How query routes reach the read side: read-your-writes and how fresh an answer is.

Every query route depends on :func:`read_model`. With ``?min_position=N`` (the
``position`` a command answered with) it waits until that read model has applied
position N, up to ``read_wait_seconds``, and answers 503 with ``Retry-After`` if it
has not; a position past the log's head was never handed out, and is refused (422).
The wait holds no thread (projections/engine/waits.py); past ``read_waiters`` waiting
queries, one more is answered 503 at once. Every answer says how far the read model
had got in ``X-Projection-Position``, read *before* the query runs, so the answer is
at least that fresh.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError

from api.deps import in_thread
from commands.service import Shop
from projections import ReadSide
from projections.engine.waits import PositionWaits, TooManyWaiters

POSITION_HEADER = "X-Projection-Position"
MAX_POSITION = 2**62


def get_read_side(request: Request) -> ReadSide:
    return request.app.state.read_side  # type: ignore[no-any-return]


def read_model(name: str) -> Callable[..., Any]:
    """A dependency giving the read model ``name``, once fresh enough for the caller."""

    async def dependency(
        request: Request,
        response: Response,
        min_position: Annotated[
            int | None,
            Query(
                ge=0,
                le=MAX_POSITION,
                description="answer only once the read model has processed this log position"
                " (a command's `position`); 503 with Retry-After if it takes too long",
            ),
        ] = None,
    ) -> Any:
        read_side = get_read_side(request)
        if not min_position:
            position = await in_thread(read_side.position, name)
        else:
            position = await _fresh(request, read_side, name, min_position)
        response.headers[POSITION_HEADER] = str(position)
        return read_side.projection(name)

    return dependency


def _head_and_position(shop: Shop, read_side: ReadSide, name: str) -> tuple[int, int]:
    return shop.head(), read_side.position(name)


async def _fresh(request: Request, read_side: ReadSide, name: str, min_position: int) -> int:
    """The position of ``name`` once it has reached ``min_position`` (422, 503 otherwise)."""
    head, position = await in_thread(_head_and_position, request.app.state.shop, read_side, name)
    if position >= min_position:
        return position
    if min_position > head:
        # No command has answered with a position past the head: waiting is pointless.
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("query", "min_position"),
                    "msg": "no event has been stored at that position yet",
                    "input": min_position,
                }
            ]
        )
    waits: PositionWaits = request.app.state.position_waits
    try:
        reached = await waits.wait(name, min_position, request.app.state.settings.read_wait_seconds)
    except TooManyWaiters:
        raise HTTPException(
            503,
            "too many queries wait for read models already; try again shortly",
            headers={"Retry-After": "1", POSITION_HEADER: str(position)},
        ) from None
    position = await in_thread(read_side.position, name)
    if not reached:
        raise HTTPException(
            503,
            f"the {name} read model has not reached position {min_position} yet"
            f" (it is at {position}); try again shortly",
            headers={"Retry-After": "1", POSITION_HEADER: str(position)},
        )
    return position
