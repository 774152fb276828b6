"""Collector gauges set from the stored sources at scrape time (any process ran the runs)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from signalfactory.domain.sources import BREAKER_CLOSED

if TYPE_CHECKING:
    from signalfactory.services.platform import Platform


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
