"""The one conversion between integer nanoseconds since the epoch (how bars and signals keep
time) and timezone-aware datetimes (how the database and the API show it).

Exact in both directions: integer arithmetic only, no float seconds (a float holds about
15-16 significant digits, fewer than a nanosecond timestamp has; ``ns / 1e9`` loses the
sub-microsecond part and can round a microsecond the wrong way).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NS_PER_US = 1_000
_US_PER_DAY = 86_400_000_000


def ns_to_datetime(ns: int) -> datetime:
    """UTC datetime of ``ns``; datetimes hold microseconds, so the last three digits are
    truncated toward the past (a bar at ...999 ns is still in its microsecond)."""
    return _EPOCH + timedelta(microseconds=int(ns) // _NS_PER_US)


def datetime_to_ns(value: datetime) -> int:
    """Nanoseconds since the epoch of ``value``; a naive datetime is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - _EPOCH
    micros = delta.days * _US_PER_DAY + delta.seconds * 1_000_000 + delta.microseconds
    return micros * _NS_PER_US
