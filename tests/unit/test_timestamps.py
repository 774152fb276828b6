"""The one time converter is exact where float seconds are not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from signalfactory.domain.timestamps import datetime_to_ns, ns_to_datetime


@given(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1)))
def test_round_trip_is_exact_to_the_microsecond(value: datetime) -> None:
    aware = value.replace(tzinfo=UTC)
    assert ns_to_datetime(datetime_to_ns(aware)) == aware


def test_a_value_float_seconds_get_wrong() -> None:
    # Float seconds round this one up into the next microsecond.
    ns = 145_514_431_571_737_540
    assert ns_to_datetime(ns).microsecond == (ns // 1000) % 1_000_000
    assert datetime.fromtimestamp(ns / 1e9, tz=UTC) != ns_to_datetime(ns)


def test_naive_is_utc_and_offsets_are_honoured() -> None:
    naive = datetime(2024, 3, 1, 12, 0)
    assert datetime_to_ns(naive) == datetime_to_ns(naive.replace(tzinfo=UTC))
    seoul = datetime(2024, 3, 1, 21, 0, tzinfo=timezone(timedelta(hours=9)))
    assert datetime_to_ns(seoul) == datetime_to_ns(naive.replace(tzinfo=UTC))
    assert ns_to_datetime(-1) == datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
