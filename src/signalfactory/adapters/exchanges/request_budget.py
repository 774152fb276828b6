"""A request budget shared by every process that trades on one exchange account.

ccxt's own limiter spaces one client's requests; it knows nothing of the other workers using
the same API key. This budget counts request *weight* (Binance charges e.g. 20 for
``/account``, 1 for a new order) per (exchange, account) in the ``limits`` library's sliding
window counter, on Redis when ``redis_url`` is configured so all processes share it, in memory
otherwise. A request waits for room up to ``max_wait`` seconds, then fails as temporarily
unavailable: callers back off instead of storming the exchange.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from limits import RateLimitItem, parse
from limits.storage import Storage, storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter

from signalfactory.domain.trading.exchange import ExchangeUnavailableError
from signalfactory.observability.logging import get_logger
from signalfactory.settings import Settings

log = get_logger("signalfactory.adapters.exchanges.budget")

#: Binance spot's limits per account: request weight 6000 a minute, 100 orders per 10 s
BINANCE_WEIGHT_LIMIT = "6000/minute"
BINANCE_ORDER_LIMIT = "100/10 seconds"


class RequestBudget:
    """Weighted request budget per (exchange, account); thread- and process-safe on Redis."""

    def __init__(self, storage_uri: str = "memory://", *,
                 weight_limit: str = BINANCE_WEIGHT_LIMIT,
                 order_limit: str | None = BINANCE_ORDER_LIMIT,
                 max_wait: float = 5.0, namespace: str = "sf",
                 sleep: Callable[[float], None] = time.sleep) -> None:
        options: dict[str, str] = {}
        if storage_uri.startswith(("redis://", "rediss://", "redis+")):
            options["key_prefix"] = f"{namespace}-exchange-budget"
        storage = storage_from_string(storage_uri, **options)
        if not isinstance(storage, Storage):
            raise ValueError(f"budget storage {storage_uri!r} is async; use a sync URI")
        self.storage_uri = storage_uri
        self.storage: Storage = storage
        self.limiter = SlidingWindowCounterRateLimiter(storage)
        self.weight_item: RateLimitItem = parse(weight_limit)
        self.order_item: RateLimitItem | None = parse(order_limit) if order_limit else None
        self.max_wait = max_wait
        self._sleep = sleep
        self._warned_at = 0.0
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, *, weight_limit: str = BINANCE_WEIGHT_LIMIT,
                      order_limit: str | None = BINANCE_ORDER_LIMIT,
                      max_wait: float = 5.0) -> RequestBudget:
        """Redis (the platform's ``redis_url``) when configured, memory otherwise."""
        return cls(settings.redis_url or "memory://", weight_limit=weight_limit,
                   order_limit=order_limit, max_wait=max_wait)

    def acquire(self, exchange: str, account: str, weight: int, *, order: bool = False) -> float:
        """Take ``weight`` (and one order when ``order``) from the budget, waiting for room.

        Returns the seconds waited; raises ExchangeUnavailableError after ``max_wait``.
        """
        waited = 0.0
        while True:
            pause = self._try(exchange, account, weight, order)
            if pause is None:
                return waited
            if waited + pause > self.max_wait:
                raise ExchangeUnavailableError(
                    f"the request budget of {exchange} account {account} is spent "
                    f"(weight {self.weight_item}, orders {self.order_item}); retry later")
            self._sleep(pause)
            waited += pause

    def _try(self, exchange: str, account: str, weight: int, order: bool) -> float | None:
        """None when the weight was taken, else how long to pause before trying again."""
        try:
            if order and self.order_item is not None and \
                    not self.limiter.test(self.order_item, exchange, account, "orders"):
                return self._pause(self.order_item, exchange, account, "orders")
            if not self.limiter.hit(self.weight_item, exchange, account, "weight",
                                    cost=weight):
                return self._pause(self.weight_item, exchange, account, "weight")
            if order and self.order_item is not None:
                self.limiter.hit(self.order_item, exchange, account, "orders")
        except Exception as exc:  # storage down: ccxt's own limiter still spaces requests
            self._warn(exc)
        return None

    def _pause(self, item: RateLimitItem, *identity: str) -> float:
        reset_time, _ = self.limiter.get_window_stats(item, *identity)
        # the sliding counter frees weight gradually: poll, never sleep a whole window
        return min(max(reset_time - time.time(), 0.01), 0.25)

    def remaining(self, exchange: str, account: str) -> int:
        return int(self.limiter.get_window_stats(self.weight_item, exchange, account,
                                                 "weight").remaining)

    def _warn(self, exc: Exception) -> None:
        with self._lock:
            if time.monotonic() - self._warned_at < 60:
                return
            self._warned_at = time.monotonic()
        log.warning("exchange request budget storage unavailable; only ccxt's limiter applies",
                    error=f"{type(exc).__name__}: {exc}")
