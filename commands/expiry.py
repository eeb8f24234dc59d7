"""Reservation expiry: an order still unpaid when its payment window ends is cancelled,
which releases the stock it reserved.

Each order is placed with its ``payment_due_at`` (the shop's payment window after
placing); that schedules a timer, and paying, shipping or cancelling the order drops
it. When the timer is due the order is cancelled only as it was placed: the cancel
names the version the timer was scheduled at, so a payment (or any change) that got to
the order first wins and the cancel is refused (``StaleVersion``); a payment that comes
after the cancel is refused by the order (it is cancelled). Exactly one of the two wins.
"""

from __future__ import annotations

from collections.abc import Iterator
from uuid import UUID

from commands.outcome import Done
from commands.process import ProcessManager, Timer, reacts_to, schedule, unschedule
from commands.service import Shop
from domain.order import Order

REASON = "payment window expired"


class PaymentExpiry(ProcessManager):
    """Cancels the orders left unpaid past their ``payment_due_at``."""

    name = "payment_expiry"

    @reacts_to(Order.Placed)
    def _placed(self, event: Order.Placed) -> Iterator[Timer]:
        yield schedule(
            str(event.originator_id), event.payment_due_at, version=event.originator_version
        )

    @reacts_to(Order.Paid, Order.Shipped, Order.Cancelled)
    def _settled(self, event: Order.Event) -> Iterator[Timer]:
        yield unschedule(str(event.originator_id))

    def act(self, shop: Shop, timer: Timer) -> Done:
        # A paid order may be cancelled (with a refund): only the placed version may expire.
        return shop.cancel(UUID(timer.key), REASON, expected_version=int(timer.data["version"]))
