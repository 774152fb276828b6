"""A cache for hot reads: in memory by default, Redis when ``SIGNALFACTORY_REDIS_URL`` is set.

Both backends have one interface: ``get_many``, ``set`` (with a TTL), ``delete``,
``delete_pattern`` (glob, as Redis ``SCAN MATCH``) and ``incr`` (a counter).

Invalidation uses a generation counter per namespace ("instruments", "strategies", ...),
because it works across processes with Redis and needs no key listing:

- a read fetches the namespace's generation and the entry in ONE round trip (``MGET``); an
  entry stored under an older generation is a miss. On a miss it loads from the database and
  stores the value tagged with the generation it saw *before* loading;
- a write commits, *then* bumps the generation (``INCR``). A reader that loaded old rows
  before the commit tags them with the old generation, so nobody is served them again.

Every entry also expires after a TTL (``SIGNALFACTORY_CACHE_TTL_SECONDS``), which bounds
staleness where a bump cannot reach: a write made by another process while the cache is in
memory (one process is the embedded default; run several and set a Redis URL), a read
replica that lags behind the primary, or a database restored under a running server.

A cache that fails (Redis down) never fails a request: reads go to the database and the
failure is counted and reported by /readyz as degraded.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from signalfactory.observability.logging import get_logger
from signalfactory.observability.recording import metrics

log = get_logger("signalfactory.cache")

# Every namespace the API caches; a write that may touch any of them (a restore, a retention
# prune) invalidates them all.
CACHED_NAMESPACES = ("instruments", "strategies", "scans", "signals")


DEFAULT_PREFIX = "sf:cache:"
# After a backend error, how long reads skip the cache before trying it again.
ERROR_BACKOFF_S = 5.0


def _count(namespace: str, outcome: str) -> None:
    if (m := metrics()) is not None:
        m.CACHE_REQUESTS.labels(namespace, outcome).inc()


class CacheBackend(Protocol):
    """What a cache store offers; both backends implement it."""

    def get_many(self, keys: Sequence[str]) -> list[str | None]: ...

    def set(self, key: str, value: str, ttl: float) -> None: ...

    def delete(self, *keys: str) -> int: ...

    def delete_pattern(self, pattern: str) -> int: ...

    def incr(self, key: str) -> int: ...

    def ping(self) -> None: ...


class MemoryCache:
    """A bounded, thread-safe TTL map with least-recently-used eviction (one process)."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[str, tuple[float | None, str]] = OrderedDict()
        self._lock = threading.Lock()

    def _live(self, key: str, now: float) -> str | None:
        item = self._items.get(key)
        if item is None:
            return None
        expires, value = item
        if expires is not None and expires <= now:
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return value

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        now = time.monotonic()
        with self._lock:
            return [self._live(k, now) for k in keys]

    def set(self, key: str, value: str, ttl: float) -> None:
        with self._lock:
            self._items[key] = (time.monotonic() + ttl, value)
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def delete(self, *keys: str) -> int:
        with self._lock:
            return sum(self._items.pop(k, None) is not None for k in keys)

    def delete_pattern(self, pattern: str) -> int:
        with self._lock:
            doomed = [k for k in self._items if fnmatch.fnmatchcase(k, pattern)]
            for key in doomed:
                del self._items[key]
            return len(doomed)

    def incr(self, key: str) -> int:
        with self._lock:
            current = self._live(key, time.monotonic())
            value = int(current or 0) + 1
            # Counters never expire: an expired generation would go back to 0 and make
            # entries stored under generation 0 current again.
            self._items[key] = (None, str(value))
            self._items.move_to_end(key)
            return value

    def ping(self) -> None:
        return None


class RedisCache:
    """The same interface on Redis, so every process shares entries and generations."""

    def __init__(self, url: str, *, timeout: float = 0.5) -> None:
        import redis

        self.url = url
        # Short timeouts: a cache that hangs is worse than no cache.
        self.client = redis.Redis.from_url(url, socket_timeout=timeout,
                                           socket_connect_timeout=timeout,
                                           decode_responses=True)

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        return list(self.client.mget(list(keys)))  # type: ignore[arg-type]

    def set(self, key: str, value: str, ttl: float) -> None:
        self.client.set(key, value, px=max(1, int(ttl * 1000)))

    def delete(self, *keys: str) -> int:
        return int(self.client.delete(*keys)) if keys else 0

    def delete_pattern(self, pattern: str) -> int:
        removed = 0
        batch: list[str] = []
        for key in self.client.scan_iter(match=pattern, count=500):
            batch.append(key)
            if len(batch) >= 500:
                removed += self.delete(*batch)
                batch = []
        return removed + self.delete(*batch)

    def incr(self, key: str) -> int:
        return int(self.client.incr(key))

    def ping(self) -> None:
        self.client.ping()


def _key_hash(parts: Sequence[Any]) -> str:
    # Parts carry user input (tags, names); a digest keeps keys short and free of glob
    # characters, so delete_pattern on a namespace or tenant matches only what it should.
    raw = json.dumps(list(parts), sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


class HotCache:
    """Namespaced, generation-checked JSON entries over a backend."""

    def __init__(self, backend: CacheBackend, *, ttl: float = 10.0,
                 prefix: str = DEFAULT_PREFIX) -> None:
        self.backend = backend
        self.ttl = ttl
        self.prefix = prefix
        self._skip_until = 0.0
        self._last_error: str | None = None
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.ttl > 0

    def generation_key(self, namespace: str) -> str:
        return f"{self.prefix}gen:{namespace}"

    def entry_key(self, namespace: str, parts: Sequence[Any], tenant_id: int | None) -> str:
        scope = "all" if tenant_id is None else f"t{tenant_id}"
        return f"{self.prefix}{namespace}:{scope}:{_key_hash(parts)}"

    def get_or_load(self, namespace: str, parts: Sequence[Any], load: Callable[[], str], *,
                    tenant_id: int | None = None) -> str:
        """The cached text for ``parts`` in ``namespace``, or ``load()`` stored for next time.

        ``tenant_id`` puts the entry in that tenant's key space: pass it whenever the value
        depends on who asks. ``load`` raising (a 404, say) stores nothing.
        """
        if not self.enabled or time.monotonic() < self._skip_until:
            return load()
        key = self.entry_key(namespace, parts, tenant_id)
        try:
            raw_gen, raw_entry = self.backend.get_many([self.generation_key(namespace), key])
        except Exception as exc:  # any backend failure: serve from the database
            self._failed(namespace, exc)
            return load()
        generation = raw_gen or "0"
        if raw_entry is not None:
            stored_gen, _, value = raw_entry.partition("|")
            if stored_gen == generation:
                _count(namespace, "hit")
                return value
        _count(namespace, "miss")
        value = load()
        try:
            # Up to 20 % shorter, at random: entries filled together (a warm-up, a burst of
            # distinct pages) then expire over a spread instead of all in one instant, which
            # would send every one of their readers to the database at once. Never longer
            # than the TTL, so the staleness bound holds.
            jitter = 0.2 * random.random()  # noqa: S311 - spreading expiry, not a secret
            self.backend.set(key, f"{generation}|{value}", self.ttl * (1 - jitter))
        except Exception as exc:
            self._failed(namespace, exc)
        return value

    def invalidate(self, *namespaces: str) -> None:
        """Make every entry of these namespaces stale (call after the write commits)."""
        for namespace in namespaces:
            try:
                self.backend.incr(self.generation_key(namespace))
            except Exception as exc:
                # The bump is lost: other processes may serve this namespace for up to one
                # TTL. Skip the cache here so this process at least reads fresh rows.
                self._failed(namespace, exc)

    def delete_pattern(self, pattern: str) -> int:
        """Drop entries by glob over the part after the prefix, e.g. ``strategies:t5:*``."""
        return self.backend.delete_pattern(self.prefix + pattern)

    def clear(self) -> int:
        """Drop every entry and generation of this cache (after a restore, say)."""
        return self.backend.delete_pattern(self.prefix + "*")

    def health(self) -> str:
        try:
            self.backend.ping()
        except Exception as exc:
            return (f"degraded: cache unreachable ({type(exc).__name__}); hot reads go to "
                    "the database")
        return "ok"

    def _failed(self, namespace: str, exc: Exception) -> None:
        _count(namespace, "error")
        with self._lock:
            self._skip_until = time.monotonic() + ERROR_BACKOFF_S
            message = f"{type(exc).__name__}: {exc}"
            first = self._last_error != message
            self._last_error = message
        if first:
            log.warning("cache unavailable; reading from the database", error=message)


def build_cache(redis_url: str | None, *, ttl: float, prefix: str = DEFAULT_PREFIX) -> HotCache:
    backend: CacheBackend = RedisCache(redis_url) if redis_url else MemoryCache()
    return HotCache(backend, ttl=ttl, prefix=prefix)
