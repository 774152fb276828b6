"""Pacing: wait until a destination's rate limit allows the next message, never fail.

Moving windows of the ``limits`` library in memory, one per key: an endpoint's own
``max_per_second``, and for Telegram bots the platform's published limits (30 messages a
second per bot overall, one a second per chat). Every key of a message must allow it before
any is counted, under one lock, so concurrent senders never overshoot. Rates are rounded
down to whole messages per whole seconds (never faster than declared), and a small margin is
added to each wait because the receiver measures arrival times, not our send decisions.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from signalfactory.domain.delivery import SendResult

if TYPE_CHECKING:
    # ``limits`` is imported when the first message is paced: every platform builds the
    # channels, most processes (each command-line one) never send
    from limits import RateLimitItem
    from limits.strategies import MovingWindowRateLimiter

TELEGRAM_PER_BOT = 30.0
TELEGRAM_PER_CHAT = 1.0
#: slack between a window reopening and the next send (network jitter at the receiver)
WAIT_MARGIN_S = 0.05
#: headroom under a many-per-second limit, for the same jitter (30/s is paced at 28/s)
BURST_HEADROOM = 0.95


@dataclass(frozen=True)
class PaceKey:
    key: str
    per_second: float


def rate_item(per_second: float) -> RateLimitItem:
    """The window for a rate: one message per ceil(1/r) s below 1/s, else floor(r) a second
    (with headroom above a few a second)."""
    from limits import RateLimitItemPerSecond

    if not per_second > 0 or math.isinf(per_second):
        raise ValueError(f"a rate must be a positive number of messages per second, not "
                         f"{per_second!r}")
    if per_second < 1:
        return RateLimitItemPerSecond(1, math.ceil(1 / per_second))
    amount = per_second * BURST_HEADROOM if per_second >= 10 else per_second
    return RateLimitItemPerSecond(max(1, math.floor(amount)), 1)


def _digest(text: str) -> str:
    # Keys live in memory only, but a target carries credentials: never keep them clear.
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def target_keys(target: str, max_per_second: float | None) -> list[PaceKey]:
    """Keys of a message to ``target``: the endpoint's own limit, plus Telegram's."""
    keys: list[PaceKey] = []
    if max_per_second is not None:
        keys.append(PaceKey(f"target:{_digest(target)}", max_per_second))
    keys.extend(telegram_keys(target))
    return keys


def telegram_keys(target: str) -> list[PaceKey]:
    """``tgram://<bot token>/<chat>[/<chat>...]``: one key per bot, one per chat."""
    parts = urlsplit(target)
    if parts.scheme.lower() != "tgram":
        return []
    bot = _digest(parts.netloc)
    chats = [chat for chat in parts.path.split("/") if chat] or ["(default)"]
    return [PaceKey(f"tgram-bot:{bot}", TELEGRAM_PER_BOT),
            *(PaceKey(f"tgram-chat:{bot}:{_digest(chat)}", TELEGRAM_PER_CHAT) for chat in chats)]


class Pacer:
    """Thread-safe: channels share one per process (bootstrap builds it)."""

    def __init__(self, sleep: Callable[[float], None] = time.sleep) -> None:
        self._limiter: MovingWindowRateLimiter | None = None
        self._items: dict[float, RateLimitItem] = {}
        self._lock = threading.Lock()
        self._sleep = sleep

    def _start(self) -> MovingWindowRateLimiter:
        from limits.storage import MemoryStorage
        from limits.strategies import MovingWindowRateLimiter

        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        return self._limiter

    def _item(self, per_second: float) -> RateLimitItem:
        item = self._items.get(per_second)
        if item is None:
            item = self._items[per_second] = rate_item(per_second)
        return item

    def wait(self, keys: Sequence[PaceKey], max_wait_s: float = math.inf) -> float | None:
        """Block until every key allows one more message and count it: the seconds waited.
        None (nothing counted) when the next slot is more than ``max_wait_s`` away: a
        worker holds a lease, it must not sleep past it (the caller reports a retry)."""
        if not keys:
            return 0.0
        started = time.monotonic()
        while True:
            with self._lock:
                limiter = self._limiter or self._start()
                pairs = [(self._item(k.per_second), k.key) for k in keys]
                blocked = [(item, key) for item, key in pairs
                           if not limiter.test(item, key)]
                if not blocked:
                    for item, key in pairs:
                        limiter.hit(item, key)
                    return time.monotonic() - started
                reopens = max(limiter.get_window_stats(item, key).reset_time
                              for item, key in blocked)
            delay = max(reopens - time.time(), 0.0) + WAIT_MARGIN_S
            if time.monotonic() - started + delay > max_wait_s:
                return None
            self._sleep(min(delay, 5.0))


def paced_out(max_wait_s: float) -> SendResult:
    """The result of a message the destination's rate did not allow in time."""
    return SendResult(ok=False, error=f"paced: the destination's rate limit allows no "
                                      f"message within {max_wait_s:g} s",
                      retry_after_s=max_wait_s)
