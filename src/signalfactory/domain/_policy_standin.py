"""Stand-in for ``domain/delivery_policy.py`` (branch dlv/policy) until it is merged: the same
function signatures, the simplest behaviour. Deleted at the merge."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from signalfactory.domain.delivery import DeliveryControls, SendResult

RETRY_SCHEDULE_S: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
Outcome = Literal["delivered", "retry", "dead", "disable"]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def next_retry_delay(failed_attempts: int, rng: random.Random,
                     retry_after_s: float | None = None) -> float | None:
    if failed_attempts > len(RETRY_SCHEDULE_S):
        return None
    delay = RETRY_SCHEDULE_S[failed_attempts - 1] * (1.0 + rng.uniform(-0.1, 0.1))
    return max(delay, min(retry_after_s, 86_400.0)) if retry_after_s is not None else delay


def classify(result: SendResult) -> Outcome:
    if result.ok:
        return "delivered"
    code = result.status_code
    if code is None:
        return "retry"
    if code == 410:
        return "disable"
    if 400 <= code < 500 and code not in (408, 409, 425, 429):
        return "dead"
    return "retry"


@dataclass
class _Circuit:
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False


class CircuitBreaker:
    def __init__(self, failure_threshold: int = 5, reset_after_s: float = 30.0) -> None:
        self.failure_threshold = failure_threshold
        self.reset_after_s = reset_after_s
        self._circuits: dict[str, _Circuit] = {}

    def allow(self, key: str, now_s: float) -> bool:
        c = self._circuits.setdefault(key, _Circuit())
        if c.opened_at is None:
            return True
        if now_s - c.opened_at >= self.reset_after_s and not c.probing:
            c.probing = True
            return True
        return False

    def record(self, key: str, ok: bool, now_s: float) -> None:
        c = self._circuits.setdefault(key, _Circuit())
        if ok:
            self._circuits[key] = _Circuit()
            return
        c.failures += 1
        if c.probing or c.failures >= self.failure_threshold:
            c.opened_at, c.probing = now_s, False


def quiet_until(controls: DeliveryControls, at: datetime) -> datetime | None:
    return None


def throttle_allows(controls: DeliveryControls, sent_in_last_hour: int) -> bool:
    return controls.max_per_hour is None or sent_in_last_hour < controls.max_per_hour


def digest_due_at(controls: DeliveryControls, created_at: datetime) -> datetime | None:
    if controls.digest_minutes is None:
        return None
    interval = timedelta(minutes=controls.digest_minutes)
    return _EPOCH + ((created_at - _EPOCH) // interval + 1) * interval


def summary_line(count: int, window: str) -> str:
    return f"{count} more signals in the last {window} were not sent one by one."
