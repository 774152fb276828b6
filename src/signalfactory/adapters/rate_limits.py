"""Per-key rate limits: moving windows in memory by default (``MemoryWindows``, the rule of
the ``limits`` library's moving window), in Redis through ``limits`` when configured.

Every API key has its own moving window, sized by its tenant's tier, so one key's traffic never
slows another's. The outcome travels as IETF ``RateLimit-*`` headers on every authenticated
response (draft-ietf-httpapi-ratelimit-headers) and as a 429 problem with ``Retry-After``.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
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


class MemoryWindows:
    """The moving window of ``limits``' ``MovingWindowRateLimiter`` over its memory storage,
    for this process's keys, at a fraction of its cost.

    Same rule: a hit is allowed while fewer than ``limit`` allowed hits fall in the last
    ``expiry`` seconds, a refused hit is not recorded, and the window's stats are its
    oldest hit's time and the hits in it. ``limits`` keeps each key's hits newest first in a
    list it grows at the front (a copy of every entry per hit: 6,000 for an enterprise key)
    and a timer thread started every 10 ms trims it; here the hits are a deque, oldest
    first, trimmed as they are read.
    """

    SWEEP_S = 60.0  # how often keys whose hits have all expired are forgotten

    def __init__(self) -> None:
        self._hits: dict[str, deque[float]] = {}
        self._expiry: dict[str, int] = {}  # a key names its limit, so it has one window
        self._lock = threading.Lock()
        self._swept_at = time.time()

    def hit(self, key: str, limit: int, expiry: int) -> tuple[bool, float, int]:
        """(allowed, start of the window, hits in it) after one hit of ``key``."""
        now = time.time()
        horizon = now - expiry
        with self._lock:
            hits = self._hits.get(key)
            if hits is None:
                hits = self._hits[key] = deque()
                self._expiry[key] = expiry
            while hits and hits[0] <= horizon:
                hits.popleft()
            allowed = len(hits) < limit
            if allowed:
                hits.append(now)
            if now - self._swept_at > self.SWEEP_S:
                self._sweep(now)
            return allowed, hits[0] if hits else now, len(hits)

    def _sweep(self, now: float) -> None:
        self._swept_at = now
        idle = [k for k, v in self._hits.items() if not v or v[-1] <= now - self._expiry[k]]
        for key in idle:
            del self._hits[key], self._expiry[key]


class KeyRateLimiter:
    """Moving-window limiter keyed by API key; storage ``memory://`` or a ``redis://`` URL.

    With the default in-memory storage and tiers, the ``limits`` library is loaded on first
    use: a command-line process builds a platform but never limits a request. Any other
    storage or tier table is set up (and refused when wrong) at construction, as before.
    In memory the windows are ``MemoryWindows`` (the same rule, much cheaper per hit);
    elsewhere ``limits``' moving window over its storage.
    """

    storage: Storage | MemoryWindows
    limiter: MovingWindowRateLimiter | None
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
            self.items = {tier: parse(text) for tier, text in self._tiers.items()}
            if self._storage_uri == "memory://":
                self.storage, self.limiter = MemoryWindows(), None
                return
            options: dict[str, str] = {}
            if self._storage_uri.startswith(("redis://", "rediss://", "redis+")):
                options["key_prefix"] = f"{self._namespace}-ratelimit"
            storage = storage_from_string(self._storage_uri, **options)
            if not isinstance(storage, Storage):  # an async storage URI (async+redis://...)
                raise ValueError(f"rate limit storage {self._storage_uri!r} is async; use a "
                                 "sync URI")
            self.storage = storage
            self.limiter = MovingWindowRateLimiter(self.storage)

    def item_for(self, tier: str) -> RateLimitItem:
        return self.items.get(tier, self.items["free"])

    def hit(self, tier: str, *identity: str) -> RateLimitDecision:
        # imported here: every process builds a limiter, few (the API) ever ask it anything
        from signalfactory.domain.accounts import RateLimitDecision

        item = self.item_for(tier)
        window = int(item.get_expiry())
        windows = self.storage
        if isinstance(windows, MemoryWindows):
            allowed, start, hits = windows.hit(item.key_for(*identity), item.amount, window)
            return _decision(allowed, item.amount, item.amount - hits, start + window, window)
        limiter = self.limiter
        if limiter is None:  # set with any storage but memory
            raise RuntimeError("the rate limiter has no window for its storage")
        try:
            allowed = limiter.hit(item, *identity)
            reset_time, remaining = limiter.get_window_stats(item, *identity)
        except Exception as exc:  # storage down: serve rather than refuse everyone
            self._warn(exc)
            return RateLimitDecision(True, item.amount, item.amount, window, window)
        return _decision(allowed, item.amount, remaining, reset_time, window)

    def _warn(self, exc: Exception) -> None:
        with self._lock:
            if time.monotonic() - self._warned_at < 60:
                return
            self._warned_at = time.monotonic()
        log.warning("rate limit storage unavailable; requests are not being limited",
                    error=f"{type(exc).__name__}: {exc}")


def _decision(allowed: bool, limit: int, remaining: int, reset_time: float,
              window: int) -> RateLimitDecision:
    from signalfactory.domain.accounts import RateLimitDecision

    reset_after = max(0, math.ceil(reset_time - time.time()))
    if not allowed:
        reset_after = max(1, reset_after)
    return RateLimitDecision(allowed, limit, max(0, remaining), reset_after, window)
