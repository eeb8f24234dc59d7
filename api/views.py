"""What the API answers with: the JSON shape of every aggregate and read model.

A view is the JSON shape of one aggregate, or of a row of a read model. A command
answers with the view of the aggregate it changed plus ``position``, the place of its
last event in the global log, and an ``ETag`` naming the view's version. Routers shape
their answers with these and import nothing from one another.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Generic, Literal, TypeVar
from uuid import UUID

from fastapi import Path, Response
from pydantic import BaseModel, Field

from api.bodies import SKU_PATTERN
from domain.cart import Cart
from domain.order import Order
from domain.product import Product
from domain.stock import Stock
from domain.values import CENT
from projections.engine.base import stamp

SkuPath = Annotated[str, Path(pattern=SKU_PATTERN, description="the product's SKU")]


class OrderStatus(StrEnum):
    """Where an order is: placed, then paid, shipped, delivered; or cancelled before shipment."""

    PLACED = "placed"
    PAID = "paid"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"


class CartStatus(StrEnum):
    """A cart is open until it is checked out (then it names its order)."""

    OPEN = "open"
    CHECKED_OUT = "checked_out"


class View(BaseModel):
    """The shape of one aggregate as the API shows it."""

    version: int = Field(description="the aggregate's version; also its ETag")


class Committed(BaseModel):
    """Mixed in before a view, so that ``position`` comes after the view's fields."""

    position: int = Field(description="the global log position of the command's last event")


V = TypeVar("V", bound=View)
R = TypeVar("R", bound=Committed)


def money_text(amount: Decimal) -> str:
    """Money as the API writes it: a decimal string with two places."""
    return str(amount.quantize(CENT))


def etag(version: int) -> str:
    return f'"{version}"'


def shown(response: Response, view: V) -> V:
    """Answer a query with a view, and its version as the ETag."""
    response.headers["ETag"] = etag(view.version)
    return view


def committed(response: Response, view: View, result: type[R], position: int) -> R:
    """Answer a command: the view, its ETag, and the position of the command's last event."""
    shown(response, view)
    return result.model_validate({**view.model_dump(), "position": position})


T = TypeVar("T", bound=BaseModel)


class PageOf(BaseModel, Generic[T]):
    """One page of a list; pass ``next_cursor`` back as ``cursor`` for the next one."""

    items: list[T]
    next_cursor: str | None = Field(description="null on the last page")


# --- products ----------------------------------------------------------------------------


class ProductView(View):
    sku: str
    name: str
    price: str


class ProductResult(Committed, ProductView):
    pass


def product_view(product: Product) -> ProductView:
    return ProductView(
        sku=product.sku,
        name=product.name,
        price=money_text(product.price),
        version=product.version,
    )


class ProductListing(ProductView):
    """A product as the catalogue read model shows it, with the units available now."""

    available: int
    added_at: str
    updated_at: str


# --- stock -------------------------------------------------------------------------------


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


class StockLevel(StockView):
    """A SKU's stock as the stock-levels read model shows it."""

    updated_at: str


# --- orders ------------------------------------------------------------------------------


class LineView(BaseModel):
    sku: str
    quantity: int
    unit_price: str
    subtotal: str


class AddressView(BaseModel):
    name: str
    line1: str
    line2: str
    city: str
    postal_code: str
    country: str


class OrderView(View):
    id: UUID
    customer_id: str
    cart_id: UUID
    status: OrderStatus
    lines: list[LineView]
    total: str
    shipping_address: AddressView
    email: str
    payment_reference: str | None
    refund: str | None
    payment_due_at: str = Field(
        description="unpaid by then (UTC, ISO 8601), the order is cancelled and its stock released"
    )


class OrderResult(Committed, OrderView):
    pass


def line_view(line: dict[str, Any]) -> LineView:
    return LineView(
        sku=line["sku"],
        quantity=line["quantity"],
        unit_price=money_text(line["unit_price"]),
        subtotal=money_text(line["subtotal"]),
    )


def order_view(order: Order) -> OrderView:
    return OrderView(
        id=order.id,
        customer_id=order.customer_id,
        cart_id=order.cart_id,
        status=OrderStatus(order.status),
        lines=[line_view(line) for line in order.lines],
        total=money_text(order.total),
        shipping_address=AddressView(**order.shipping_address),
        email=order.email,
        payment_reference=order.payment_reference,
        refund=None if order.refund is None else money_text(order.refund),
        payment_due_at=stamp(order.payment_due_at),
        version=order.version,
    )


class OrderSummary(View):
    """One line of the orders list."""

    id: UUID
    customer_id: str
    status: OrderStatus
    total: str
    units: int
    placed_at: str
    updated_at: str
    payment_due_at: str


class StatusChange(BaseModel):
    status: OrderStatus
    at: str = Field(description="when the order entered this status (UTC, ISO 8601)")
    version: int


class OrderDetail(OrderView):
    """An order as the orders read model shows it, with the time of every status change."""

    units: int
    carrier: str | None
    tracking_number: str | None
    cancel_reason: str | None
    placed_at: str
    updated_at: str
    status_history: list[StatusChange]


# --- carts -------------------------------------------------------------------------------


class CartView(View):
    id: UUID
    customer_id: str
    status: CartStatus
    lines: list[LineView]
    total: str
    order_id: UUID | None


class CartResult(Committed, CartView):
    pass


def cart_view(cart: Cart) -> CartView:
    return CartView(
        id=cart.id,
        customer_id=cart.customer_id,
        status=CartStatus(cart.status),
        lines=[
            LineView(
                sku=sku,
                quantity=line.quantity,
                unit_price=money_text(line.unit_price),
                subtotal=money_text(line.subtotal),
            )
            for sku, line in sorted(cart.lines.items())
        ],
        total=money_text(cart.total),
        order_id=cart.order_id,
        version=cart.version,
    )


class CartDetail(CartView):
    """A cart as the carts read model shows it."""

    opened_at: str
    updated_at: str


# --- customers ---------------------------------------------------------------------------


class LastOrder(BaseModel):
    id: UUID
    placed_at: str
    status: OrderStatus


class CustomerSummary(BaseModel):
    """A customer as the customers read model shows it: what it ordered and spent."""

    customer_id: str = Field(description="the customer's id: the `sub` of its tokens")
    orders: int = Field(description="orders placed, cancelled ones included")
    cancelled: int = Field(description="orders cancelled")
    spent: str = Field(
        description="lifetime spend: the totals of the orders paid, shipped or delivered."
        " A cancelled order counts nothing (a paid one was refunded in full); an unpaid one"
        " counts under `awaiting_payment`"
    )
    awaiting_payment: str = Field(description="the totals of the orders placed and not paid")
    first_order_at: str | None = Field(description="when the first order was placed")
    last_order: LastOrder | None = Field(description="the newest order; null if none")


class CustomerOrder(BaseModel):
    """One order in a customer's history."""

    id: UUID
    status: OrderStatus
    total: str
    units: int
    placed_at: str
    updated_at: str


class CustomerDetail(CustomerSummary):
    """A customer with its newest orders, and where to find every one of them."""

    recent_orders: list[CustomerOrder] = Field(
        description="the newest orders, newest first: the first page of `all_orders`"
    )
    all_orders: str = Field(
        description="the orders list of this customer (`/api/orders?customer_id=`), paginated",
        examples=["/api/orders?customer_id=alice"],
    )


# --- reports -----------------------------------------------------------------------------


class Figures(BaseModel):
    orders: int
    units: int
    revenue: str


class SkuFigures(Figures):
    sku: str


class Day(Figures):
    day: dt.date
    skus: list[SkuFigures]


class SalesReport(BaseModel):
    """Orders, units and revenue per day and per SKU; cancelled orders are left out."""

    from_: dt.date | None = Field(default=None, alias="from")
    to: dt.date | None = None
    days: list[Day]
    skus: list[SkuFigures]
    totals: Figures


# --- health ------------------------------------------------------------------------------


class Health(BaseModel):
    status: Literal["live", "ready"]
    position: int | None = Field(default=None, description="the head of the event log")


class PlainEvent(BaseModel):
    aggregate_id: UUID
    version: int


class ErasureView(BaseModel):
    """What an erasure did."""

    customer_id: str
    already_erased: bool = Field(
        description="true when the customer was erased before and nothing was stored since:"
        " this repeats that erasure's answer and records nothing"
    )
    erasures: int = Field(description="how many erasures the customer has had")
    still_plain: list[PlainEvent] = Field(
        description="the customer's events stored before personal data was encrypted (or"
        " with encryption switched off): events are never rewritten, so their personal"
        " fields stay readable in the log"
    )
    position: int = Field(
        description="a log position at or after the erasure: read models that reached it"
        " show the customer's personal fields as erased (use as ?min_position=)"
    )


class OrderPersonalData(BaseModel):
    order_id: UUID
    placed_at: str
    email: str
    shipping_address: AddressView


class PersonalDataView(BaseModel):
    """Every piece of personal data the shop holds about one customer (GDPR Art. 15/20)."""

    customer_id: str
    erased: bool = Field(description="whether the customer's personal data was erased")
    erasures: int
    orders: list[OrderPersonalData] = Field(
        description="each order's e-mail and shipping address (`[erased]` once erased)"
    )
    still_plain: list[PlainEvent] = Field(
        description="events of the customer whose personal fields are stored in plain text"
    )
