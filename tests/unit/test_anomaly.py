"""The seasonal baseline on synthetic hourly series: a known anomaly is flagged, a holiday-like
lull within the hour-of-week band is not, a flat history does not explode."""

from __future__ import annotations

import numpy as np
import pytest

from signalfactory.domain.anomaly import (
    HOURS_PER_WEEK,
    MAD_TO_SIGMA,
    THRESHOLD,
    baseline_at,
    hourly_series,
    scores,
)

WEEKS = 5
# Ordinary week-to-week variation of the level; the fifth week is the one scored.
WEEK_LEVELS = (0.88, 1.08, 0.95, 1.02, 1.0)


def hour_of_week_profile() -> np.ndarray:
    """Signals per hour: 100 by day (08-20 h), 10 at night, weekends (days 5, 6) at 40 %."""
    hours = np.arange(HOURS_PER_WEEK)
    hour_of_day, day = hours % 24, hours // 24
    level = np.where((hour_of_day >= 8) & (hour_of_day < 20), 100.0, 10.0)
    return level * np.where(day >= 5, 0.4, 1.0)


def synthetic(seed: int = 7) -> np.ndarray:
    profile = hour_of_week_profile()
    rng = np.random.default_rng(seed)
    weeks = [profile * level * rng.normal(1.0, 0.02, HOURS_PER_WEEK) for level in WEEK_LEVELS]
    return np.concatenate(weeks)


def last_week(day: int, hour_of_day: int) -> int:
    return (WEEKS - 1) * HOURS_PER_WEEK + day * 24 + hour_of_day


def test_an_ordinary_last_week_raises_no_score_above_the_threshold() -> None:
    series = synthetic()
    found = scores(series)[(WEEKS - 1) * HOURS_PER_WEEK:]
    assert not np.isnan(found).any()
    assert found.max() < THRESHOLD


def test_the_night_level_at_10am_on_a_weekday_is_flagged_though_ordinary_overall() -> None:
    series = synthetic()
    at = last_week(2, 10)  # Wednesday 10:00, normally ~100
    series[at] = 10.0  # what Wednesday 03:00 looks like: signals stopped
    base = baseline_at(series, at)
    assert base is not None and base.anomalous
    assert base.median == pytest.approx(100.0, rel=0.1)
    # Without the hour-of-week (one median and MAD over all past hours) 10 is the most ordinary
    # value there is: the seasonal baseline is what catches it.
    past = series[:at]
    overall_median = np.median(past)
    overall = abs(10.0 - overall_median) / (MAD_TO_SIGMA * np.median(abs(past - overall_median)))
    assert overall < THRESHOLD


def test_a_holiday_lull_with_the_usual_shape_inside_the_band_is_not_flagged() -> None:
    series = synthetic()
    monday = slice(last_week(0, 0), last_week(1, 0))
    series[monday] *= 0.85  # a quiet holiday: same shape, 15 % lower
    found = scores(series)[monday]
    assert found.max() < THRESHOLD
    # The lull is real: by day it is >10 % below the Friday before it (a day-over-day check
    # would call it a drop), and the same hours a week earlier were higher.
    friday_before = series[last_week(0, 0) - 3 * 24 + 10]
    assert series[last_week(0, 10)] < 0.9 * friday_before
    assert series[last_week(0, 10)] < series[last_week(0, 10) - HOURS_PER_WEEK]


def test_the_same_lull_deeper_is_flagged_by_day() -> None:
    series = synthetic()
    monday = slice(last_week(0, 0), last_week(1, 0))
    series[monday] *= 0.3  # an outage, not a holiday
    found = scores(series)[monday]
    day_hours = found[8:20]
    assert (day_hours > THRESHOLD).all()


def test_one_past_outlier_week_does_not_widen_the_band() -> None:
    series = synthetic()
    at = last_week(3, 12)
    series[at - 2 * HOURS_PER_WEEK] = 1000.0  # a spike two weeks ago at the same hour
    ordinary = baseline_at(series, at)
    assert ordinary is not None and not ordinary.anomalous
    series[at] = 200.0
    spike = baseline_at(series, at)
    assert spike is not None and spike.anomalous


def test_a_flat_history_is_floored_not_infinite() -> None:
    zeros = np.zeros(3 * HOURS_PER_WEEK + 1)
    assert baseline_at(zeros, zeros.size - 1).score == 0.0  # type: ignore[union-attr]
    zeros[-1] = 1.0  # one signal where there were none: small
    one = baseline_at(zeros, zeros.size - 1)
    assert one is not None and one.score == pytest.approx(1 / MAD_TO_SIGMA)
    assert not one.anomalous
    zeros[-1] = 10.0
    assert baseline_at(zeros, zeros.size - 1).anomalous  # type: ignore[union-attr]
    flat = np.full(3 * HOURS_PER_WEEK + 1, 50.0)
    flat[-1] = 52.0  # 4 % on a flat 50: the relative floor (5 % of the median) keeps it small
    small = baseline_at(flat, flat.size - 1)
    assert small is not None and small.mad == pytest.approx(2.5) and not small.anomalous


def test_too_little_history_gives_no_score() -> None:
    series = synthetic()[: HOURS_PER_WEEK + 10]
    assert baseline_at(series, series.size - 1) is None  # one earlier week: below MIN_WEEKS
    with_gap = synthetic()
    with_gap[: 3 * HOURS_PER_WEEK] = np.nan  # the series did not exist then
    assert baseline_at(with_gap, last_week(0, 5)) is None
    with pytest.raises(ValueError, match="min_mad"):
        baseline_at(series, 0, min_mad=0)


def test_hourly_series_is_nan_before_the_first_entry_and_zero_after() -> None:
    series = hourly_series({103: 5.0, 106: 2.0}, 100, 107)
    assert np.isnan(series[:3]).all()
    assert series[3:].tolist() == [5.0, 0.0, 0.0, 2.0, 0.0]
    assert np.isnan(hourly_series({}, 0, 3)).all()
