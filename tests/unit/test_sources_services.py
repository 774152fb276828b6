"""Collector services on the in-memory platform: a hole the source fills on the second ask
is backfilled, sources fire on their cron schedule exactly once per slot (never while
paused), and one process at a time probes a half-open breaker."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pybreaker
import pytest

from signalfactory.domain.bars import BarSeries
from signalfactory.domain.sources import BREAKER_HALF_OPEN, BREAKER_OPEN, FetchedPage
from signalfactory.domain.timeframes import Timeframe
from signalfactory.services.marketdata.bars import load_universe
from signalfactory.services.sources import records
from signalfactory.services.sources.resilience import DatabaseBreakerStorage
from signalfactory.services.sources.run import run_source
from signalfactory.services.sources.schedules import fire_due_sources
from signalfactory.testing import memory_platform
from signalfactory.testing.clock import FixedClock

M1 = Timeframe.parse("1m")
STEP = M1.nanoseconds
NOW = datetime(2024, 3, 1, 12, 0, 30, tzinfo=UTC)


class ScriptedSource:
    """A 24/7 market of 120 one-minute bars before now whose first answer loses bars
    30..34 (a glitch) and which never has bars 80..84 (nobody traded)."""

    continuous = True

    def __init__(self, end_ns: int) -> None:
        self.ts = end_ns - STEP * np.arange(120, 0, -1, dtype=np.int64)
        self.calls: list[tuple[int, int]] = []

    def fetch_page(self, symbol: str, timeframe: Timeframe, since_ns: int,
                   until_ns: int) -> FetchedPage:
        self.calls.append((since_ns, until_ns))
        keep = (self.ts >= since_ns) & (self.ts < until_ns)
        keep[80:85] = False
        if len(self.calls) == 1:
            keep[30:35] = False
        ts = self.ts[keep]
        price = 100.0 + np.arange(ts.size, dtype=np.float64)
        return FetchedPage(BarSeries(symbol, ts, price, price + 1, price - 1, price,
                                     np.ones(ts.size)), until_ns)

    def close(self) -> None:
        """Nothing to release."""


def _platform() -> Any:
    platform = memory_platform(clock=FixedClock(NOW))
    return platform


def test_a_glitch_is_backfilled_and_a_quiet_period_recorded() -> None:
    platform = _platform()
    now_ns = platform.clock.time_ns()
    source = ScriptedSource(now_ns // STEP * STEP)
    platform.source_factories["scripted"] = lambda params, tf: source
    records.add_source(platform, "s", "scripted", {"lookback_bars": 200}, ["X"], "1m")
    report = run_source(platform, "s")
    assert report.backfilled == 5 and report.no_trade_gaps == 1
    assert report.rows == 115 and load_universe(platform, M1).n_bars == 115
    (gap,) = records.source_gaps(platform, "s")
    assert (gap.start_ns, gap.end_ns) == (int(source.ts[80]), int(source.ts[84]))


def test_sources_fire_on_their_cron_once_per_slot_and_not_when_paused() -> None:
    from signalfactory.services.sources import tasks  # noqa: F401 - registers the kind

    platform = _platform()
    platform.source_factories["synthetic"] = lambda params, tf: ScriptedSource(0)
    records.add_source(platform, "every5", "synthetic", {}, ["X"], "1m", cron="*/5 * * * *")
    records.add_source(platform, "manual", "synthetic", {}, ["X"], "1m")
    assert fire_due_sources(platform) == []  # first sight: remember the slot, fire nothing
    platform.clock.advance(minutes=5)
    fired = fire_due_sources(platform)
    assert [j.payload for j in fired] == [{"source": "every5"}]
    assert fired[0].kind == "collect_source"
    assert fire_due_sources(platform) == []  # the same slot never twice
    records.set_paused(platform, "every5", True)
    platform.clock.advance(minutes=5)
    assert fire_due_sources(platform) == []
    records.set_paused(platform, "every5", False)
    platform.clock.advance(minutes=5)
    assert len(fire_due_sources(platform)) == 1


def test_only_one_process_probes_a_half_open_breaker() -> None:
    platform = _platform()
    platform.source_factories["scripted"] = lambda params, tf: ScriptedSource(0)
    records.add_source(platform, "s", "scripted", {}, ["X"], "1m")
    with platform.database.write() as uow:
        uow.sources.set_breaker_state("s", BREAKER_OPEN, opened_at=NOW)
    first, second = (DatabaseBreakerStorage(platform, "s") for _ in range(2))
    first.state = BREAKER_HALF_OPEN  # this process won the move from open
    with pytest.raises(pybreaker.CircuitBreakerError, match="another process"):
        second.state = BREAKER_HALF_OPEN
    assert records.get_source(platform, "s").breaker.state == BREAKER_HALF_OPEN
