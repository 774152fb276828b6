"""Delivery policy: retry schedule, outcome classes, circuit breaker, subscriber controls."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalfactory.domain.delivery import DeliveryControls, SendResult
from signalfactory.domain.delivery_policy import (
    MAX_ATTEMPTS,
    MAX_RETRY_AFTER_S,
    RETRY_SCHEDULE_S,
    CircuitBreaker,
    classify,
    digest_due_at,
    next_retry_delay,
    quiet_until,
    summary_line,
    throttle_allows,
    validate_controls,
)
from signalfactory.domain.errors import BadInputError


class _FixedRandom(random.Random):
    """A random source whose ``uniform`` always returns one end of the range (or its middle)."""

    def __init__(self, where: str) -> None:
        super().__init__(0)
        self.where = where

    def uniform(self, a: float, b: float) -> float:
        return {"low": a, "high": b, "mid": (a + b) / 2}[self.where]


# --- retry schedule ------------------------------------------------------------------------

def test_the_schedule_is_svix_and_gives_eight_attempts_in_all() -> None:
    assert RETRY_SCHEDULE_S == (5, 300, 1800, 7200, 18000, 36000, 36000)
    assert MAX_ATTEMPTS == 8
    rng = _FixedRandom("mid")
    delays = [next_retry_delay(n, rng) for n in range(1, 9)]
    assert delays == [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0, None]


def test_a_delivery_that_always_fails_is_attempted_exactly_eight_times() -> None:
    rng = random.Random(7)
    attempts, waited = 0, 0.0
    while True:
        attempts += 1  # this attempt fails
        delay = next_retry_delay(attempts, rng)
        if delay is None:
            break
        waited += delay
    assert attempts == 8
    # about 27.5 hours of trying before the dead-letter queue, within the jitter
    assert 0.9 * sum(RETRY_SCHEDULE_S) <= waited <= 1.1 * sum(RETRY_SCHEDULE_S)


@pytest.mark.parametrize("failed", [8, 9, 100])
def test_an_exhausted_schedule_means_dead_letter_even_with_retry_after(failed: int) -> None:
    assert next_retry_delay(failed, random.Random(1)) is None
    assert next_retry_delay(failed, random.Random(1), retry_after_s=10.0) is None


@pytest.mark.parametrize("failed", [0, -1])
def test_attempt_counts_start_at_one(failed: int) -> None:
    with pytest.raises(ValueError, match="starts at 1"):
        next_retry_delay(failed, random.Random(1))


def test_jitter_reaches_but_never_passes_ten_percent() -> None:
    assert next_retry_delay(1, _FixedRandom("low")) == pytest.approx(4.5)
    assert next_retry_delay(1, _FixedRandom("high")) == pytest.approx(5.5)
    assert next_retry_delay(7, _FixedRandom("high")) == pytest.approx(39600.0)


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32), failed=st.integers(1, 7))
def test_jittered_delay_stays_within_bounds(seed: int, failed: int) -> None:
    base = RETRY_SCHEDULE_S[failed - 1]
    delay = next_retry_delay(failed, random.Random(seed))
    assert delay is not None
    assert 0 <= base * 0.9 <= delay <= base * 1.1


def test_jitter_spreads_a_burst_and_a_seed_reproduces_it() -> None:
    rng = random.Random(42)
    delays = [next_retry_delay(2, rng) for _ in range(500)]
    values = [d for d in delays if d is not None]
    assert len(set(values)) == 500  # no two rows of a burst come back together
    assert min(values) < 285 and max(values) > 315  # uses most of the +-30 s band
    again = random.Random(42)
    assert [next_retry_delay(2, again) for _ in range(500)] == delays


def test_retry_after_longer_than_the_schedule_wins() -> None:
    assert next_retry_delay(1, random.Random(3), retry_after_s=120.0) == 120.0


def test_retry_after_shorter_than_the_schedule_does_not_shorten_it() -> None:
    delay = next_retry_delay(3, random.Random(3), retry_after_s=1.0)
    assert delay is not None and 1620 <= delay <= 1980


def test_retry_after_is_capped_at_a_day() -> None:
    assert MAX_RETRY_AFTER_S == 86_400
    assert next_retry_delay(1, random.Random(3), retry_after_s=10**9) == 86_400
    assert next_retry_delay(1, random.Random(3), retry_after_s=math.inf) == 86_400


@pytest.mark.parametrize("bogus", [-50.0, math.nan])
def test_a_negative_or_nan_retry_after_is_ignored(bogus: float) -> None:
    delay = next_retry_delay(2, random.Random(3), retry_after_s=bogus)
    assert delay is not None and 270 <= delay <= 330


# --- outcome classes -----------------------------------------------------------------------

def _failed(code: int | None) -> SendResult:
    return SendResult(ok=False, status_code=code, error="boom")


def test_success_is_delivered() -> None:
    assert classify(SendResult(ok=True, status_code=200)) == "delivered"
    assert classify(SendResult(ok=True, status_code=204)) == "delivered"
    assert classify(SendResult(ok=True)) == "delivered"  # Apprise: no HTTP status


def test_gone_disables_the_endpoint() -> None:
    assert classify(_failed(410)) == "disable"


@pytest.mark.parametrize("code", [400, 401, 403, 404, 405, 413, 415, 422, 451, 499])
def test_client_errors_are_not_retried(code: int) -> None:
    assert classify(_failed(code)) == "dead"


@pytest.mark.parametrize("code", [408, 409, 425, 429])
def test_transient_client_errors_are_retried(code: int) -> None:
    assert classify(_failed(code)) == "retry"


@pytest.mark.parametrize("code", [500, 501, 502, 503, 504, 599])
def test_server_errors_are_retried(code: int) -> None:
    assert classify(_failed(code)) == "retry"


def test_no_answer_at_all_is_retried() -> None:
    assert classify(SendResult(ok=False, error="timed out after 10 s")) == "retry"
    assert classify(SendResult(ok=False, error="connection reset")) == "retry"
    failures = ("tgram://...: 502",)
    assert classify(SendResult(ok=False, error="apprise", failures=failures)) == "retry"


@pytest.mark.parametrize("code", [200, 302, 307])
def test_a_failure_with_an_unexpected_code_is_retried(code: int) -> None:
    assert classify(_failed(code)) == "retry"


@given(st.integers(400, 499))
def test_every_4xx_is_exactly_one_of_the_documented_classes(code: int) -> None:
    expected = ("disable" if code == 410 else "retry" if code in {408, 409, 425, 429}
                else "dead")
    assert classify(_failed(code)) == expected


# --- circuit breaker -----------------------------------------------------------------------

def _open(breaker: CircuitBreaker, key: str, at: float) -> None:
    for _ in range(breaker.failure_threshold):
        breaker.record(key, ok=False, now_s=at)


def test_consecutive_failures_open_the_breaker_at_the_threshold() -> None:
    breaker = CircuitBreaker(failure_threshold=5, reset_after_s=30.0)
    for i in range(4):
        breaker.record("ep-1", ok=False, now_s=100.0 + i)
        assert breaker.state("ep-1", 100.0 + i) == "closed"
        assert breaker.allow("ep-1", 100.0 + i)
    breaker.record("ep-1", ok=False, now_s=104.0)
    assert breaker.state("ep-1", 104.0) == "open"
    assert not breaker.allow("ep-1", 104.0)
    assert not breaker.allow("ep-1", 133.9)
    assert breaker.state("ep-1", 133.9) == "open"


def test_a_success_resets_the_consecutive_count() -> None:
    breaker = CircuitBreaker(failure_threshold=3)
    for t in (1.0, 2.0):
        breaker.record("ep", ok=False, now_s=t)
    breaker.record("ep", ok=True, now_s=3.0)
    for t in (4.0, 5.0):
        breaker.record("ep", ok=False, now_s=t)
    assert breaker.state("ep", 5.0) == "closed"
    breaker.record("ep", ok=False, now_s=6.0)
    assert breaker.state("ep", 6.0) == "open"


def test_half_open_lets_exactly_one_probe_through_and_success_closes() -> None:
    breaker = CircuitBreaker(failure_threshold=2, reset_after_s=30.0)
    _open(breaker, "ep", 10.0)
    assert breaker.state("ep", 39.999) == "open"
    assert breaker.state("ep", 40.0) == "half_open"
    assert breaker.allow("ep", 40.0)  # the probe
    assert not breaker.allow("ep", 40.0)  # a second send while the probe is out
    assert not breaker.allow("ep", 45.0)
    breaker.record("ep", ok=True, now_s=41.0)
    assert breaker.state("ep", 41.0) == "closed"
    assert all(breaker.allow("ep", 41.0) for _ in range(10))


def test_a_failed_probe_reopens_for_a_full_period() -> None:
    breaker = CircuitBreaker(failure_threshold=2, reset_after_s=30.0)
    _open(breaker, "ep", 0.0)
    assert breaker.allow("ep", 30.0)
    breaker.record("ep", ok=False, now_s=32.0)
    assert breaker.state("ep", 32.0) == "open"
    assert not breaker.allow("ep", 61.9)  # counted from the failed probe, not the first open
    assert breaker.state("ep", 62.0) == "half_open"
    assert breaker.allow("ep", 62.0)
    assert not breaker.allow("ep", 62.5)


def test_a_probe_that_never_reports_does_not_block_the_destination_for_ever() -> None:
    breaker = CircuitBreaker(failure_threshold=1, reset_after_s=30.0)
    breaker.record("ep", ok=False, now_s=0.0)
    assert breaker.allow("ep", 30.0)  # this probe's task is lost
    assert not breaker.allow("ep", 59.0)
    assert breaker.allow("ep", 60.0)  # a new probe after another period
    assert not breaker.allow("ep", 60.0)


def test_a_late_failure_from_before_the_open_does_not_extend_it() -> None:
    breaker = CircuitBreaker(failure_threshold=2, reset_after_s=30.0)
    _open(breaker, "ep", 0.0)
    breaker.record("ep", ok=False, now_s=20.0)  # a send started before the breaker opened
    assert breaker.state("ep", 30.0) == "half_open"


def test_destinations_are_independent() -> None:
    breaker = CircuitBreaker(failure_threshold=2, reset_after_s=30.0)
    _open(breaker, "dead-endpoint", 0.0)
    assert not breaker.allow("dead-endpoint", 1.0)
    assert breaker.allow("healthy-endpoint", 1.0)
    assert breaker.state("healthy-endpoint", 1.0) == "closed"
    breaker.record("healthy-endpoint", ok=False, now_s=2.0)
    assert breaker.state("healthy-endpoint", 2.0) == "closed"


@pytest.mark.parametrize(("threshold", "reset"), [(0, 30.0), (5, 0.0), (5, -1.0), (5, math.nan)])
def test_breaker_settings_are_checked(threshold: int, reset: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        CircuitBreaker(failure_threshold=threshold, reset_after_s=reset)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["allow", "ok", "fail"]), st.floats(0, 20)),
                max_size=60))
def test_an_open_breaker_never_lets_anything_through(events: list[tuple[str, float]]) -> None:
    breaker = CircuitBreaker(failure_threshold=3, reset_after_s=10.0)
    now, last_probe = 0.0, None
    for kind, step in events:
        now += step
        before = breaker.state("ep", now)
        if kind == "allow":
            allowed = breaker.allow("ep", now)
            if before != "half_open":
                assert allowed == (before == "closed")
            elif allowed:
                # one probe at a time: another only after a result or a whole reset period
                assert last_probe is None or now - last_probe >= 10.0
                last_probe = now
        else:
            breaker.record("ep", ok=kind == "ok", now_s=now)
            last_probe = None
            if kind == "ok":
                assert breaker.state("ep", now) == "closed"


# --- quiet hours ---------------------------------------------------------------------------

def _quiet(zone: str, start: tuple[int, int], end: tuple[int, int]) -> DeliveryControls:
    return DeliveryControls(timezone=zone, quiet_start=start[0] * 60 + start[1],
                            quiet_end=end[0] * 60 + end[1])


def _utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0,
         second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def test_no_quiet_hours_means_never_quiet() -> None:
    assert quiet_until(DeliveryControls(), _utc(2024, 1, 1, 3, 0)) is None


def test_a_daytime_window_is_start_inclusive_end_exclusive() -> None:
    controls = _quiet("Europe/Berlin", (9, 0), (17, 0))  # CET is UTC+1 in January
    assert quiet_until(controls, _utc(2024, 1, 15, 7, 59)) is None
    assert quiet_until(controls, _utc(2024, 1, 15, 8, 0)) == _utc(2024, 1, 15, 16, 0)
    assert quiet_until(controls, _utc(2024, 1, 15, 15, 59, 59)) == _utc(2024, 1, 15, 16, 0)
    assert quiet_until(controls, _utc(2024, 1, 15, 16, 0)) is None


def test_a_window_across_midnight_ends_the_next_morning() -> None:
    controls = _quiet("UTC", (22, 0), (7, 0))
    assert quiet_until(controls, _utc(2024, 5, 1, 21, 59)) is None
    assert quiet_until(controls, _utc(2024, 5, 1, 22, 0)) == _utc(2024, 5, 2, 7, 0)
    assert quiet_until(controls, _utc(2024, 5, 1, 23, 30)) == _utc(2024, 5, 2, 7, 0)
    assert quiet_until(controls, _utc(2024, 5, 2, 0, 0)) == _utc(2024, 5, 2, 7, 0)
    assert quiet_until(controls, _utc(2024, 5, 2, 6, 59)) == _utc(2024, 5, 2, 7, 0)
    assert quiet_until(controls, _utc(2024, 5, 2, 7, 0)) is None


def test_the_result_is_utc_whatever_offset_the_input_has() -> None:
    controls = _quiet("UTC", (22, 0), (7, 0))
    seoul = datetime(2024, 5, 2, 8, 0, tzinfo=timezone(timedelta(hours=9)))  # 23:00 UTC
    result = quiet_until(controls, seoul)
    assert result == _utc(2024, 5, 2, 7, 0) and result.utcoffset() == timedelta(0)
    # a naive time is UTC, as everywhere in the domain
    assert quiet_until(controls, datetime(2024, 5, 1, 23, 0)) == _utc(2024, 5, 2, 7, 0)


def test_new_york_spring_forward_ends_at_local_seven_not_utc_plus_five() -> None:
    # 2024-03-10: 02:00 EST jumps to 03:00 EDT. 23:00 EST on the 9th = 04:00 UTC.
    controls = _quiet("America/New_York", (22, 0), (7, 0))
    assert quiet_until(controls, _utc(2024, 3, 10, 4, 0)) == _utc(2024, 3, 10, 11, 0)
    assert quiet_until(controls, _utc(2024, 3, 10, 10, 59)) == _utc(2024, 3, 10, 11, 0)
    assert quiet_until(controls, _utc(2024, 3, 10, 11, 0)) is None  # 07:00 EDT
    # the day before the change, 07:00 EST was 12:00 UTC
    assert quiet_until(controls, _utc(2024, 3, 9, 4, 0)) == _utc(2024, 3, 9, 12, 0)


def test_an_end_that_the_clock_skips_ends_at_the_jump() -> None:
    # Quiet until 02:30, which does not exist on 2024-03-10 in New York: the clock reads
    # 03:00 EDT at 07:00 UTC, past 02:30, so quiet hours are over then (not at 07:30 UTC).
    controls = _quiet("America/New_York", (22, 0), (2, 30))
    assert quiet_until(controls, _utc(2024, 3, 10, 6, 0)) == _utc(2024, 3, 10, 7, 0)
    assert quiet_until(controls, _utc(2024, 3, 10, 6, 59, 59)) == _utc(2024, 3, 10, 7, 0)
    assert quiet_until(controls, _utc(2024, 3, 10, 7, 0)) is None


def test_new_york_fall_back_and_the_repeated_hour() -> None:
    # 2024-11-03: 02:00 EDT goes back to 01:00 EST; 01:00-02:00 happens twice.
    controls = _quiet("America/New_York", (22, 0), (7, 0))
    assert quiet_until(controls, _utc(2024, 11, 3, 3, 0)) == _utc(2024, 11, 3, 12, 0)
    ambiguous = _quiet("America/New_York", (22, 0), (1, 30))
    assert quiet_until(ambiguous, _utc(2024, 11, 3, 5, 10)) == _utc(2024, 11, 3, 5, 30)  # EDT
    assert quiet_until(ambiguous, _utc(2024, 11, 3, 5, 40)) is None  # 01:40 EDT
    # 01:10 EST, the second time round: the clock reads inside the window again
    assert quiet_until(ambiguous, _utc(2024, 11, 3, 6, 10)) == _utc(2024, 11, 3, 6, 30)


def test_berlin_both_changes() -> None:
    controls = _quiet("Europe/Berlin", (22, 0), (7, 0))
    # 2024-03-31 02:00 CET -> 03:00 CEST: 07:00 local is 05:00 UTC (06:00 the day before)
    assert quiet_until(controls, _utc(2024, 3, 30, 22, 0)) == _utc(2024, 3, 31, 5, 0)
    assert quiet_until(controls, _utc(2024, 3, 29, 22, 0)) == _utc(2024, 3, 30, 6, 0)
    # 2024-10-27 03:00 CEST -> 02:00 CET: 07:00 local is 06:00 UTC (05:00 the day before)
    assert quiet_until(controls, _utc(2024, 10, 26, 22, 0)) == _utc(2024, 10, 27, 6, 0)
    assert quiet_until(controls, _utc(2024, 10, 25, 22, 0)) == _utc(2024, 10, 26, 5, 0)
    # 20:30 UTC on the 26th is 22:30 CEST: already quiet
    assert quiet_until(controls, _utc(2024, 10, 26, 20, 30)) == _utc(2024, 10, 27, 6, 0)


def test_a_nearly_all_day_window_whose_end_is_skipped_lasts_to_the_next_end() -> None:
    # Quiet except 02:30-02:45; on 2024-03-10 the clock skips 02:00-03:00, so there is no
    # gap that night at all: quiet until 02:30 on the 11th (06:30 UTC, EDT).
    controls = _quiet("America/New_York", (2, 45), (2, 30))
    assert quiet_until(controls, _utc(2024, 3, 10, 6, 0)) == _utc(2024, 3, 11, 6, 30)


def test_an_unknown_zone_is_bad_input() -> None:
    with pytest.raises(BadInputError, match="timezone"):
        quiet_until(_quiet("Mars/Olympus", (22, 0), (7, 0)), _utc(2024, 1, 1))


_TRANSITIONS = [  # (zone, an instant near a clock change)
    ("America/New_York", _utc(2024, 3, 10, 7, 0)),
    ("America/New_York", _utc(2024, 11, 3, 6, 0)),
    ("Europe/Berlin", _utc(2024, 3, 31, 1, 0)),
    ("Europe/Berlin", _utc(2024, 10, 27, 1, 0)),
    ("Australia/Lord_Howe", _utc(2024, 4, 6, 15, 0)),  # a 30-minute shift
    ("Asia/Kolkata", _utc(2024, 6, 1, 0, 0)),  # +05:30, no DST
]


def _is_quiet(controls: DeliveryControls, at: datetime) -> bool:
    local = at.astimezone(ZoneInfo(controls.timezone))
    minute = local.hour * 60 + local.minute
    start, end = controls.quiet_start, controls.quiet_end
    assert start is not None and end is not None
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end


@settings(max_examples=150, deadline=None)
@given(where=st.sampled_from(_TRANSITIONS), offset=st.integers(-2 * 1440, 2 * 1440),
       start=st.integers(0, 1439), end=st.integers(0, 1439))
def test_quiet_until_is_the_first_minute_the_clock_leaves_the_window(
        where: tuple[str, datetime], offset: int, start: int, end: int) -> None:
    zone, near = where
    if start == end:
        end = (end + 1) % 1440
    controls = DeliveryControls(timezone=zone, quiet_start=start, quiet_end=end)
    at = near + timedelta(minutes=offset)
    result = quiet_until(controls, at)
    if not _is_quiet(controls, at):
        assert result is None
        return
    # Walk the UTC minutes (every change in these zones is on a whole minute).
    walk = at
    while _is_quiet(controls, walk):
        walk += timedelta(minutes=1)
    assert result == walk


# --- throttle and summary ------------------------------------------------------------------

def test_no_limit_always_allows() -> None:
    assert throttle_allows(DeliveryControls(), 10**9)


def test_the_limit_allows_exactly_n_per_hour() -> None:
    controls = DeliveryControls(max_per_hour=3)
    assert [throttle_allows(controls, n) for n in range(6)] == [True] * 3 + [False] * 3
    assert throttle_allows(DeliveryControls(max_per_hour=1), 0)
    assert not throttle_allows(DeliveryControls(max_per_hour=1), 1)


def test_summary_line_counts_what_was_held_back() -> None:
    line = summary_line(12, "hour")
    assert line.startswith("12 more signals in the last hour were not sent")
    assert summary_line(12, "last hour") == line == summary_line(12, " the last hour ")
    assert summary_line(1, "hour").startswith("1 more signal in the last hour was not sent")
    assert summary_line(7, "30 minutes").startswith("7 more signals in the last 30 minutes")


def test_a_summary_of_nothing_is_a_mistake() -> None:
    with pytest.raises(ValueError, match="at least one"):
        summary_line(0, "hour")


# --- digest --------------------------------------------------------------------------------

def test_not_in_digest_mode_means_no_due_time() -> None:
    assert digest_due_at(DeliveryControls(), _utc(2024, 1, 1)) is None


def test_hourly_digest_boundaries() -> None:
    controls = DeliveryControls(digest_minutes=60)
    assert digest_due_at(controls, _utc(2024, 5, 1, 10, 15)) == _utc(2024, 5, 1, 11, 0)
    assert digest_due_at(controls, _utc(2024, 5, 1, 10, 0)) == _utc(2024, 5, 1, 11, 0)
    last = datetime(2024, 5, 1, 10, 59, 59, 999_999, tzinfo=UTC)
    assert digest_due_at(controls, last) == _utc(2024, 5, 1, 11, 0)
    assert digest_due_at(controls, _utc(2024, 5, 1, 23, 30)) == _utc(2024, 5, 2, 0, 0)


def test_daily_digest_is_at_utc_midnight_whatever_the_input_offset() -> None:
    controls = DeliveryControls(digest_minutes=1440)
    seoul = datetime(2024, 5, 2, 8, 0, tzinfo=timezone(timedelta(hours=9)))  # 23:00 UTC 1st
    assert digest_due_at(controls, seoul) == _utc(2024, 5, 2, 0, 0)
    assert digest_due_at(controls, datetime(2024, 5, 1, 23, 0)) == _utc(2024, 5, 2, 0, 0)


def test_odd_intervals_are_aligned_to_the_epoch() -> None:
    controls = DeliveryControls(digest_minutes=7)
    assert digest_due_at(controls, _utc(1970, 1, 1, 0, 0)) == _utc(1970, 1, 1, 0, 7)
    assert digest_due_at(controls, _utc(1970, 1, 1, 0, 13)) == _utc(1970, 1, 1, 0, 14)
    weekly = DeliveryControls(digest_minutes=10080)  # the epoch was a Thursday
    assert digest_due_at(weekly, _utc(2024, 5, 1, 12, 0)) == _utc(2024, 5, 2, 0, 0)


@given(minutes=st.integers(1, 10080),
       created=st.datetimes(min_value=datetime(1960, 1, 1), max_value=datetime(2100, 1, 1)))
def test_digest_due_is_the_end_of_the_epoch_aligned_interval(minutes: int,
                                                             created: datetime) -> None:
    created = created.replace(tzinfo=UTC)
    due = digest_due_at(DeliveryControls(digest_minutes=minutes), created)
    interval = timedelta(minutes=minutes)
    assert due is not None
    assert due - interval <= created < due
    assert (due - datetime(1970, 1, 1, tzinfo=UTC)) % interval == timedelta(0)


# --- validation ----------------------------------------------------------------------------

def test_valid_controls_come_back_unchanged() -> None:
    for controls in (
        DeliveryControls(),
        DeliveryControls(endpoint_ids=(1, 2), timezone="America/New_York", quiet_start=0,
                         quiet_end=1439, max_per_hour=1, digest_minutes=1,
                         template="x" * 20_000),
        DeliveryControls(timezone="Europe/Berlin", quiet_start=1439, quiet_end=0,
                         digest_minutes=10080),
    ):
        assert validate_controls(controls) is controls


@pytest.mark.parametrize(
    ("changes", "field", "hint"),
    [
        ({"timezone": "Mars/Olympus"}, "timezone", "IANA"),
        ({"timezone": ""}, "timezone", "IANA"),
        ({"timezone": "../../etc/passwd"}, "timezone", "IANA"),
        ({"timezone": "America"}, "timezone", "IANA"),
        ({"quiet_start": -1, "quiet_end": 60}, "quiet_start", "between 0 and 1439"),
        ({"quiet_start": 1440, "quiet_end": 60}, "quiet_start", "between 0 and 1439"),
        ({"quiet_start": 60, "quiet_end": 1440}, "quiet_end", "between 0 and 1439"),
        ({"quiet_start": 60, "quiet_end": 60}, "quiet_end", "must differ"),
        ({"quiet_start": 60}, "quiet_end", "both"),
        ({"quiet_end": 60}, "quiet_start", "both"),
        ({"quiet_start": 1.5, "quiet_end": 60}, "quiet_start", "whole number"),
        ({"max_per_hour": 0}, "max_per_hour", "at least 1"),
        ({"max_per_hour": -5}, "max_per_hour", "at least 1"),
        ({"max_per_hour": True}, "max_per_hour", "whole number"),
        ({"digest_minutes": 0}, "digest_minutes", "between 1 and 10080"),
        ({"digest_minutes": 10081}, "digest_minutes", "between 1 and 10080"),
        ({"template": "x" * 20_001}, "template", "at most 20000"),
    ],
)
def test_each_bad_control_is_named_with_what_to_fix(changes: dict[str, object], field: str,
                                                    hint: str) -> None:
    controls = DeliveryControls(**changes)  # type: ignore[arg-type]  # deliberately bad values
    with pytest.raises(BadInputError) as caught:
        validate_controls(controls)
    assert caught.value.detail.startswith(f"{field}: ")
    assert hint in caught.value.detail
    assert caught.value.code == "bad-input"


def test_every_problem_is_reported_at_once() -> None:
    controls = DeliveryControls(timezone="Nowhere", max_per_hour=0, digest_minutes=0,
                                template="y" * 30_000)
    with pytest.raises(BadInputError) as caught:
        validate_controls(controls)
    for field in ("timezone", "max_per_hour", "digest_minutes", "template"):
        assert f"{field}: " in caught.value.detail
