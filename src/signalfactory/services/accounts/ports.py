"""Ports of accounts: tenants, API keys, usage quotas, idempotency, rate limits."""

from __future__ import annotations

from typing import Protocol


class AccountRepository(Protocol):
    """Tenants and their API keys."""


class UsageRepository(Protocol):
    """Usage counters that quotas are checked against."""


class IdempotencyRepository(Protocol):
    """Stored answers of requests sent with an Idempotency-Key."""


class RateLimiter(Protocol):
    """Per-key request budgets."""
