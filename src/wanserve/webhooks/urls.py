"""The webhook URL policy against server-side request forgery.

A webhook URL is http(s) with a host and no credentials, and every address its host resolves to
must be public: no loopback, private, link-local, shared or reserved address unless the operator
allows private ones (`webhooks.allow_private`); unspecified and multicast addresses never. The
API checks a URL when a task is created; the sender checks it again before each attempt and
connects to the address it checked (`Destination.address`), so a name that resolves elsewhere
by then (DNS rebinding) reaches no address the policy did not see.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from wanserve.domain.webhooks import MAX_URL_CHARS

__all__ = ["Destination", "Resolver", "UrlPolicy", "UrlRefused", "system_resolver"]

Resolver = Callable[[str, int], Awaitable[list[str]]]
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_RESOLVE_TIMEOUT_S = 5.0


class UrlRefused(ValueError):
    """The URL breaks the policy; the message is the rule it breaks."""


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses the system's resolver gives for `host` (TCP)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True, slots=True)
class Destination:
    """A checked URL: where to connect (`address`, `port`) and what to ask for (`url`, whose
    `host` is the Host header and the TLS server name)."""

    url: str
    scheme: str
    host: str
    port: int
    address: str


class UrlPolicy:
    def __init__(self, *, allow_private: bool, resolver: Resolver = system_resolver) -> None:
        self.allow_private = allow_private
        self._resolver = resolver

    async def resolve(self, url: str) -> Destination:
        """`url` checked (its form and each address its host resolves to); raises UrlRefused."""
        scheme, host, port = _parse(url)
        addresses = await self._addresses(host, port)
        for address in addresses:
            self._check(host, address)
        return Destination(url, scheme, host, port, str(addresses[0]))

    async def _addresses(self, host: str, port: int) -> list[IpAddress]:
        literal = _ip(host)
        if literal is not None:
            return [literal]
        try:
            found = await asyncio.wait_for(self._resolver(host, port), _RESOLVE_TIMEOUT_S)
        except (OSError, TimeoutError) as error:
            raise UrlRefused(f"its host {host!r} does not resolve ({error})") from None
        addresses = [a for a in (_ip(text) for text in found) if a is not None]
        if not addresses:
            raise UrlRefused(f"its host {host!r} resolves to no address")
        return addresses

    def _check(self, host: str, address: IpAddress) -> None:
        kind = _kind(address)
        if kind is None:
            return
        where = f"{address}" if str(address) == host else f"{host} resolves to {address}"
        if kind in ("unspecified", "multicast") or not self.allow_private:
            raise UrlRefused(
                f"{where}, a {kind} address: webhooks go to public addresses only"
                + ("" if kind in ("unspecified", "multicast") else _ALLOW_HINT)
            )


_ALLOW_HINT = " (an operator allows private ones with WANSERVE_WEBHOOKS__ALLOW_PRIVATE=true)"


def _parse(url: str) -> tuple[str, str, int]:
    if len(url) > MAX_URL_CHARS:
        raise UrlRefused(f"must be at most {MAX_URL_CHARS} characters")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise UrlRefused("must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise UrlRefused(f"must be a well-formed URL ({error})") from None
    if parts.scheme not in ("http", "https"):
        raise UrlRefused("must be an http:// or https:// URL")
    if not parts.hostname:
        raise UrlRefused("must name a host")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("must not carry credentials (user:password@)")
    default = 443 if parts.scheme == "https" else 80
    return parts.scheme, parts.hostname, port or default


def _ip(text: str) -> IpAddress | None:
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])  # an IPv6 zone is no address
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _kind(address: IpAddress) -> str | None:
    """What makes `address` non-public, or None when it is a public unicast address."""
    for kind in ("unspecified", "multicast", "loopback", "link_local", "private", "reserved"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    return None if address.is_global else "non-public"
