"""Anomaly scores of hourly key figures against a robust seasonal baseline (pure, numpy only).

The baseline of an hour is the same hour-of-week in the ``weeks`` weeks before it: the median
of those values and their median absolute deviation (MAD). The score is the robust z-score
``|x - median| / (1.4826 * MAD)`` (1.4826 makes the MAD estimate a standard deviation on normal
data). Seasonality is the point: Monday 09:00 is compared with earlier Mondays 09:00, so a
quiet night or weekend is not an anomaly, and a figure that is normal by day but appears at
night is one. Median and MAD ignore a past outlier (one bad week does not widen the band).

A flat history has a MAD of 0, which would make any change infinitely anomalous; the MAD is
floored at ``max(min_mad, relative_floor * |median|)`` so a count going from 0 to 1, or a
figure moving a few percent, stays a small score.

:data:`THRESHOLD` is the score above which a figure counts as anomalous: 5 robust standard
deviations. With a few dozen series scored every hour, a lower bound (3, 3.5) would page on
ordinary noise every week; deploy/prometheus/rules.yml (SignalFactoryAnomaly) uses the same
number, and a test checks they agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

HOURS_PER_WEEK = 168
#: robust z-score above which a figure is anomalous (SignalFactoryAnomaly uses the same bound)
THRESHOLD = 5.0
#: MAD -> standard deviation for normally distributed data
MAD_TO_SIGMA = 1.4826
#: weeks of history a baseline looks back on by default
DEFAULT_WEEKS = 4
#: fewer past values of the same hour-of-week than this: no score (not enough history)
MIN_WEEKS = 2

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Baseline:
    """The seasonal baseline of one hour and the score of its value."""

    value: float
    median: float
    mad: float  # after the floor
    score: float

    @property
    def anomalous(self) -> bool:
        return self.score > THRESHOLD


def baseline_at(series: FloatArray, index: int, *, weeks: int = DEFAULT_WEEKS,
                min_mad: float = 1.0, relative_floor: float = 0.05,
                min_weeks: int = MIN_WEEKS) -> Baseline | None:
    """Baseline and score of ``series[index]`` from the same hour-of-week in earlier weeks.

    ``series`` is hourly, oldest first; NaN marks hours without data (before a series
    existed), which do not count as history. None when fewer than ``min_weeks`` past values
    exist or the value itself is NaN.
    """
    if weeks < 1 or min_mad <= 0 or relative_floor < 0:
        raise ValueError("weeks must be >= 1, min_mad > 0 and relative_floor >= 0")
    value = float(series[index])
    if np.isnan(value):
        return None
    past_idx = index - HOURS_PER_WEEK * np.arange(1, weeks + 1)
    past = series[past_idx[past_idx >= 0]]
    past = past[~np.isnan(past)]
    if past.size < min_weeks:
        return None
    median = float(np.median(past))
    mad = float(np.median(np.abs(past - median)))
    mad = max(mad, min_mad, relative_floor * abs(median))
    return Baseline(value=value, median=median, mad=mad,
                    score=abs(value - median) / (MAD_TO_SIGMA * mad))


def scores(series: FloatArray, *, weeks: int = DEFAULT_WEEKS, min_mad: float = 1.0,
           relative_floor: float = 0.05, min_weeks: int = MIN_WEEKS) -> FloatArray:
    """The score of every hour of ``series`` (NaN where there is not enough history)."""
    out = np.full(series.shape[0], np.nan)
    for index in range(series.shape[0]):
        found = baseline_at(series, index, weeks=weeks, min_mad=min_mad,
                            relative_floor=relative_floor, min_weeks=min_weeks)
        if found is not None:
            out[index] = found.score
    return out


def hourly_series(buckets: dict[int, float], first_hour: int, last_hour: int) -> FloatArray:
    """An hourly series from ``{epoch_hour: value}`` for ``first_hour..last_hour``: hours
    without an entry are 0 from the series' first entry on, NaN before it (it did not exist)."""
    out = np.full(last_hour - first_hour + 1, np.nan)
    if not buckets:
        return out
    start = max(min(buckets), first_hour)
    out[start - first_hour:] = 0.0
    for hour, value in buckets.items():
        if first_hour <= hour <= last_hour:
            out[hour - first_hour] = value
    return out
