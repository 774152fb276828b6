"""Accounts: tenants, their API keys, who a request acts as, quotas and rate-limit outcomes.

The records the account repositories return and accept, and the refusals the account use
cases raise. HTTP shapes (status codes, headers) are decided at the API edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from signalfactory.domain.api_keys import role_at_least
from signalfactory.domain.errors import BadInputError

TIERS: tuple[str, ...] = ("free", "premium", "enterprise")


def check_tier(tier: str) -> str:
    if tier not in TIERS:
        raise BadInputError(f"tier {tier!r} is not known; use one of {', '.join(TIERS)}")
    return tier


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _iso(value: datetime | None) -> str | None:
    return as_utc(value).isoformat() if value is not None else None


@dataclass(frozen=True)
class Tenant:
    id: int
    name: str
    tier: str


@dataclass(frozen=True)
class TenantSummary:
    """A tenant as ``tenants list`` shows it."""

    id: int
    name: str
    tier: str
    active_keys: int


@dataclass(frozen=True)
class KeyRecord:
    """A stored API key with its tenant (what authentication needs); never the secret."""

    id: int
    tenant_id: int
    tenant_name: str
    tier: str
    role: str
    prefix: str
    name: str
    created_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    @property
    def status(self) -> str:
        return "revoked" if self.revoked_at else "active"

    def as_json(self) -> dict[str, str | int | None]:
        """The key as the CLI prints it with ``--json``."""
        return {"id": self.id, "tenant": self.tenant_name, "tenant_id": self.tenant_id,
                "prefix": self.prefix, "role": self.role, "name": self.name,
                "created_at": _iso(self.created_at), "revoked_at": _iso(self.revoked_at),
                "last_used_at": _iso(self.last_used_at), "status": self.status}


@dataclass(frozen=True)
class NewKeyRow:
    """What is stored for a freshly minted key (its digest, never the secret)."""

    tenant_id: int
    prefix: str
    digest: str
    role: str
    name: str
    created_at: datetime


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: the key's tenant, tier and role."""

    tenant_id: int
    tenant_name: str
    tier: str
    role: str  # viewer | trader | admin
    key_id: int | None
    key_prefix: str | None

    def has_role(self, required: str) -> bool:
        return role_at_least(self.role, required)

    @property
    def audit_actor(self) -> str:
        """Who this principal is in the audit log: the key by id and prefix."""
        return f"key:{self.key_id}:{self.key_prefix}" if self.key_id is not None else "api"


class QuotaExceededError(BadInputError):
    """The tenant's tier has no room for one more of something.

    ``retry_after`` (seconds) is set for a daily quota that is used up (it frees at UTC
    midnight); a count quota that is full frees when the tenant deletes something.
    """

    code = "quota-exceeded"

    def __init__(self, message: str, *, quota: str, limit: int | None, used: int,
                 tier: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.quota = quota
        self.limit = limit
        self.used = used
        self.tier = tier
        self.retry_after = retry_after


@dataclass(frozen=True)
class RateLimitDecision:
    """The outcome of one request against its key's moving window."""

    allowed: bool
    limit: int
    remaining: int
    reset_after: int  # whole seconds until the window frees capacity again
    window: int  # seconds

    def headers(self) -> list[tuple[bytes, bytes]]:
        """IETF ``RateLimit-*`` response headers (draft-ietf-httpapi-ratelimit-headers)."""
        pairs = [("ratelimit-limit", str(self.limit)),
                 ("ratelimit-remaining", str(self.remaining)),
                 ("ratelimit-reset", str(self.reset_after)),
                 ("ratelimit-policy", f"{self.limit};w={self.window}")]
        return [(k.encode(), v.encode()) for k, v in pairs]


# -- idempotency ---------------------------------------------------------------------------

@dataclass(frozen=True)
class IdempotencyRecord:
    """A stored request with an Idempotency-Key: in flight, or complete with its answer."""

    id: int
    tenant_id: int
    key: str
    request_hash: str
    state: str  # in_flight | complete
    created_at: datetime
    locked_at: datetime | None
    status_code: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


ClaimOutcome = Literal["new", "replay", "mismatch", "in_flight"]


@dataclass(frozen=True)
class Claim:
    """What became of claiming an Idempotency-Key: run it (``new``), answer the stored
    response (``replay``), or refuse (``mismatch``, ``in_flight``)."""

    outcome: ClaimOutcome
    record_id: int | None = None
    response: StoredResponse | None = None


# -- dashboard sessions ------------------------------------------------------------------

#: a signed-in browser (the cookie holds the token) and a one-time sign-in link
SESSION_KINDS: tuple[str, ...] = ("session", "link")


@dataclass(frozen=True)
class NewWebSession:
    """What is stored for a browser session or a one-time sign-in link: the SHA-256 of its
    token (never the token), the API key it acts as, and the CSRF token its forms carry."""

    kind: str  # session | link
    token_digest: str
    key_id: int
    csrf_token: str
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class WebSessionRecord:
    """A stored session or link with the key it acts as (revoking the key ends both)."""

    id: int
    kind: str
    key: KeyRecord
    csrf_token: str
    created_at: datetime
    expires_at: datetime
