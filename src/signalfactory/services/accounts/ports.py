"""Ports of accounts: tenants, API keys, usage quotas, idempotency, rate limits."""

from __future__ import annotations

from datetime import date, datetime
from typing import Protocol

from signalfactory.domain.accounts import (
    IdempotencyRecord,
    KeyRecord,
    NewKeyRow,
    NewWebSession,
    RateLimitDecision,
    StoredResponse,
    Tenant,
    TenantSummary,
    WebSessionRecord,
)


class AccountRepository(Protocol):
    """Tenants and their API keys."""

    def create_tenant(self, name: str, tier: str) -> Tenant:
        """Store a tenant; ``ConflictError`` when the name is taken."""
        ...

    def list_tenants(self) -> list[TenantSummary]:
        """Every tenant in id order, with its number of active keys."""
        ...

    def tenant_by_name(self, name: str) -> Tenant | None: ...

    def set_tier(self, tenant_id: int, tier: str) -> None: ...

    def create_key(self, row: NewKeyRow) -> int:
        """Store a key; returns its id."""
        ...

    def list_keys(self, tenant_id: int | None = None) -> list[KeyRecord]:
        """Keys in id order, of one tenant or of all."""
        ...

    def key_by_digest(self, key_digest: str) -> KeyRecord | None: ...

    def keys_matching(self, *, key_id: int | None = None, prefix: str | None = None,
                      tenant_id: int | None = None) -> list[KeyRecord]:
        """Keys with this id, or whose prefix starts with ``prefix`` (taken literally),
        optionally only of one tenant."""
        ...

    def revoke_key(self, key_id: int, now: datetime) -> bool:
        """Revoke; False when the key was already revoked (or does not exist)."""
        ...

    def touch_key(self, key_id: int, now: datetime) -> None:
        """Record the key's last use."""
        ...


class UsageRepository(Protocol):
    """Usage counters that quotas are checked against, and the stored things they count."""

    def lock_tenant(self, tenant_id: int) -> None:
        """Serialise quota checks of one tenant until the unit of work ends (PostgreSQL
        row lock; SQLite and memory already serialise writers)."""
        ...

    def count_held(self, tenant_id: int, kind: str) -> int:
        """How many ``kind`` ("strategies": own, not built-in; "subscriptions") the tenant
        holds now."""
        ...

    def take_daily(self, tenant_id: int, kind: str, day: date, limit: int | None) -> bool:
        """Count one more ``kind`` for ``day`` unless ``limit`` is reached (None: no limit);
        False (and nothing counted) when it is."""
        ...

    def daily_used(self, tenant_id: int, kind: str, day: date) -> int: ...


class IdempotencyRepository(Protocol):
    """Stored answers of requests sent with an Idempotency-Key."""

    def find(self, tenant_id: int, key: str) -> IdempotencyRecord | None: ...

    def claim(self, tenant_id: int, key: str, method: str, path: str, request_hash: str,
              now: datetime) -> int | None:
        """Store an in-flight claim; its id, or None when the key is already stored (a
        concurrent request claimed it first)."""
        ...

    def take_over(self, record_id: int, locked_at: datetime | None, now: datetime) -> bool:
        """Take an abandoned in-flight claim whose lock is still ``locked_at``; False when
        another request took it first."""
        ...

    def complete(self, record_id: int, response: StoredResponse, now: datetime) -> None: ...

    def release(self, record_id: int) -> None:
        """Forget a claim (its request did nothing, or its record expired)."""
        ...

    def purge(self, created_before: datetime) -> int:
        """Delete records created before the cutoff; how many."""
        ...


class RateWindow(Protocol):
    """A tier's request budget: ``amount`` requests per ``get_expiry()`` seconds."""

    @property
    def amount(self) -> int: ...

    def get_expiry(self) -> int: ...


class RateLimiter(Protocol):
    """Per-key request budgets, sized by tier."""

    def item_for(self, tier: str) -> RateWindow: ...

    def hit(self, tier: str, *identity: str) -> RateLimitDecision:
        """Count one request of ``identity`` against the tier's window."""
        ...



class WebSessionRepository(Protocol):
    """Dashboard sessions and one-time sign-in links, found by the digest of their token."""

    def create(self, row: NewWebSession) -> int: ...

    def find(self, token_digest: str, kind: str) -> WebSessionRecord | None:
        """The session or link with this digest, joined with its key (revoked or not)."""
        ...

    def delete(self, token_digest: str, kind: str) -> bool:
        """Forget a session (sign-out) or a used link; False when there was none."""
        ...

    def purge(self, expired_before: datetime) -> int:
        """Delete sessions and links that expired before the cutoff; how many."""
        ...
