"""Collector gauges set from the stored sources at scrape time (any process ran the runs)."""

from __future__ import annotations

import contextlib
import itertools
from typing import TYPE_CHECKING

from signalfactory.domain.sources import BREAKER_CLOSED
from signalfactory.observability.logging import get_logger

if TYPE_CHECKING:
    from signalfactory.services.platform import Platform


log = get_logger("signalfactory.sources")


class SourceGauges:
    """Breaker state and last success per source; a removed source's series are dropped."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def refresh(self, platform: Platform) -> None:
        from signalfactory.observability.metrics import (
            COLLECTOR_BREAKER_OPEN,
            COLLECTOR_LAST_SUCCESS,
        )

        with platform.database.read(primary=True) as uow:
            found = uow.sources.all()
        names = {s.name for s in found}
        for gone in self.seen - names:
            for gauge in (COLLECTOR_BREAKER_OPEN, COLLECTOR_LAST_SUCCESS):
                with contextlib.suppress(KeyError):
                    gauge.remove(gone)
        self.seen = names
        for source in found:
            COLLECTOR_BREAKER_OPEN.labels(source.name).set(
                0 if source.breaker.state == BREAKER_CLOSED else 1)
            if source.run.last_success_at is not None:
                COLLECTOR_LAST_SUCCESS.labels(source.name).set(
                    source.run.last_success_at.timestamp())


def cron_interval_seconds(cron: str) -> float:
    """The longest wait between two runs of ``cron`` over the next week (a weekday-only
    schedule waits over the weekend)."""
    from datetime import UTC, datetime

    from croniter import croniter

    it = croniter(cron, datetime(2024, 1, 1, tzinfo=UTC))
    times = [it.get_next(float) for _ in range(2000)]
    horizon = [t for t in times if t - times[0] <= 7 * 86400] or times
    gaps = [b - a for a, b in itertools.pairwise(horizon)]
    return max(gaps) if gaps else 7 * 86400.0


def source_allowances(platform: Platform, by_timeframe: dict[str, int]) -> dict[str, int]:
    """Allowed staleness per source name: its ``max_staleness_seconds`` when set, else the
    timeframe's allowance widened to two schedule intervals (a source collected every 15
    minutes must not alert on 1-minute bars after 3 minutes)."""
    from signalfactory.services.sources.options import split_params

    with platform.database.read(primary=True) as uow:
        found = uow.sources.all()
    allowed: dict[str, int] = {}
    for source in found:
        try:
            options, _ = split_params(source.params)
        except Exception:  # a stored source always parsed; never break a scrape over one
            log.warning("source params no longer parse", source=source.name)
            continue
        base = by_timeframe.get(source.timeframe, 0)
        if options.max_staleness_seconds is not None:
            allowed[source.name] = options.max_staleness_seconds
        elif source.cron is not None:
            allowed[source.name] = int(max(base, 2 * cron_interval_seconds(source.cron)))
        else:
            allowed[source.name] = base
    return allowed
