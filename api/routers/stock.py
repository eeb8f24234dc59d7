"""Stock levels: goods received, count corrections; read one SKU's stock."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from api.auth import Principal
from api.deps import ExpectedVersion, ShopDep, require
from api.errors import problem_responses
from api.routers.shapes import Committed, SkuPath, View, committed, shown
from commands.models import AdjustStock, ReceiveStock
from domain.stock import Stock

router = APIRouter(prefix="/api/stock", tags=["stock"])
Staff = Annotated[Principal, Depends(require("staff"))]
Reader = Annotated[Principal, Depends(require("staff", "auditor", "admin"))]


class StockView(View):
    sku: str
    on_hand: int
    reserved: int
    available: int


class StockResult(Committed, StockView):
    pass


def stock_view(stock: Stock) -> StockView:
    return StockView(
        sku=stock.sku,
        on_hand=stock.on_hand,
        reserved=stock.reserved,
        available=stock.available,
        version=stock.version,
    )


@router.post(
    "/{sku}/receipts",
    response_model=StockResult,
    responses=problem_responses(400, 401, 403, 404, 412, 413, 422),
)
def receive_stock(
    sku: SkuPath,
    body: ReceiveStock,
    response: Response,
    shop: ShopDep,
    version: ExpectedVersion,
    _: Staff,
) -> StockResult:
    """Goods received: on hand grows by ``quantity``."""
    done = shop.receive_stock(sku, body.quantity, body.note, expected_version=version)
    return committed(response, stock_view(done.aggregate), StockResult, done.position)


@router.post(
    "/{sku}/adjustments",
    response_model=StockResult,
    responses=problem_responses(400, 401, 403, 404, 409, 412, 413, 422),
)
def adjust_stock(
    sku: SkuPath,
    body: AdjustStock,
    response: Response,
    shop: ShopDep,
    version: ExpectedVersion,
    _: Staff,
) -> StockResult:
    """A stock-count correction; on hand may not fall below what is reserved (409)."""
    done = shop.adjust_stock(sku, body.delta, body.reason, expected_version=version)
    return committed(response, stock_view(done.aggregate), StockResult, done.position)


@router.get("/{sku}", response_model=StockView, responses=problem_responses(401, 403, 404, 422))
def get_stock(sku: SkuPath, response: Response, shop: ShopDep, _: Reader) -> StockView:
    """One SKU's stock: on hand, reserved, available."""
    return shown(response, stock_view(shop.stock(sku)))
