"""How query routes reach the read side: read-your-writes and how fresh an answer is.

Every query route depends on :func:`read_model`. With ``?min_position=N`` (the
``position`` a command answered with) it waits until that read model has applied
position N, up to ``read_wait_seconds``, and answers 503 with ``Retry-After`` if it
has not; a position past the log's head was never handed out, and is refused (422).
Every answer says how far the read model had got in ``X-Projection-Position``, read
*before* the query runs, so the answer is at least that fresh.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError

from projections import ReadSide

POSITION_HEADER = "X-Projection-Position"
MAX_POSITION = 2**62


def get_read_side(request: Request) -> ReadSide:
    return request.app.state.read_side  # type: ignore[no-any-return]


def read_model(name: str) -> Callable[..., Any]:
    """A dependency giving the read model ``name``, once fresh enough for the caller."""

    def dependency(
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
        if min_position and min_position > request.app.state.shop.head():
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
        if min_position:
            timeout = request.app.state.settings.read_wait_seconds
            if not read_side.wait_for(name, min_position, timeout=timeout):
                raise HTTPException(
                    503,
                    f"the {name} read model has not reached position {min_position} yet"
                    f" (it is at {read_side.position(name)}); try again shortly",
                    headers={"Retry-After": "1", POSITION_HEADER: str(read_side.position(name))},
                )
        response.headers[POSITION_HEADER] = str(read_side.position(name))
        return read_side.projection(name)

    return dependency
