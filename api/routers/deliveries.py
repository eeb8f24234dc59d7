"""Operations on the way out: how each outbound channel of the integration events (the
NATS JetStream publisher, each webhook subscription) stands, beside the read models'
``GET /api/projections``."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from api.auth import Principal
from api.deps import require
from api.errors import problem_responses
from projections.deliveries import ChannelState, Deliveries

router = APIRouter(prefix="/api/deliveries", tags=["operations"])
Admin = Annotated[Principal, Depends(require("admin"))]


def get_deliveries(request: Request) -> Deliveries:
    return request.app.state.deliveries  # type: ignore[no-any-return]


DeliveriesDep = Annotated[Deliveries, Depends(get_deliveries)]


class ChannelView(BaseModel):
    """One outbound channel: the JetStream publisher, or one webhook subscription."""

    channel: Literal["jetstream", "webhook"]
    name: str = Field(description="`jetstream`, or `webhooks/<subscription id>`")
    subscription_id: str | None = Field(description="the webhook subscription (JetStream: null)")
    target: str | None = Field(
        description="where it sends: the stream and its subjects, or the webhook's URL"
    )
    state: ChannelState = Field(
        description="JetStream: the publisher's `starting`, `live`, `retrying` (NATS or the"
        " database failed), `standby`, `stopped`; a webhook: `live`, `catching_up`,"
        " `retrying` (a delivery is being tried again), `degraded` (deliveries parked);"
        " either: `not_running` (no process has said it delivers for 10 s)"
    )
    worker: str | None = Field(description="the process that delivers")
    position: int = Field(description="the last log position it has passed (sent, or not its)")
    head: int = Field(description="the log's last position")
    lag_events: int = Field(description="head - position")
    lag_seconds: float = Field(
        description="age of the oldest event it has not passed yet (0 when caught up)"
    )
    last_success_at: str | None = Field(description="last acknowledged or delivered event, UTC")
    last_failure_at: str | None = Field(description="last failed attempt, UTC")
    last_error: str | None = Field(description="the error of the last failed attempt")
    parked: int = Field(description="deliveries given up after their last attempt (webhooks)")
    retrying: int = Field(description="deliveries being tried again now")


class ChannelList(BaseModel):
    items: list[ChannelView]


@router.get(
    "",
    response_model=ChannelList,
    summary="Each outbound channel's state, position, lag (events and seconds), last success"
    " and failure, and parked deliveries",
    responses=problem_responses(401, 403),
)
def list_channels(deliveries: DeliveriesDep, _: Admin) -> ChannelList:
    return ChannelList(items=[ChannelView(**channel.as_dict()) for channel in deliveries.status()])
