"""The integration events' contract: one JSON Schema per CloudEvent type (no token
needed: it is public, like the events' shape in the repository)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import RootModel

from projections.integration.events import schemas

router = APIRouter(prefix="/api/integration", tags=["integration"])


IntegrationSchemas = RootModel[dict[str, dict[str, Any]]]
"""Each integration event type's JSON Schema, by type."""


@router.get("/schemas", response_model=IntegrationSchemas)
def get_integration_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of each integration event type (the whole CloudEvent), by type,
    e.g. ``eventshop.order.placed``; each schema's ``$id`` is the events' ``dataschema``
    and its ``examples`` show one event."""
    return schemas()
