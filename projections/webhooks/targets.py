"""Where webhooks may be sent: the operator's allow-list (EVENTSHOP_WEBHOOK_ALLOWED_HOSTS).

An entry is a host name (``hooks.example.com``), every name under a domain
(``*.example.com``), an address (``203.0.113.7``, ``::1``) or a network
(``10.0.0.0/8``). A target URL must be ``http`` or ``https``, without credentials or
fragment, and name a host the list allows: checked when a subscription is made
(:meth:`AllowList.check_url`) and again before every delivery (:meth:`AllowList.address`).

Before each delivery the host is resolved and EVERY address it resolves to must be
allowed: an address, or one in a network, of the list; or, for a host allowed by name,
a public (global) one. A name the operator allowed therefore cannot lead to loopback,
private or link-local addresses (cloud metadata at 169.254.169.254, say) unless those
are listed themselves, whatever its DNS answers later. The request then goes to the
address that was checked, not to a second resolution of the name.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from domain.errors import InvalidValue

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[..., Sequence[tuple[Any, ...]]]

MAX_URL_LENGTH = 2048
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_NAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")


class NotAllowed(Exception):
    """A target the allow-list does not allow (at delivery: nothing was sent)."""


def parse_entry(entry: str) -> str:
    """An allow-list entry, checked and normalised (lower case); ValueError if it is none."""
    text = entry.strip().lower().rstrip(".")
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        pass
    name = text.removeprefix("*.")
    if not _NAME.match(name):
        raise ValueError(f"{entry!r} is not a host name, *.domain, address or network (CIDR)")
    return text


def _address(text: str) -> Address | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True)
class Target:
    """A target URL the allow-list let through, and the host it names."""

    url: str
    host: str
    """Lower case, IDNA-encoded (or an address, without brackets)."""
    port: int


class AllowList:
    """The hosts, domains, addresses and networks webhooks may be sent to."""

    def __init__(self, entries: Iterable[str], resolve: Resolver = socket.getaddrinfo) -> None:
        self.names: set[str] = set()
        self.domains: list[str] = []
        self.networks: list[Network] = []
        for entry in map(parse_entry, entries):
            if entry.startswith("*."):
                self.domains.append(entry[1:])  # ".example.com"
            elif "/" in entry:
                self.networks.append(ipaddress.ip_network(entry))
            else:
                self.names.add(entry)
        self._resolve = resolve

    def __bool__(self) -> bool:
        return bool(self.names or self.domains or self.networks)

    def check_url(self, url: str) -> Target:
        """The target of ``url`` if the list allows it; ``InvalidValue`` (422) if not."""

        def refuse(why: str) -> InvalidValue:
            return InvalidValue("url", f"the webhook URL {why}")

        if len(url) > MAX_URL_LENGTH:
            raise refuse(f"is longer than {MAX_URL_LENGTH} characters")
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, ValueError, TypeError) as error:
            raise refuse(f"is not a URL: {error}") from None
        if parsed.scheme not in ("http", "https"):
            raise refuse("must be http:// or https://")
        if parsed.userinfo or parsed.fragment:
            raise refuse("may hold no credentials and no #fragment")
        host = parsed.raw_host.decode("ascii").strip("[]").lower().rstrip(".")
        if not host or (_address(host) is None and not _NAME.match(host)):
            raise refuse("names no valid host")
        if not self.allows_host(host):
            raise refuse(
                f"names {host}, which EVENTSHOP_WEBHOOK_ALLOWED_HOSTS does not allow"
                if self
                else "is refused: EVENTSHOP_WEBHOOK_ALLOWED_HOSTS allows no host (webhooks off)"
            )
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        return Target(str(parsed), host, port)

    def allows_host(self, host: str) -> bool:
        """Whether a host as written in a URL is allowed (its addresses are not checked)."""
        address = _address(host)
        if address is not None:
            return self._listed(address)
        return self._named(host)

    def address(self, url: str) -> tuple[Target, Address]:
        """Resolve the target of ``url`` and check every address it resolves to; the one
        to connect to. ``NotAllowed`` when the URL or any address is not allowed, or the
        name does not resolve."""
        try:
            target = self.check_url(url)
        except InvalidValue as refused:
            raise NotAllowed(refused.detail) from None
        try:
            answers = self._resolve(target.host, target.port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as error:
            raise NotAllowed(f"{target.host} does not resolve: {error}") from None
        addresses = [a for a in (_address(str(answer[4][0])) for answer in answers) if a]
        if not addresses:
            raise NotAllowed(f"{target.host} resolves to no address")
        named = _address(target.host) is None and self._named(target.host)
        for address in addresses:
            if not (self._listed(address) or (named and address.is_global)):
                raise NotAllowed(
                    f"{target.host} resolves to {address}, which"
                    " EVENTSHOP_WEBHOOK_ALLOWED_HOSTS does not allow (list the address or"
                    " its network to allow a non-public one)"
                )
        return target, addresses[0]

    def _named(self, host: str) -> bool:
        return host in self.names or any(host.endswith(domain) for domain in self.domains)

    def _listed(self, address: Address) -> bool:
        return any(address in network for network in self.networks)
