"""Reports for staff, answered from read models."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from api.auth import Principal
from api.deps import require
from api.errors import problem_responses
from api.freshness import read_model
from api.views import SalesReport
from projections.readmodels.sales import Sales

router = APIRouter(prefix="/api/reports", tags=["reports"])
StaffOrAdmin = Annotated[Principal, Depends(require("staff", "admin"))]
SalesModel = Annotated[Sales, Depends(read_model("sales"))]
# Only the ISO form: pydantic's date would also take a Unix timestamp ("0"). A string of
# the right shape that is no date ("2026-02-30") is refused by the read model (422).
Day_ = Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}-\d{2}$")]


@router.get(
    "/sales",
    response_model=SalesReport,
    responses=problem_responses(401, 403, 422, 503),
)
def get_sales_report(
    _: StaffOrAdmin,
    sales: SalesModel,
    day_from: Annotated[Day_, Query(alias="from", description="first day, YYYY-MM-DD")] = None,
    day_to: Annotated[Day_, Query(alias="to", description="last day, YYYY-MM-DD")] = None,
    # In the contract (API.md: granularity=day) and checked, so that a client asking for
    # another granularity is refused (422) rather than silently answered per day.
    granularity: Annotated[
        Literal["day"],
        Query(description="`day`, the only granularity there is: one entry per UTC day"),
    ] = "day",
) -> dict[str, Any]:
    """Orders, units and revenue per day (UTC) and per SKU; days without sales are left out."""
    return sales.sales_report(day_from, day_to)
