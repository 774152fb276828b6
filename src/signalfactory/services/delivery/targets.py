"""Checking and redacting endpoint targets before they are sealed.

The channel of a kind knows its targets best (``Channel.check_target``: DNS-aware SSRF
checks, the Apprise scheme registry). When that kind's channel is not configured here, a
syntax check of our own still refuses what can never work, so nothing unusable is stored.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from signalfactory.domain.delivery import EndpointKind
from signalfactory.domain.errors import BadInputError
from signalfactory.services.platform import Platform

MAX_TARGET_CHARS = 2048
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]{0,31}$")
_EMAIL = re.compile(r"^[^@\s<>]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$")


def _printable(text: str) -> bool:
    return all(" " < ch != "\x7f" for ch in text)


def _private_host(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name: the channel resolves it when it is configured
    return not address.is_global


def check_webhook_syntax(url: str, *, allow_private: bool) -> str:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BadInputError(f"webhook URL is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise BadInputError("webhook URL must start with https:// (or http://)")
    host = parts.hostname
    if not host:
        raise BadInputError("webhook URL has no host")
    if parts.username is not None or parts.password is not None:
        raise BadInputError("webhook URL must not carry a user or password; the requests "
                            "are signed instead")
    if port == 0:
        raise BadInputError("webhook URL has port 0")
    if not allow_private and _private_host(host):
        raise BadInputError(f"webhook host {host} is a loopback or private address, refused "
                            "(SSRF); an operator may allow it with "
                            "SIGNALFACTORY_DELIVERY_ALLOW_PRIVATE_TARGETS=true")
    return url


def check_apprise_syntax(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep or not _SCHEME.match(scheme.lower()) or not rest:
        raise BadInputError("an Apprise URL looks like scheme://..., e.g. "
                            "tgram://bottoken/ChatID or ntfy://topic")
    return url


def check_email_syntax(address: str) -> str:
    if address.startswith(("mailto://", "mailtos://")):
        return check_apprise_syntax(address)
    if not _EMAIL.match(address):
        raise BadInputError(f"{address!r} is not an e-mail address (name@example.com) or a "
                            "mailto:// URL")
    return address


def check_target(platform: Platform, kind: EndpointKind, target: str) -> str:
    """The target to store for ``kind``; BadInputError when it cannot be used."""
    target = target.strip()
    if not target or len(target) > MAX_TARGET_CHARS or not _printable(target):
        raise BadInputError(f"target must be 1..{MAX_TARGET_CHARS} printable characters "
                            "without spaces")
    channel = platform.channels.get(kind)
    if channel is not None:
        return channel.check_target(target)
    if kind == "webhook":
        return check_webhook_syntax(
            target, allow_private=platform.settings.delivery_allow_private_targets)
    if kind == "apprise":
        return check_apprise_syntax(target)
    return check_email_syntax(target)


def target_hint(kind: EndpointKind, target: str) -> str:
    """What may be shown of a target: scheme and host of a URL, a masked e-mail address.
    Paths, queries and user parts carry tokens and are never shown."""
    if kind == "email" and "://" not in target:
        local, _, domain = target.partition("@")
        return f"{local[:1]}***@{domain}"[:200]
    scheme, _, rest = target.partition("://")
    if kind == "webhook":
        host = urlsplit(target).hostname or "?"
        return f"{scheme}://{host}/…"[:200]
    # Apprise URLs put tokens right after the scheme (tgram://TOKEN/chat): show the scheme.
    return f"{scheme}://…"[:200] if rest else "…"
