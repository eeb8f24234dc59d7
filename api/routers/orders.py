"""Orders: pay, ship, deliver, cancel; read one."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Response

from api.bodies import Cancel, Deliver, Pay, Ship
from api.deps import Caller, Command, Instant, Page, StaffCommand, for_command, in_thread
from api.errors import CHANGE_PROBLEMS, problem_responses
from api.freshness import read_model
from api.text import SINGLE_LINE
from api.views import (
    OrderDetail,
    OrderResult,
    OrderStatus,
    OrderSummary,
    PageOf,
    committed,
    order_view,
    shown,
)
from projections.readmodels.orders import Orders as OrdersModel

router = APIRouter(prefix="/api/orders", tags=["orders"])
OwnerOrStaff = Annotated[Command, Depends(for_command("customer", "staff"))]


@router.post("/{order_id}/payment", response_model=OrderResult, responses=CHANGE_PROBLEMS)
async def pay_order(
    order_id: UUID,
    body: Pay,
    response: Response,
    command: OwnerOrStaff,
) -> OrderResult:
    """Pay a placed order; the amount must equal its total (else 409)."""
    done = await in_thread(
        command.shop.pay,
        order_id,
        body.amount,
        body.reference,
        owner=command.caller.confined_to("act"),
        expected_version=command.expected_version,
    )
    return committed(response, order_view(done.aggregate), OrderResult, done.position)


@router.post("/{order_id}/shipment", response_model=OrderResult, responses=CHANGE_PROBLEMS)
async def ship_order(
    order_id: UUID,
    body: Ship,
    response: Response,
    command: StaffCommand,
) -> OrderResult:
    """Ship a paid order; its reserved units leave stock."""
    done = await in_thread(
        command.shop.ship,
        order_id,
        body.carrier,
        body.tracking_number,
        expected_version=command.expected_version,
    )
    return committed(response, order_view(done.aggregate), OrderResult, done.position)


@router.post("/{order_id}/delivery", response_model=OrderResult, responses=CHANGE_PROBLEMS)
async def deliver_order(
    order_id: UUID,
    response: Response,
    command: StaffCommand,
    body: Deliver | None = None,
) -> OrderResult:
    """Mark a shipped order delivered (the body, if any, is ``{}``)."""
    done = await in_thread(
        command.shop.deliver, order_id, expected_version=command.expected_version
    )
    return committed(response, order_view(done.aggregate), OrderResult, done.position)


@router.post("/{order_id}/cancellation", response_model=OrderResult, responses=CHANGE_PROBLEMS)
async def cancel_order(
    order_id: UUID,
    body: Cancel,
    response: Response,
    command: OwnerOrStaff,
) -> OrderResult:
    """Cancel before shipment: reservations are released; a paid order records a refund."""
    done = await in_thread(
        command.shop.cancel,
        order_id,
        body.reason,
        owner=command.caller.confined_to("act"),
        expected_version=command.expected_version,
    )
    return committed(response, order_view(done.aggregate), OrderResult, done.position)


Orders = Annotated[OrdersModel, Depends(read_model("orders"))]


@router.get("", response_model=PageOf[OrderSummary], responses=problem_responses(401, 422, 503))
def list_orders(
    caller: Caller,
    page: Page,
    orders: Orders,
    customer_id: Annotated[
        Annotated[str, SINGLE_LINE] | None, Query(max_length=100, description="whose orders")
    ] = None,
    status: OrderStatus | None = None,
    placed_from: Annotated[Instant | None, Query(description="inclusive (ISO 8601)")] = None,
    placed_to: Annotated[Instant | None, Query(description="inclusive (ISO 8601)")] = None,
) -> dict[str, Any]:
    """Order summaries, newest first: any for staff, auditors and admins; a customer's own only."""
    own = caller.confined_to("read")
    if own is not None:
        # A customer asking for another customer's orders sees none of them.
        if customer_id not in (None, own):
            return {"items": [], "next_cursor": None}
        customer_id = own
    return orders.list_orders(customer_id, status, placed_from, placed_to, page.limit, page.cursor)


@router.get(
    "/{order_id}", response_model=OrderDetail, responses=problem_responses(401, 404, 422, 503)
)
def get_order(order_id: UUID, response: Response, caller: Caller, orders: Orders) -> OrderDetail:
    """One order: its owner's, or any for staff, auditors and admins."""
    found = orders.get_order(order_id, caller.confined_to("read"))
    return shown(response, OrderDetail.model_validate(found))
