"""One webhook request: signed per the Standard Webhooks specification, sent with httpx
to the address the allow-list checked, without following redirects."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from standardwebhooks import Webhook

from projections.integration.events import IntegrationEvent
from projections.webhooks.targets import AllowList, NotAllowed

CONTENT_TYPE = "application/cloudevents+json"
USER_AGENT = "eventshop-webhooks/1"


class DeliveryFailed(Exception):
    """An attempt that did not end in a 2xx answer (``status`` None: none at all)."""

    def __init__(self, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


@dataclass(frozen=True)
class Message:
    """An integration event as one subscription receives it."""

    id: str
    """``webhook-id``: the CloudEvent's id, the same on every attempt."""
    type: str
    position: int
    body: str

    @classmethod
    def of(cls, event: IntegrationEvent, source: str) -> Message:
        """The CloudEvent, byte for byte as the JetStream publisher sends it."""
        return cls(event.id, event.type, event.position, event.encode(source).decode())


class Sender:
    """Sends messages over one pooled httpx client."""

    def __init__(self, allow: AllowList, timeout: float) -> None:
        self.allow = allow
        # No proxy from the environment: a proxy would connect to the name itself, not
        # to the address checked here.
        self.client = httpx.Client(
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": USER_AGENT},
        )

    def send(self, url: str, secret: str, message: Message) -> int:
        """POST the message to ``url``, signed with ``secret``; the 2xx status, or
        ``DeliveryFailed``."""
        try:
            target, address = self.allow.address(url)
        except NotAllowed as refused:
            raise DeliveryFailed(f"not sent: {refused}") from None
        now = datetime.now(UTC)
        parsed = httpx.URL(target.url)
        headers = {
            # The name the receiver knows itself by, at the address that was checked.
            "Host": parsed.netloc.decode("ascii"),
            "Content-Type": CONTENT_TYPE,
            "webhook-id": message.id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(secret).sign(message.id, now, message.body),
        }
        extensions = {"sni_hostname": target.host} if parsed.scheme == "https" else {}
        request = self.client.build_request(
            "POST",
            parsed.copy_with(host=str(address)),
            content=message.body.encode(),
            headers=headers,
            extensions=extensions,
        )
        try:
            # The answer's body is never read: a receiver cannot make us download much.
            response = self.client.send(request, stream=True)
            response.close()
        except httpx.HTTPError as error:
            raise DeliveryFailed(f"{type(error).__name__}: {error}") from None
        if response.is_redirect:
            raise DeliveryFailed(
                f"answered {response.status_code} (redirects are not followed)",
                response.status_code,
            )
        if not response.is_success:
            raise DeliveryFailed(f"answered {response.status_code}", response.status_code)
        return response.status_code

    def close(self) -> None:
        self.client.close()
