"""Per-key rate limits with the ``limits`` library (memory by default, Redis when configured).

Every API key has its own moving window, sized by its tenant's tier, so one key's traffic never
slows another's. The outcome travels as IETF ``RateLimit-*`` headers on every authenticated
response (draft-ietf-httpapi-ratelimit-headers) and as a 429 problem with ``Retry-After``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from signalfactory.observability.logging import get_logger

if TYPE_CHECKING:
    from limits import RateLimitItem
    from limits.storage import Storage
    from limits.strategies import MovingWindowRateLimiter

    from signalfactory.domain.accounts import RateLimitDecision

log = get_logger("signalfactory.adapters.rate_limits")

# Requests per key; a tier's quotas (strategies, scans a day...) live in
# services/accounts/quotas.py.
TIER_RATE_LIMITS: dict[str, str] = {
    "free": "60/minute",
    "premium": "600/minute",
    "enterprise": "6000/minute",
}


class KeyRateLimiter:
    """Moving-window limiter keyed by API key; storage ``memory://`` or a ``redis://`` URL.

    With the default in-memory storage and tiers, the ``limits`` library is loaded on first
    use: a command-line process builds a platform but never limits a request. Any other
    storage or tier table is set up (and refused when wrong) at construction, as before.
    """

    storage: Storage
    limiter: MovingWindowRateLimiter
    items: dict[str, RateLimitItem]

    def __init__(self, storage_uri: str = "memory://",
                 limits_by_tier: Mapping[str, str] | None = None,
                 namespace: str = "sf") -> None:
        self._storage_uri = storage_uri
        self._namespace = namespace
        self._tiers = {**TIER_RATE_LIMITS, **(limits_by_tier or {})}
        self._warned_at = 0.0
        self._lock = threading.Lock()
        if storage_uri != "memory://" or limits_by_tier:
            self._set_up()

    def __getattr__(self, name: str) -> object:
        # only reached while ``storage``, ``limiter`` and ``items`` are not set yet
        if name not in ("storage", "limiter", "items"):
            raise AttributeError(name)
        self._set_up()
        return self.__dict__[name]

    def _set_up(self) -> None:
        from limits import parse
        from limits.storage import Storage, storage_from_string
        from limits.strategies import MovingWindowRateLimiter

        with self._lock:
            if "limiter" in self.__dict__:
                return
            options: dict[str, str] = {}
            if self._storage_uri.startswith(("redis://", "rediss://", "redis+")):
                options["key_prefix"] = f"{self._namespace}-ratelimit"
            storage = storage_from_string(self._storage_uri, **options)
            if not isinstance(storage, Storage):  # an async storage URI (async+redis://...)
                raise ValueError(f"rate limit storage {self._storage_uri!r} is async; use a "
                                 "sync URI")
            self.items = {tier: parse(text) for tier, text in self._tiers.items()}
            self.storage = storage
            self.limiter = MovingWindowRateLimiter(self.storage)

    def item_for(self, tier: str) -> RateLimitItem:
        return self.items.get(tier, self.items["free"])

    def hit(self, tier: str, *identity: str) -> RateLimitDecision:
        # imported here: every process builds a limiter, few (the API) ever ask it anything
        from signalfactory.domain.accounts import RateLimitDecision

        item = self.item_for(tier)
        window = int(item.get_expiry())
        try:
            allowed = self.limiter.hit(item, *identity)
            reset_time, remaining = self.limiter.get_window_stats(item, *identity)
        except Exception as exc:  # storage down: serve rather than refuse everyone
            self._warn(exc)
            return RateLimitDecision(True, item.amount, item.amount, window, window)
        reset_after = max(0, math.ceil(reset_time - time.time()))
        if not allowed:
            reset_after = max(1, reset_after)
        return RateLimitDecision(allowed, item.amount, max(0, remaining), reset_after, window)

    def _warn(self, exc: Exception) -> None:
        with self._lock:
            if time.monotonic() - self._warned_at < 60:
                return
            self._warned_at = time.monotonic()
        log.warning("rate limit storage unavailable; requests are not being limited",
                    error=f"{type(exc).__name__}: {exc}")
