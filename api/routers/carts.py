"""Carts: open one, change its lines, check it out; read one."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response

from api.bodies import AddItem, CheckOut, OpenCart, SetQuantity
from api.deps import Caller, Command, for_command, in_thread
from api.errors import CHANGE_PROBLEMS, problem_responses
from api.freshness import read_model
from api.openapi import LOCATION, answer
from api.views import (
    CartDetail,
    CartResult,
    OrderResult,
    SkuPath,
    cart_view,
    committed,
    order_view,
    shown,
)
from projections.readmodels.carts import Carts as CartsModel

router = APIRouter(prefix="/api/carts", tags=["carts"])
# Only a cart's owner changes it; the service answers 404 for anyone else's cart.
CustomerCommand = Annotated[Command, Depends(for_command("customer"))]
# Opening a cart names no version of it: there is none yet.
CustomerOpens = Annotated[Command, Depends(for_command("customer", versioned=False))]


@router.post(
    "",
    status_code=201,
    response_model=CartResult,
    responses={**answer(201, LOCATION), **problem_responses(400, 401, 403, 413, 422, 503)},
)
async def open_cart(
    response: Response, command: CustomerOpens, body: OpenCart | None = None
) -> CartResult:
    """Open an empty cart for the caller (the body, if any, is ``{}``)."""
    done = await in_thread(command.shop.open_cart, command.caller.sub)
    response.headers["Location"] = f"{router.prefix}/{done.aggregate.id}"
    return committed(response, cart_view(done.aggregate), CartResult, done.position)


@router.post("/{cart_id}/items", response_model=CartResult, responses=CHANGE_PROBLEMS)
async def add_cart_item(
    cart_id: UUID,
    body: AddItem,
    response: Response,
    command: CustomerCommand,
) -> CartResult:
    """Add units of a product at its current catalogue price."""
    done = await in_thread(
        command.shop.add_to_cart,
        cart_id,
        body.sku,
        body.quantity,
        owner=command.caller.sub,
        expected_version=command.expected_version,
    )
    return committed(response, cart_view(done.aggregate), CartResult, done.position)


@router.put("/{cart_id}/items/{sku}", response_model=CartResult, responses=CHANGE_PROBLEMS)
async def set_cart_item_quantity(
    cart_id: UUID,
    sku: SkuPath,
    body: SetQuantity,
    response: Response,
    command: CustomerCommand,
) -> CartResult:
    """Set a line's quantity; 0 removes the line."""
    done = await in_thread(
        command.shop.set_cart_quantity,
        cart_id,
        sku,
        body.quantity,
        owner=command.caller.sub,
        expected_version=command.expected_version,
    )
    return committed(response, cart_view(done.aggregate), CartResult, done.position)


@router.delete(
    "/{cart_id}/items/{sku}",
    response_model=CartResult,
    responses=problem_responses(400, 401, 403, 404, 409, 412, 422, 503),
)
async def remove_cart_item(
    cart_id: UUID,
    sku: SkuPath,
    response: Response,
    command: CustomerCommand,
) -> CartResult:
    """Remove a line."""
    done = await in_thread(
        command.shop.remove_from_cart,
        cart_id,
        sku,
        owner=command.caller.sub,
        expected_version=command.expected_version,
    )
    return committed(response, cart_view(done.aggregate), CartResult, done.position)


@router.post(
    "/{cart_id}/checkout",
    status_code=201,
    response_model=OrderResult,
    responses={**answer(201, LOCATION), **CHANGE_PROBLEMS},
)
async def check_out_cart(
    cart_id: UUID,
    body: CheckOut,
    request: Request,
    response: Response,
    command: CustomerCommand,
) -> OrderResult:
    """Atomically close the cart, place the order and reserve its stock (201, the order).

    If any SKU is short, the answer is 409 listing every short SKU (``short``), and
    nothing at all is recorded: the cart stays open. ``If-Match`` names the cart's version.
    """
    done = await in_thread(
        command.shop.check_out,
        cart_id,
        body.shipping_address.to_domain(),
        body.email,
        owner=command.caller.sub,
        expected_version=command.expected_version,
    )
    # Named, not spelled out: the orders router owns the path of an order.
    response.headers["Location"] = str(
        request.app.url_path_for("get_order", order_id=str(done.aggregate.id))
    )
    return committed(response, order_view(done.aggregate), OrderResult, done.position)


Carts = Annotated[CartsModel, Depends(read_model("carts"))]


@router.get(
    "/{cart_id}", response_model=CartDetail, responses=problem_responses(401, 404, 422, 503)
)
def get_cart(cart_id: UUID, response: Response, caller: Caller, carts: Carts) -> CartDetail:
    """One cart: its owner's, or any for staff, auditors and admins."""
    found = carts.get_cart(cart_id, caller.confined_to("read"))
    return shown(response, CartDetail.model_validate(found))
