"""Liveness and readiness, for load balancers and orchestrators (no token needed)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException

from api.deps import ShopDep
from api.errors import problem_responses
from api.views import Health

router = APIRouter(prefix="/health", tags=["health"])
log = logging.getLogger("eventshop.api")


@router.get("/live", response_model=Health)
def live() -> Health:
    """The process answers."""
    return Health(status="live")


@router.get("/ready", response_model=Health, responses=problem_responses(503))
def ready(shop: ShopDep) -> Health:
    """The event store answers (else 503)."""
    try:
        position = shop.head()
    except Exception:
        log.exception("readiness check: the event store does not answer")
        raise HTTPException(503, "the event store does not answer") from None
    return Health(status="ready", position=position)
