"""A clock that only moves when told to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class FixedClock:
    """``now()`` is ``start`` until :meth:`advance` moves it; monotonic time moves with it."""

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime(2024, 1, 2, 9, 30, tzinfo=UTC)
        if start.tzinfo is None:
            raise ValueError("a FixedClock needs a timezone-aware start time")
        self._now = start.astimezone(UTC)
        self._monotonic = 1000.0

    def now(self) -> datetime:
        return self._now

    def time_ns(self) -> int:
        delta = self._now - datetime(1970, 1, 1, tzinfo=UTC)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float = 0.0, **delta: float) -> datetime:
        step = timedelta(seconds=seconds, **delta)
        self._now += step
        self._monotonic += step.total_seconds()
        return self._now
