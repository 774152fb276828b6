"""Delivery policy: when to retry, what an answer means, when a destination is left alone,
and what a subscriber's controls (quiet hours, throttle, digest) allow. Pure functions of
their arguments (the clock and the random source are passed in), so the dispatcher stays a
thin loop and every rule here is tested without a server.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from signalfactory.domain.delivery import DeliveryControls, SendResult
from signalfactory.domain.errors import BadInputError

# Svix's schedule: the delay before attempt n+1 after n failures. A fast first retry catches
# blips; the long tail (about 30 h in all) outlasts a receiver's deploy or a night-time outage.
RETRY_SCHEDULE_S: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
MAX_ATTEMPTS = len(RETRY_SCHEDULE_S) + 1
# +-10 %: enough to spread a burst that failed together (one receiver restart fails thousands
# of rows in the same second) so they do not come back as one thundering herd.
JITTER = 0.10
# A receiver may ask for a pause, but not to hold a message for more than a day.
MAX_RETRY_AFTER_S = 86_400.0

Outcome = Literal["delivered", "retry", "dead", "disable"]
# Client errors that describe a passing state (timeout, conflict, too early, rate limited).
_RETRYABLE_4XX = frozenset({408, 409, 425, 429})
_GONE = 410

MAX_TEMPLATE_CHARS = 20_000
MAX_DIGEST_MINUTES = 10_080  # a week
_MINUTES_PER_DAY = 1_440
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def next_retry_delay(failed_attempts: int, rng: random.Random,
                     retry_after_s: float | None = None) -> float | None:
    """Seconds until the next attempt after ``failed_attempts`` failures (1: the first attempt
    failed), jittered; the larger of that and ``Retry-After`` (capped at a day). None when the
    schedule is spent: the message goes to the dead-letter queue."""
    if failed_attempts < 1:
        raise ValueError(f"failed_attempts counts failures and starts at 1, got {failed_attempts}")
    if failed_attempts > len(RETRY_SCHEDULE_S):
        return None
    base = RETRY_SCHEDULE_S[failed_attempts - 1]
    delay = max(0.0, base * (1.0 + rng.uniform(-JITTER, JITTER)))
    if retry_after_s is not None and not math.isnan(retry_after_s):
        # Retry-After only ever lengthens the wait: retrying sooner than our schedule would
        # defeat the backoff, and a negative or absurd value must not stall the row for ever.
        delay = max(delay, min(retry_after_s, MAX_RETRY_AFTER_S))
    return delay


def classify(result: SendResult) -> Outcome:
    """What to do with a delivery after one attempt."""
    if result.ok:
        return "delivered"
    if result.permanent:
        return "dead"
    code = result.status_code
    if code is None:  # timeout, refused or reset connection, DNS: the network, not the receiver
        return "retry"
    if code == _GONE:
        # 410 is the receiver saying "this URL is gone for good" (the Standard Webhooks and
        # Svix convention for unsubscribing); retrying for days would only hammer it.
        return "disable"
    if 400 <= code < 500 and code not in _RETRYABLE_4XX:
        # The request itself is wrong (bad URL, auth, payload): the same bytes will fail again.
        return "dead"
    # 5xx, the retryable 4xx, and anything odd (a 3xx we do not follow): transient or unknown.
    return "retry"


@dataclass
class _Circuit:
    failures: int = 0
    opened_at: float | None = None
    probe_since: float | None = None


BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Per-destination breaker, one per worker process. While a destination fails, its rows
    are skipped instead of each waiting out a timeout, so a dead endpoint never delays the
    others; after ``reset_after_s`` one probe at a time finds out whether it is back."""

    def __init__(self, failure_threshold: int = 5, reset_after_s: float = 30.0) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be at least 1, got {failure_threshold}")
        if not reset_after_s > 0:
            raise ValueError(f"reset_after_s must be positive, got {reset_after_s}")
        self.failure_threshold = failure_threshold
        self.reset_after_s = reset_after_s
        # Only destinations with failures are kept: a healthy one costs no memory.
        self._circuits: dict[str, _Circuit] = {}

    def state(self, key: str, now_s: float) -> BreakerState:
        circuit = self._circuits.get(key)
        if circuit is None or circuit.opened_at is None:
            return "closed"
        return "half_open" if now_s - circuit.opened_at >= self.reset_after_s else "open"

    def allow(self, key: str, now_s: float) -> bool:
        state = self.state(key, now_s)
        if state == "closed":
            return True
        if state == "open":
            return False
        circuit = self._circuits[key]
        # A probe whose result never came back (its task was cancelled) must not block the
        # destination for ever: after another reset period a new probe may go.
        if circuit.probe_since is not None and now_s - circuit.probe_since < self.reset_after_s:
            return False
        circuit.probe_since = now_s
        return True

    def record(self, key: str, ok: bool, now_s: float) -> None:
        if ok:
            # Any success proves the destination answers again: close and forget it.
            self._circuits.pop(key, None)
            return
        circuit = self._circuits.setdefault(key, _Circuit())
        if circuit.opened_at is None:
            circuit.failures += 1
            if circuit.failures >= self.failure_threshold:
                circuit.opened_at = now_s
        elif circuit.probe_since is not None:
            # The probe failed: stay away for another full period.
            circuit.opened_at = now_s
            circuit.probe_since = None
        # A failure reported while open with no probe out is from a send that started before
        # the breaker opened; it says nothing new and must not extend the pause.


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise BadInputError(f"timezone: {name!r} is not a known time zone; use an IANA name "
                            "such as 'Europe/Berlin' or 'America/New_York'") from None


def _as_utc(value: datetime) -> datetime:
    # The project's convention (domain.timestamps): a naive datetime is UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _first_instant_at_or_after(wall: datetime, zone: ZoneInfo, after: datetime) -> datetime:
    """The first UTC instant after ``after`` at which the local clock in ``zone`` reads
    ``wall`` or later."""
    candidates: list[datetime] = []
    for fold in (0, 1):
        instant = wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)
        if instant.astimezone(zone).replace(tzinfo=None) == wall:
            candidates.append(instant)
    real = sorted(c for c in candidates if c > after)
    if real:
        # Ambiguous (clocks went back): both readings are real; the earlier one still ahead.
        return real[0]
    if candidates:
        return max(candidates)
    # ``wall`` does not exist (clocks went forward over it): the end is the jump itself, the
    # first instant the clock reads past ``wall``. fold=1 maps it before the jump, fold=0 after;
    # bisect the whole seconds between them.
    lo = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    hi = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    lo_s, hi_s = math.floor((lo - _EPOCH).total_seconds()), math.ceil((hi - _EPOCH).total_seconds())
    while hi_s - lo_s > 1:
        mid = (lo_s + hi_s) // 2
        local = (_EPOCH + timedelta(seconds=mid)).astimezone(zone).replace(tzinfo=None)
        lo_s, hi_s = (mid, hi_s) if local < wall else (lo_s, mid)
    return _EPOCH + timedelta(seconds=hi_s)


def quiet_until(controls: DeliveryControls, at: datetime) -> datetime | None:
    """When ``at`` falls in the subscription's quiet hours, the UTC instant they end; else None.

    Quiet hours are wall-clock minutes [quiet_start, quiet_end) in the subscriber's zone (a
    window may wrap midnight), because "no alerts from 22:00 to 07:00" means the subscriber's
    clock on every day of the year, DST or not. On the night clocks go back, the repeated
    hour reads as quiet again if the window covers it: that is what the clock says."""
    start, end = controls.quiet_start, controls.quiet_end
    if start is None or end is None or start == end:
        return None
    zone = _zone(controls.timezone)
    at_utc = _as_utc(at)
    local = at_utc.astimezone(zone)
    minute = local.hour * 60 + local.minute
    if start < end:
        quiet, end_day = start <= minute < end, local.date()
    else:  # wraps midnight: quiet from start to midnight, then from midnight to end
        quiet = minute >= start or minute < end
        end_day = local.date() + timedelta(days=1) if minute >= start else local.date()
    if not quiet:
        return None
    wall = datetime.combine(end_day, time(end // 60, end % 60))
    ends = _first_instant_at_or_after(wall, zone, at_utc)
    # Only when the end fell in a DST gap can the clock land back inside the window (one
    # covering nearly the whole day); then quiet lasts until the next end.
    return quiet_until(controls, ends) or ends


def throttle_allows(controls: DeliveryControls, sent_in_last_hour: int) -> bool:
    """Whether one more message fits the subscription's hourly limit."""
    return controls.max_per_hour is None or sent_in_last_hour < controls.max_per_hour


def digest_due_at(controls: DeliveryControls, created_at: datetime) -> datetime | None:
    """In digest mode, the end of the interval ``created_at`` falls in: intervals of
    ``digest_minutes`` aligned to the Unix epoch in UTC, so every worker and every restart
    agrees on the boundaries without storing them. None when not in digest mode."""
    if controls.digest_minutes is None:
        return None
    interval = timedelta(minutes=controls.digest_minutes)
    # timedelta // timedelta is exact integer arithmetic: no float drift at the boundaries.
    index = (_as_utc(created_at) - _EPOCH) // interval
    return _EPOCH + (index + 1) * interval


def _whole_number_problem(field: str, value: object, low: int, high: int | None) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return f"{field}: must be a whole number, got {value!r}"
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        return f"{field}: must be {bound}, got {value}"
    return None


def validate_controls(controls: DeliveryControls) -> DeliveryControls:
    """``controls`` unchanged when valid; else BadInputError naming every field to fix."""
    problems: list[str] = []
    try:
        _zone(controls.timezone)
    except BadInputError as exc:
        problems.append(exc.detail)
    quiet = {"quiet_start": controls.quiet_start, "quiet_end": controls.quiet_end}
    if (controls.quiet_start is None) != (controls.quiet_end is None):
        missing = next(name for name, value in quiet.items() if value is None)
        problems.append(f"{missing}: set both quiet_start and quiet_end, or neither")
    elif controls.quiet_start is not None:
        window = [_whole_number_problem(name, value, 0, _MINUTES_PER_DAY - 1)
                  for name, value in quiet.items()]
        problems += [p for p in window if p]
        if not any(window) and controls.quiet_start == controls.quiet_end:
            problems.append("quiet_end: must differ from quiet_start (an empty window); "
                            "omit both for no quiet hours")
    if controls.max_per_hour is not None:
        problem = _whole_number_problem("max_per_hour", controls.max_per_hour, 1, None)
        problems += [f"{problem}; omit it for no limit"] if problem else []
    if controls.digest_minutes is not None:
        problem = _whole_number_problem("digest_minutes", controls.digest_minutes, 1,
                                        MAX_DIGEST_MINUTES)
        problems += [problem] if problem else []
    if controls.template is not None and len(controls.template) > MAX_TEMPLATE_CHARS:
        problems.append(f"template: {len(controls.template)} characters, at most "
                        f"{MAX_TEMPLATE_CHARS}; shorten it")
    if problems:
        raise BadInputError("; ".join(problems), source="delivery controls")
    return controls


def summary_line(count: int, window: str) -> str:
    """The one line a throttled subscriber gets for the messages held back, e.g.
    ``summary_line(12, "hour")``: "12 more signals in the last hour ..."."""
    if count < 1:
        raise ValueError(f"a summary covers at least one held-back signal, got {count}")
    noun, verb = ("signal", "was") if count == 1 else ("signals", "were")
    # Callers may say "hour", "last hour" or "the last hour"; the sentence reads the same.
    window = window.strip().removeprefix("the ").removeprefix("last ").strip()
    return (f"{count} more {noun} in the last {window} {verb} not sent one by one: "
            "this subscription's message limit was reached.")
