"""The signing secrets of a webhook endpoint, as the JSON sealed into ``secrets_sealed``.

A rotation keeps the previous secret valid for a while so receivers can switch over: the
envelope lists the current secret first (no expiry) and earlier ones with the instant they
stop being used. Senders sign with every secret still valid (Standard Webhooks allows several
signatures in one header), so a receiver holding either secret verifies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from signalfactory.domain.errors import OperationalError

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
#: how long the previous secret keeps signing after a rotation
ROTATION_OVERLAP = timedelta(hours=24)


@dataclass(frozen=True)
class SigningSecret:
    secret: str
    #: None for the current secret; when a rotated-out secret stops signing
    expires_at: datetime | None = None


def encode_secrets(secrets: tuple[SigningSecret, ...]) -> bytes:
    return json.dumps([{"secret": s.secret,
                        "expires_at": s.expires_at.astimezone(UTC).isoformat()
                        if s.expires_at is not None else None} for s in secrets],
                      separators=(",", ":")).encode()


def decode_secrets(clear: bytes) -> tuple[SigningSecret, ...]:
    try:
        items = json.loads(clear)
        return tuple(SigningSecret(secret=str(item["secret"]),
                                   expires_at=datetime.fromisoformat(item["expires_at"])
                                   if item["expires_at"] is not None else None)
                     for item in items)
    except (ValueError, TypeError, KeyError) as exc:
        raise OperationalError("an endpoint's sealed secrets are not in the expected "
                               "format") from exc


def active_secrets(secrets: tuple[SigningSecret, ...], now: datetime) -> tuple[str, ...]:
    """The secrets to sign with at ``now``: the current one first, then unexpired ones."""
    return tuple(s.secret for s in secrets if s.expires_at is None or s.expires_at > now)


def rotate(secrets: tuple[SigningSecret, ...], new_secret: str,
           now: datetime) -> tuple[SigningSecret, ...]:
    """``new_secret`` becomes current; the current one signs for ``ROTATION_OVERLAP`` more;
    secrets already expired are dropped (a second rotation within the overlap keeps both
    earlier secrets until their own expiry)."""
    kept = tuple(SigningSecret(s.secret, s.expires_at or now + ROTATION_OVERLAP)
                 for s in secrets if s.expires_at is None or s.expires_at > now)
    return (SigningSecret(new_secret), *kept)
