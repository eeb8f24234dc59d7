"""Webhook subscriptions (admin): where the shop's integration events are sent, and how
each delivery went."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal, cast

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, Field

from api.auth import Principal
from api.deps import Page, require
from api.errors import problem_responses
from projections.integration.events import EVENT_TYPES
from projections.webhooks import Webhooks
from projections.webhooks.store import Status

router = APIRouter(prefix="/api/webhooks", tags=["integration"])
Admin = Annotated[Principal, Depends(require("admin"))]
SubscriptionId = Annotated[
    str,
    Path(pattern=r"^[0-9a-f-]{36}$", description="the subscription's id"),
]
DeliveryId = Annotated[
    str,
    Path(
        pattern=r"^[0-9a-f-]{36}(/[0-9]+)?$",
        description="the delivery's `webhook-id`: the CloudEvent's id, `<aggregate id>/<version>`",
    ),
]
EventType = Literal[EVENT_TYPES]  # type: ignore[valid-type]


class DeliveryStatus(StrEnum):
    """Where a delivery is: delivered; failing (being tried again); parked (given up after
    the last attempt); pending (to be sent again)."""

    DELIVERED = "delivered"
    FAILING = "failing"
    PARKED = "parked"
    PENDING = "pending"


def get_webhooks(request: Request) -> Webhooks:
    return request.app.state.webhooks  # type: ignore[no-any-return]


WebhooksDep = Annotated[Webhooks, Depends(get_webhooks)]


class NewSubscription(BaseModel):
    url: str = Field(
        max_length=2048,
        description="http(s) URL on a host EVENTSHOP_WEBHOOK_ALLOWED_HOSTS allows",
    )
    event_types: list[EventType] = Field(min_length=1, max_length=len(EVENT_TYPES))
    secret: str | None = Field(
        default=None,
        max_length=200,
        description="`whsec_` and the base64 of 24 to 64 random bytes; left out, one is made",
    )


class SubscriptionView(BaseModel):
    id: str
    url: str
    event_types: list[str]
    position: int = Field(
        description="how far its deliveries have read the log (an event delivered, or passed)"
    )
    starts_after: int = Field(
        description="the log's head when it was made: nothing at or before it is sent"
    )
    created_at: str
    created_by: str | None


class CreatedSubscription(SubscriptionView):
    secret: str = Field(description="signs every delivery; shown only now")


class SubscriptionStatus(SubscriptionView):
    head: int = Field(description="the log's last position")
    lag: int
    deliveries: dict[str, int] = Field(description="deliveries per status")


class SubscriptionPage(BaseModel):
    items: list[SubscriptionView]
    next_cursor: str | None


class DeliveryView(BaseModel):
    id: str = Field(
        description="the `webhook-id` header, the CloudEvent's `id`: the same on every attempt"
    )
    position: int = Field(description="the event's position in the log")
    type: str
    status: DeliveryStatus
    attempts: int
    last_status: int | None = Field(description="the receiver's last HTTP status")
    last_error: str | None
    updated_at: str


class DeliveryPage(BaseModel):
    items: list[DeliveryView]
    next_cursor: str | None


@router.post(
    "",
    status_code=201,
    response_model=CreatedSubscription,
    summary="Subscribe a URL to integration events, from the next event of the log on",
    responses=problem_responses(400, 401, 403, 422),
)
def create_webhook(body: NewSubscription, webhooks: WebhooksDep, admin: Admin) -> dict[str, Any]:
    subscription, secret = webhooks.subscribe(body.url, body.event_types, body.secret, by=admin.sub)
    return {**subscription.as_dict(), "secret": secret}


@router.get(
    "",
    response_model=SubscriptionPage,
    summary="The webhook subscriptions, oldest first (their secrets are never shown again)",
    responses=problem_responses(401, 403, 422),
)
def list_webhooks(webhooks: WebhooksDep, page: Page, _: Admin) -> dict[str, Any]:
    return webhooks.subscriptions(page.keyset("webhooks", 2))


@router.get(
    "/{subscription_id}",
    response_model=SubscriptionStatus,
    summary="A subscription, how far its deliveries have got, and how many per status",
    responses=problem_responses(401, 403, 404, 422),
)
def get_webhook(subscription_id: SubscriptionId, webhooks: WebhooksDep, _: Admin) -> dict[str, Any]:
    return webhooks.subscription(subscription_id)


@router.delete(
    "/{subscription_id}",
    status_code=204,
    summary="Unsubscribe: nothing more is sent; its deliveries are forgotten",
    responses=problem_responses(401, 403, 404, 422),
)
def delete_webhook(subscription_id: SubscriptionId, webhooks: WebhooksDep, _: Admin) -> Response:
    webhooks.unsubscribe(subscription_id)
    return Response(status_code=204)


@router.get(
    "/{subscription_id}/deliveries",
    response_model=DeliveryPage,
    summary="A subscription's deliveries in log order: delivered, failing (being retried),"
    " parked (given up after the last attempt) or pending (to be sent again)",
    responses=problem_responses(401, 403, 404, 422),
)
def list_webhook_deliveries(
    subscription_id: SubscriptionId,
    webhooks: WebhooksDep,
    page: Page,
    _: Admin,
    status: Annotated[
        DeliveryStatus | None,
        Query(description="only deliveries in this status"),
    ] = None,
) -> dict[str, Any]:
    wanted = cast(Status | None, None if status is None else status.value)
    return webhooks.deliveries(subscription_id, page.keyset("deliveries", 2), wanted)


@router.post(
    # The id holds a slash (``<aggregate id>/<version>``): a path of its own.
    "/{subscription_id}/deliveries/{delivery_id:path}/redeliver",
    status_code=202,
    response_model=DeliveryView,
    summary="Send a parked (or delivered) delivery again, before the subscription's next"
    " event, with its webhook-id unchanged",
    responses=problem_responses(401, 403, 404, 422),
)
def redeliver_webhook_delivery(
    subscription_id: SubscriptionId, delivery_id: DeliveryId, webhooks: WebhooksDep, _: Admin
) -> dict[str, Any]:
    return webhooks.redeliver(subscription_id, delivery_id).as_dict()
