"""Stock levels: goods received, count corrections; read one SKU's stock."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from api.auth import Principal
from api.bodies import AdjustStock, ReceiveStock
from api.deps import Page, StaffCommand, in_thread, require
from api.errors import problem_responses
from api.freshness import read_model
from api.views import PageOf, SkuPath, StockLevel, StockResult, committed, shown, stock_view
from projections.readmodels.stock import StockLevels

router = APIRouter(prefix="/api/stock", tags=["stock"])
Reader = Annotated[Principal, Depends(require("staff", "auditor", "admin"))]


@router.post(
    "/{sku}/receipts",
    response_model=StockResult,
    responses=problem_responses(400, 401, 403, 404, 412, 413, 422, 503),
)
async def receive_stock(
    sku: SkuPath, body: ReceiveStock, response: Response, command: StaffCommand
) -> StockResult:
    """Goods received: on hand grows by ``quantity``."""
    done = await in_thread(
        command.shop.receive_stock,
        sku,
        body.quantity,
        body.note,
        expected_version=command.expected_version,
    )
    return committed(response, stock_view(done.aggregate), StockResult, done.position)


@router.post(
    "/{sku}/adjustments",
    response_model=StockResult,
    responses=problem_responses(400, 401, 403, 404, 409, 412, 413, 422, 503),
)
async def adjust_stock(
    sku: SkuPath, body: AdjustStock, response: Response, command: StaffCommand
) -> StockResult:
    """A stock-count correction; on hand may not fall below what is reserved (409)."""
    done = await in_thread(
        command.shop.adjust_stock,
        sku,
        body.delta,
        body.reason,
        expected_version=command.expected_version,
    )
    return committed(response, stock_view(done.aggregate), StockResult, done.position)


Levels = Annotated[StockLevels, Depends(read_model("stock"))]


@router.get("", response_model=PageOf[StockLevel], responses=problem_responses(401, 403, 422, 503))
def list_stock(
    _: Reader,
    page: Page,
    levels: Levels,
    below: Annotated[
        int | None, Query(ge=0, le=2**31, description="only SKUs with fewer units available")
    ] = None,
) -> dict[str, Any]:
    """Stock levels by SKU; ``below=N`` for low stock."""
    return levels.list_stock(below, page.limit, page.cursor)


@router.get(
    "/{sku}", response_model=StockLevel, responses=problem_responses(401, 403, 404, 422, 503)
)
def get_stock(sku: SkuPath, response: Response, _: Reader, levels: Levels) -> StockLevel:
    """One SKU's stock: on hand, reserved, available."""
    return shown(response, StockLevel.model_validate(levels.get_stock(sku)))
