"""The allow-list: no webhook goes to a host, or an address, the operator did not allow,
neither when it is subscribed nor when it is delivered (DNS answers are checked too)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from projections.webhooks.sender import DeliveryFailed, Message, Sender
from projections.webhooks.targets import AllowList, NotAllowed
from tests.api.conftest import reads_own_writes
from tests.conftest import settings_for
from tests.hardening.conftest import World, make_app
from tests.webhooks.conftest import (
    ADMIN,
    ATTEMPTS,
    FAST,
    Receiver,
    caught_up,
    deliveries,
    subscribe,
    wait_until,
)

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MESSAGE = Message("0f1e2d3c-0000-4000-8000-000000000000", "eventshop.order.paid", 7, "{}")


def resolving_to(*addresses: str) -> Any:
    """A resolver whose DNS answers are these addresses, whatever the name."""

    def resolve(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]

    return resolve


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hooks",  # not listed
        "http://127.0.0.2/hooks",  # another address
        "http://localhost/hooks",  # a name of an allowed address is not the address
        "http://2130706433/hooks",  # 127.0.0.1 spelled as a number is no listed name
        "http://hooks.example.org.evil.test/x",
        "ftp://127.0.0.1/hooks",
        "http://user:pw@127.0.0.1/hooks",
        "http://127.0.0.1/hooks#top",
        "not a url",
    ],
)
def test_a_url_outside_the_allow_list_is_refused(url: str) -> None:
    allow = AllowList(["127.0.0.1", "hooks.example.org"])
    with pytest.raises(Exception, match="webhook URL") as refused:
        allow.check_url(url)
    assert getattr(refused.value, "field", None) == "url"


def test_the_allow_list_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    variable = "EVENTSHOP_WEBHOOK_ALLOWED_HOSTS"
    monkeypatch.setenv(variable, "hooks.example.org, *.Example.net,10.0.0.0/8,::1")
    assert settings_for("memory://").webhook_allowed_hosts == [
        "hooks.example.org",
        "*.example.net",
        "10.0.0.0/8",
        "::1/128",
    ]
    monkeypatch.setenv(variable, "hooks.example.org,not a host")
    with pytest.raises(ValidationError, match="not a host name"):
        settings_for("memory://")


def test_names_domains_addresses_and_networks_are_allowed() -> None:
    allow = AllowList(["hooks.example.org", "*.example.net", "10.0.0.0/8", "::1"])
    for url in (
        "https://hooks.example.org/a",
        "https://HOOKS.example.org./a",
        "http://a.b.example.net:8080/",
        "http://10.1.2.3/",
        "http://[::1]:9000/",
    ):
        allow.check_url(url)
    assert not AllowList([])  # nothing is allowed: webhooks are off


@pytest.mark.parametrize(
    ("answers", "allowed"),
    [
        (["93.184.216.34"], True),  # a public address of an allowed name
        (["127.0.0.1"], False),  # the name now leads to loopback (DNS rebinding)
        (["169.254.169.254"], False),  # cloud metadata
        (["10.0.0.5"], False),  # a private network
        (["93.184.216.34", "192.168.1.1"], False),  # any answer not allowed refuses
        (["::ffff:127.0.0.1"], False),  # loopback, as an IPv4-mapped IPv6 address
    ],
)
def test_every_address_a_name_resolves_to_is_checked(answers: list[str], allowed: bool) -> None:
    allow = AllowList(["hooks.example.org"], resolve=resolving_to(*answers))
    if allowed:
        _, address = allow.address("https://hooks.example.org/x")
        assert str(address) == answers[0]
    else:
        with pytest.raises(NotAllowed, match="does not allow"):
            allow.address("https://hooks.example.org/x")


def test_a_listed_network_allows_a_name_that_resolves_into_it() -> None:
    allow = AllowList(["hooks.internal", "10.0.0.0/8"], resolve=resolving_to("10.0.0.5"))
    assert str(allow.address("http://hooks.internal/x")[1]) == "10.0.0.5"


@pytest.mark.parametrize(
    "allowed",
    [["localhost"], ["10.0.0.0/8"]],
    ids=["a name of loopback", "the allow-list changed since"],
)
def test_nothing_is_sent_where_the_allow_list_refuses_at_delivery(
    receiver: Receiver, allowed: list[str]
) -> None:
    host = "localhost" if allowed == ["localhost"] else "127.0.0.1"
    sender = Sender(AllowList(allowed), timeout=2.0)
    try:
        with pytest.raises(DeliveryFailed, match="not sent"):
            sender.send(f"http://{host}:{receiver.port}/hooks", SECRET, MESSAGE)
    finally:
        sender.close()
    assert receiver.requests == []


def test_a_redirect_is_not_followed(receiver: Receiver) -> None:
    receiver.answers = [307]
    sender = Sender(AllowList(["127.0.0.1"]), timeout=2.0)
    try:
        with pytest.raises(DeliveryFailed, match="redirects are not followed") as failed:
            sender.send(receiver.url, SECRET, MESSAGE)
    finally:
        sender.close()
    assert failed.value.status == 307
    assert [r.path for r in receiver.requests] == ["/hooks"]


def test_subscriptions_the_api_refuses(sqlite_url: str, tmp_path: Path) -> None:
    with TestClient(make_app(sqlite_url, tmp_path, **FAST)) as client:
        for body in (
            {"url": "http://example.com/hooks", "event_types": ["eventshop.order.paid"]},
            {"url": "http://127.0.0.1:1/h", "event_types": ["eventshop.order.refunded"]},
            {"url": "http://127.0.0.1:1/h", "event_types": []},
            {"url": "http://127.0.0.1:1/h", "event_types": ["eventshop.order.paid"], "secret": "x"},
        ):
            response = client.post("/api/webhooks", json=body, headers=ADMIN)
            assert response.status_code == 422, (body, response.text)
        assert client.get("/api/webhooks", headers=ADMIN).json()["items"] == []
        mine = {"url": "http://127.0.0.1:1/h", "event_types": ["eventshop.order.paid"]}
        created = client.post("/api/webhooks", json={**mine, "secret": SECRET}, headers=ADMIN)
        assert created.status_code == 201, created.text
        assert created.json()["secret"] == SECRET
        assert "secret" not in client.get("/api/webhooks", headers=ADMIN).json()["items"][0]


def test_a_delivery_the_allow_list_refuses_is_parked_unsent(
    sqlite_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    """Subscribed by an allowed name that resolves to loopback, which is not allowed:
    every attempt is refused before a request is made, then the delivery is parked."""
    app = make_app(sqlite_url, tmp_path, **{**FAST, "webhook_allowed_hosts": ["localhost"]})
    with TestClient(app) as test_client:
        client = reads_own_writes(test_client)
        url = f"http://localhost:{receiver.port}/hooks"
        subscription = subscribe(client, url, "eventshop.order.placed")
        World(client).order("placed")
        wait_until(lambda: caught_up(client, subscription))
        (parked,) = deliveries(client, subscription)
    assert (parked["status"], parked["attempts"]) == ("parked", ATTEMPTS)
    assert "does not allow" in parked["last_error"]
    assert receiver.requests == []
