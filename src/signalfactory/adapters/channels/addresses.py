"""Where a channel may connect: the SSRF guard shared by webhooks and self-hosted Apprise
services.

A tenant chooses the URL, the platform makes the request: without this guard a tenant could
make it reach the cloud metadata service (169.254.169.254), the database on loopback or a
host on the private network. Every address a host name resolves to must be public, since a
round-robin name could hand out a private one on the next lookup; at send time the channel
connects to the address it checked (no second lookup an attacker could rebind).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from signalfactory.domain.errors import BadInputError

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def forbidden_reason(address: IpAddress) -> str | None:
    """Why a connection to ``address`` is refused, or None when it is a public address."""
    mapped = getattr(address, "ipv4_mapped", None)
    if isinstance(mapped, ipaddress.IPv4Address):
        address = mapped  # ::ffff:127.0.0.1 is loopback too
    checks = (
        (address.is_loopback, "loopback"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
        (address.is_unspecified, "unspecified"),
        (address.is_reserved, "reserved"),
        (address.is_private, "private"),
        (not address.is_global, "not globally routable"),
    )
    for hit, reason in checks:
        if hit:
            return reason
    return None


@dataclass(frozen=True)
class ResolvedHost:
    host: str
    port: int
    #: the first vetted address: the one to connect to
    address: str


def resolve_public(host: str, port: int, *, what: str = "target") -> ResolvedHost:
    """Resolve ``host`` and require every address to be public (BadInputError otherwise)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise BadInputError(f"{what} host {host!r} does not resolve ({exc})") from exc
    addresses: list[str] = []
    for *_ignored, sockaddr in infos:
        text = str(sockaddr[0]).split("%", 1)[0]  # drop an IPv6 zone id
        reason = forbidden_reason(ipaddress.ip_address(text))
        if reason is not None:
            raise BadInputError(
                f"{what} host {host!r} resolves to {text}, a {reason} address; such targets "
                "are refused (SSRF) unless SIGNALFACTORY_DELIVERY_ALLOW_PRIVATE_TARGETS is set")
        if text not in addresses:
            addresses.append(text)
    if not addresses:
        raise BadInputError(f"{what} host {host!r} has no address")
    return ResolvedHost(host=host, port=port, address=addresses[0])
