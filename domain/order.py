"""Order: what a checkout placed, and its way to the customer.

Placed → Paid → Shipped → Delivered, or Cancelled before shipment. A payment must
match the total; cancelling a paid order records the refund it owes.

Every amount of an order (line prices, total, payment, refund) is counted in the
order's currency, fixed when it is placed (``Placed`` carries it since v2).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, get_args
from uuid import UUID

from eventsourcing.domain import event

from domain.base import ShopAggregate, named_id
from domain.errors import InvalidValue, RuleBroken
from domain.personal import ERASED, PersonalData
from domain.values import MAX_PRICE, V1_CURRENCY, Address, currency_code, money, plain, text

OrderStatus = Literal["placed", "paid", "shipped", "delivered", "cancelled"]
"""Where an order is on its way; the HTTP API's ``status`` filter takes exactly these."""
STATUSES: tuple[OrderStatus, ...] = get_args(OrderStatus)
ERASED_ADDRESS = {field: ERASED for field in ("name", "line1", "line2", "city", "postal_code")}
ERASED_ADDRESS["country"] = ERASED
"""What a shipping address reads as once its customer's data is erased."""
PLACED, PAID, SHIPPED, DELIVERED, CANCELLED = STATUSES
DEFAULT_PAYMENT_WINDOW = timedelta(minutes=30)
"""How long an order may stay unpaid before it is cancelled (the shop's setting may differ)."""


class Order(ShopAggregate):
    class Placed(ShopAggregate.Created):
        # v2 names the currency of the order's amounts; v1 did not. v3 says by when it
        # must be paid.
        class_version = 3
        # The customer's e-mail and address are theirs: stored encrypted with their key.
        personal_data = PersonalData(
            subject="customer_id",
            erased={"email": ERASED, "shipping_address": ERASED_ADDRESS},
        )

        customer_id: str
        cart_id: UUID
        lines: list[dict[str, Any]]
        total: Decimal
        shipping_address: dict[str, str]
        email: str
        currency: str
        payment_due_at: datetime

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            """A v1 order was in euros, the only currency the shop had before v2."""
            state["currency"] = V1_CURRENCY

        @staticmethod
        def upcast_v2_v3(state: dict[str, Any]) -> None:
            """An order placed before payment windows were recorded gets the default one,
            so that an abandoned one of those releases its stock too."""
            state["payment_due_at"] = state["timestamp"] + DEFAULT_PAYMENT_WINDOW

    class Paid(ShopAggregate.Event):
        amount: Decimal
        reference: str

    class Shipped(ShopAggregate.Event):
        carrier: str
        tracking_number: str

    class Delivered(ShopAggregate.Event):
        pass

    class Cancelled(ShopAggregate.Event):
        reason: str
        refund: Decimal | None

    @staticmethod
    def create_id(cart_id: UUID) -> UUID:
        # One cart yields at most one order, even if a checkout is retried.
        return named_id("order", str(cart_id))

    @event(Placed)
    def __init__(
        self,
        customer_id: str,
        cart_id: UUID,
        lines: list[dict[str, Any]],
        total: Decimal,
        shipping_address: dict[str, str],
        email: str,
        currency: str,
        payment_due_at: datetime,
    ) -> None:
        self.customer_id = customer_id
        self.cart_id = cart_id
        self.lines = lines
        self.total = total
        self.shipping_address = shipping_address
        self.email = email
        self.currency = currency
        self.payment_due_at = payment_due_at
        self.status = PLACED
        self.payment_reference: str | None = None
        self.refund: Decimal | None = None

    @classmethod
    def place(
        cls,
        customer_id: str,
        cart_id: UUID,
        lines: dict[str, tuple[int, Decimal]],
        shipping_address: Address,
        email: str,
        *,
        currency: str,
        payment_due_at: datetime,
    ) -> Order:
        """Place an order for ``lines`` (sku -> (quantity, unit price in ``currency``)),
        to be paid by ``payment_due_at`` (else it is cancelled: commands/expiry.py)."""
        if not lines:
            raise RuleBroken("An order needs at least one line")
        if not isinstance(email, str) or "@" not in email or len(email) > 254:
            raise InvalidValue("email", f"{email!r} is not an e-mail address")
        plain(email, "email")
        rows: list[dict[str, Any]] = [
            {"sku": s, "quantity": q, "unit_price": p, "subtotal": q * p}
            for s, (q, p) in sorted(lines.items())
        ]
        total = sum((r["subtotal"] for r in rows), Decimal("0.00"))
        if total > MAX_PRICE:
            # A payment may not exceed MAX_PRICE: an order over it could never be paid.
            raise RuleBroken(
                f"The order would total {total}; an order may total at most {MAX_PRICE}",
                total=str(total),
                max_total=str(MAX_PRICE),
            )
        return cls(
            customer_id=customer_id,
            cart_id=cart_id,
            lines=rows,
            total=total,
            shipping_address=shipping_address.as_dict(),
            email=email,
            currency=currency_code(currency),
            payment_due_at=payment_due_at,
        )

    @property
    def skus(self) -> list[str]:
        return [line["sku"] for line in self.lines]

    def pay(self, amount: Decimal | str, reference: str) -> None:
        self._require(PLACED, "be paid")
        amount = money(amount)
        if amount != self.total:
            raise RuleBroken(
                f"Payment of {amount} does not match the order total {self.total}",
                total=str(self.total),
                amount=str(amount),
            )
        self._paid(amount, text(reference, "reference", max_length=100))

    @event(Paid)
    def _paid(self, amount: Decimal, reference: str) -> None:
        self.status = PAID
        self.payment_reference = reference

    def ship(self, carrier: str, tracking_number: str) -> None:
        self._require(PAID, "be shipped")
        self._shipped(
            text(carrier, "carrier", max_length=100),
            text(tracking_number, "tracking_number", max_length=100),
        )

    @event(Shipped)
    def _shipped(self, carrier: str, tracking_number: str) -> None:
        self.status = SHIPPED

    def deliver(self) -> None:
        self._require(SHIPPED, "be delivered")
        self._delivered()

    @event(Delivered)
    def _delivered(self) -> None:
        self.status = DELIVERED

    def cancel(self, reason: str) -> None:
        """Cancel before shipment; a paid order owes a refund of its total."""
        self._require((PLACED, PAID), "be cancelled")
        refund = self.total if self.status == PAID else None
        self._cancelled(text(reason, "reason", max_length=500, multiline=True), refund)

    @event(Cancelled)
    def _cancelled(self, reason: str, refund: Decimal | None) -> None:
        self.status = CANCELLED
        self.refund = refund

    def _require(self, allowed: str | tuple[str, ...], action: str) -> None:
        allowed = (allowed,) if isinstance(allowed, str) else allowed
        if self.status not in allowed:
            raise RuleBroken(
                f"Order {self.id} is {self.status}; only a {' or '.join(allowed)} order can"
                f" {action}",
                order_id=str(self.id),
                status=self.status,
            )
