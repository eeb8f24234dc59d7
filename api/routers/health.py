"""Liveness and readiness, for load balancers and orchestrators (no token needed)."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, HTTPException

from api.deps import ShopDep
from api.errors import problem_responses
from api.views import Health

router = APIRouter(prefix="/health", tags=["health"])
log = logging.getLogger("eventshop.api")

READY_SECONDS = 1.5
"""Readiness answers within this long: 503 if the event store has not answered by then."""


@router.get("/live", response_model=Health)
def get_liveness() -> Health:
    """The process answers."""
    return Health(status="live")


@router.get("/ready", response_model=Health, responses=problem_responses(503))
async def get_readiness(shop: ShopDep) -> Health:
    """The event store answers within 1.5 s (else 503)."""
    try:
        # In a thread of the event loop's own executor, not of the pool that requests
        # share: with the database down each of those is held for the database wait,
        # and readiness would queue behind them. A probe given up on ends within it.
        position = await asyncio.wait_for(asyncio.to_thread(shop.head), READY_SECONDS)
    except TimeoutError:
        log.warning("readiness check: the event store did not answer in %ss", READY_SECONDS)
        raise HTTPException(
            503, f"the event store did not answer within {READY_SECONDS:g}s"
        ) from None
    except Exception:
        log.exception("readiness check: the event store does not answer")
        raise HTTPException(503, "the event store does not answer") from None
    return Health(status="ready", position=position)
