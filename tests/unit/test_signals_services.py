"""Strategies, signal evaluation (batch and live) and scans against the in-memory ports:
a synthetic universe is written through ``write_bars`` into the in-memory bar repository."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from signalfactory.domain.bars import BarUniverse
from signalfactory.domain.errors import BadInputError, NotFoundError
from signalfactory.domain.instruments import InstrumentSpec
from signalfactory.domain.signals import SignalQuery
from signalfactory.domain.streaming import SignalEvent
from signalfactory.domain.synthetic import business_days, generate_symbol
from signalfactory.domain.tenants import DEFAULT_TENANT_ID
from signalfactory.domain.timeframes import Timeframe
from signalfactory.services.marketdata.bars import BarsWritten, SymbolBars, write_bars
from signalfactory.services.platform import Platform
from signalfactory.services.scans.scan import ScanRequest, get_scan, run_scan
from signalfactory.services.signals import live
from signalfactory.services.signals.evaluation import query_signals, run_all, run_stored
from signalfactory.services.strategies.catalog import (
    add_strategy,
    ensure_builtins,
    get_strategy,
    list_strategies,
    list_versions,
)
from signalfactory.services.streaming.subscriptions import add_subscription
from signalfactory.testing import InMemoryDatabase, memory_platform
from signalfactory.testing.scans import scan_store
from signalfactory.testing.signals import signal_store
from signalfactory.testing.strategies import strategy_store

DAY = Timeframe.parse("1d")
ALWAYS = "entry: close > 0\nexit: close < 0"
SCORED = "entry: close > sma(close, 5); score: close / sma(close, 5)"
BROKEN = ("class Broken:\n"
          "    name = 'broken'\n    version = '1'\n    parameters = {}\n"
          "    required_lookback = 0\n"
          "    def evaluate(self, universe):\n"
          "        raise ValueError('division by the number of regrets')\n")


def _universe(symbols: int = 6, bars: int = 260, seed: int = 3) -> BarUniverse:
    rng = np.random.default_rng(seed)
    ts = business_days(1_577_836_800 * 1_000_000_000, bars)  # from 2020-01-01
    series = [generate_symbol(rng, f"S{i:02d}", ts) for i in range(symbols)]
    universe = BarUniverse.from_series(series)
    return dataclasses.replace(universe,
                               instrument_ids=np.arange(1, symbols + 1, dtype=np.int64))


@pytest.fixture
def bars() -> BarUniverse:
    return _universe()


@pytest.fixture
def platform(bars: BarUniverse) -> Iterator[Platform]:
    platform = memory_platform()
    batches = [SymbolBars(InstrumentSpec(symbol=s.symbol), s.ts, s.open, s.high, s.low,
                          s.close, s.volume) for s in bars]
    write_bars(platform, DAY, batches, source="test")  # ids 1.. in order; nobody subscribed
    with platform.database.write() as uow:
        ensure_builtins(uow)
    yield platform
    platform.close()


def _state(platform: Platform) -> Any:
    database = platform.database
    if not isinstance(database, InMemoryDatabase):
        raise TypeError("these tests run on the in-memory database")
    return database.state


def _snapshot(platform: Platform) -> dict[str, Any]:
    return copy.deepcopy(_state(platform)._stores)


# -- the catalog ---------------------------------------------------------------------------

def test_builtins_are_stored_once(platform: Platform) -> None:
    before = _snapshot(platform)
    with platform.database.write() as uow:
        ensure_builtins(uow)
    assert _snapshot(platform) == before
    with platform.database.read() as uow:
        names = {s.name for s in list_strategies(uow, 7)}
    assert {"sma_cross", "rsi_mean_reversion", "macd_trend"} <= names


def test_a_changed_strategy_is_a_new_version_and_the_same_code_is_not(
        platform: Platform) -> None:
    with platform.database.write() as uow:
        first, created = add_strategy(uow, 2, "Trend", rule_text="entry: close > ema(close, 30)")
    assert created and (first.name, first.version, first.versions) == ("trend", 1, 1)
    with platform.database.write() as uow:
        same, created = add_strategy(uow, 2, "trend", rule_text="entry: close > ema(close, 30)")
    assert not created and same.version_id == first.version_id
    with platform.database.write() as uow:
        second, created = add_strategy(uow, 2, "trend",
                                       rule_text="entry: close > ema(close, 40)")
    assert created and (second.version, second.versions) == (2, 2)
    with platform.database.read() as uow:
        assert [v.version for v in list_versions(uow, 2, "trend")] == [1, 2]
        assert get_strategy(uow, 2, "trend", 1).rule_text == "entry: close > ema(close, 30)"
        assert get_strategy(uow, 2, "trend").version == 2
        with pytest.raises(NotFoundError):
            get_strategy(uow, 3, "trend")  # another tenant's


def test_a_tenants_own_strategy_wins_over_the_builtin_of_that_name(platform: Platform) -> None:
    with platform.database.write() as uow:
        add_strategy(uow, 2, "sma_cross", rule_text=ALWAYS)
    with platform.database.read() as uow:
        assert get_strategy(uow, 2, "sma_cross").builtin is False
        assert get_strategy(uow, 3, "sma_cross").builtin is True
        mine = [s for s in list_strategies(uow, 2) if s.name == "sma_cross"]
    assert [s.builtin for s in mine] == [False]


@pytest.mark.parametrize("kwargs", [
    {"name": "bad name!", "rule_text": ALWAYS},
    {"name": "x", "rule_text": "entry: close >"},
    {"name": "x", "rule_text": ALWAYS, "class_path": "a.b:C"},
    {"name": "x"},
    {"name": "x", "rule_text": ALWAYS, "parameters": {"fast": 3}},
    {"name": "x", "rule_text": ALWAYS, "timeframe": "7q"},
    {"name": "sma_cross", "rule_text": ALWAYS, "tenant_id": DEFAULT_TENANT_ID},
])
def test_bad_strategy_input_leaves_the_state_unchanged(platform: Platform,
                                                       kwargs: dict[str, Any]) -> None:
    before = _snapshot(platform)
    tenant = kwargs.pop("tenant_id", 2)
    with pytest.raises(BadInputError), platform.database.write() as uow:
        add_strategy(uow, tenant, **kwargs)
    assert _snapshot(platform) == before


# -- batch evaluation ----------------------------------------------------------------------

def test_rerunning_an_evaluation_stores_no_duplicates(platform: Platform) -> None:
    with platform.database.read() as uow:
        stored = get_strategy(uow, DEFAULT_TENANT_ID, "sma_cross")
    first = run_stored(platform, stored)
    assert first.status == "succeeded" and first.signals_found > 0, first.error
    assert first.signals_written == first.signals_found
    stored_signals = dict(signal_store(_state(platform)).signals)
    again = run_stored(platform, stored)
    assert (again.signals_found, again.signals_written) == (first.signals_found, 0)
    assert signal_store(_state(platform)).signals == stored_signals
    runs = strategy_store(_state(platform)).runs
    assert [(r.status, r.signals_written) for r in runs.values()] == [
        ("succeeded", first.signals_written), ("succeeded", 0)]
    assert all(s.values for s, _at in stored_signals.values()), "values decide a signal"


def test_a_failing_strategy_is_recorded_and_the_others_go_on(platform: Platform,
                                                             tmp_path: Path) -> None:
    source = tmp_path / "broken.py"
    source.write_text(BROKEN)
    with platform.database.write() as uow:
        add_strategy(uow, DEFAULT_TENANT_ID, "broken", class_path=f"{source}:Broken")
    reports = run_all(platform, DEFAULT_TENANT_ID, ["broken", "rsi_mean_reversion"])
    assert [r.status for r in reports] == ["failed", "succeeded"]
    assert "regrets" in (reports[0].error or "")
    runs = list(strategy_store(_state(platform)).runs.values())
    assert [r.status for r in runs] == ["failed", "succeeded"]
    assert "regrets" in (runs[0].error or "") and runs[0].signals_written == 0


def test_signal_pages_follow_the_cursor_and_the_tenant(platform: Platform) -> None:
    with platform.database.write() as uow:
        add_strategy(uow, 2, "always", rule_text=ALWAYS)
    (own,) = run_all(platform, 2, ["always"])
    (shared,) = run_all(platform, 2, ["sma_cross"])
    assert own.signals_written > 20 and shared.signals_written > 0
    seen: list[int] = []
    after: int | None = None
    with platform.database.read() as uow:
        while True:
            page = query_signals(uow, 2, strategy="always", after_id=after, limit=7)
            seen += [s.id for s in page]
            if len(page) < 7:
                break
            after = page[-1].id
        assert len(seen) == len(set(seen)) == own.signals_written and seen == sorted(seen)
        # Another tenant sees the built-in's signals, not tenant 2's own strategy's.
        assert query_signals(uow, 3, strategy="always", limit=1000) == []
        visible = query_signals(uow, 3, limit=10_000)
        assert {s.strategy for s in visible} == {"sma_cross"}
        one = query_signals(uow, 2, symbol="S01", side="long", limit=1000)
        assert one and all((s.symbol, s.side) == ("S01", "long") for s in one)


# -- scans -----------------------------------------------------------------------------------

def test_a_scan_ranks_by_score_and_is_stored(platform: Platform) -> None:
    scan = run_scan(platform, ScanRequest(tenant_id=2, rule=SCORED, top=3))
    assert scan.status == "succeeded" and scan.instruments == 6
    assert [r.rank for r in scan.results] == list(range(1, len(scan.results) + 1))
    scores = [r.score for r in scan.results]
    assert scores and len(scores) <= 3
    assert scores == sorted(scores, key=lambda s: -(s if s is not None else -np.inf))
    assert get_scan(platform, 2, scan.id) == scan
    with pytest.raises(NotFoundError):
        get_scan(platform, 3, scan.id)
    # An ad-hoc rule names no stored version: it stores no signals.
    assert scan.strategy_version_id is None and not signal_store(_state(platform)).signals


def test_a_scan_of_a_stored_strategy_stores_its_signals_once(platform: Platform) -> None:
    first = run_scan(platform, ScanRequest(tenant_id=2, strategy="sma_cross"))
    stored = dict(signal_store(_state(platform)).signals)
    second = run_scan(platform, ScanRequest(tenant_id=2, strategy="sma_cross"))
    assert first.strategy_version_id == second.strategy_version_id is not None
    assert second.id != first.id and len(scan_store(_state(platform)).scans) == 2
    assert len(stored) == first.matches
    assert signal_store(_state(platform)).signals == stored


@pytest.mark.parametrize("request_", [
    ScanRequest(tenant_id=2, rule="entry: crosses_above(close)"),
    ScanRequest(tenant_id=2, rule="entry: close > sma(close, 5000)"),
    ScanRequest(tenant_id=2, rule=ALWAYS, top=0),
    ScanRequest(tenant_id=2, rule=ALWAYS, side="sideways"),
    ScanRequest(tenant_id=2, strategy="sma_cross", rule=ALWAYS),
    ScanRequest(tenant_id=2, strategy="rsi_mean_reversion", parameters={"nope": 1}),
])
def test_a_bad_scan_stores_nothing(platform: Platform, request_: ScanRequest) -> None:
    before = _snapshot(platform)
    with pytest.raises(BadInputError):
        run_scan(platform, request_)
    assert _snapshot(platform) == before


# -- live evaluation ---------------------------------------------------------------------------

def test_live_signals_and_runs_commit_together_then_publish(
        platform: Platform, bars: BarUniverse, tmp_path: Path) -> None:
    source = tmp_path / "broken.py"
    source.write_text(BROKEN)
    with platform.database.write() as uow:
        add_strategy(uow, 2, "always", rule_text=ALWAYS)
        add_strategy(uow, 2, "broken", class_path=f"{source}:Broken")
    published: list[list[SignalEvent]] = []
    committed: list[int] = []

    def publisher(events: list[SignalEvent]) -> None:
        published.append(events)
        committed.append(len(signal_store(_state(platform)).signals))

    platform.signal_publishers.append(publisher)
    last = int(bars.ts[-1])
    written = BarsWritten(DAY, {1: last, 2: last}, arrival_ns=0, source="test")
    report = live.evaluate_new_bars(platform, written)
    assert report is not None and report.failed == ("broken",)
    assert report.strategies == 2 and report.signals_new == 2  # not the built-ins: unwatched
    (events,) = published
    assert {(e.symbol, e.strategy) for e in events} == {("S00", "always"), ("S01", "always")}
    assert committed == [2], "publishers run after the signals are committed"
    runs = list(strategy_store(_state(platform)).runs.values())
    assert sorted((r.status, r.signals_written) for r in runs) == [("failed", 0),
                                                                   ("succeeded", 2)]
    # The same bars again: nothing new is stored or published, the runs are recorded.
    again = live.evaluate_new_bars(platform, written)
    assert again is not None and again.signals_new == 0 and len(published) == 1
    assert len(strategy_store(_state(platform)).runs) == 4


def test_builtins_are_watched_only_when_a_subscription_wants_them(platform: Platform) -> None:
    with platform.database.write() as uow:
        add_strategy(uow, 2, "mine", rule_text=ALWAYS)
        add_strategy(uow, 2, "hourly", rule_text=ALWAYS, timeframe="1h")

    def watched(timeframe: Timeframe = DAY) -> set[str]:
        with platform.database.read() as uow:
            return {s.name for s in live.watched_strategies(uow, timeframe)}

    assert watched() == {"mine"} and watched(Timeframe.parse("1h")) == {"hourly"}
    with platform.database.write() as uow:
        add_subscription(uow, 3, "crosses", strategies_=["sma_cross"])
    assert watched() == {"mine", "sma_cross"}
    with platform.database.write() as uow:
        add_subscription(uow, 3, "everything")
    assert watched() == {"mine", "sma_cross", "rsi_mean_reversion", "macd_trend",
                         "bollinger_breakout", "donchian_breakout"}


def test_newest_signals_first_and_counts_of_today(platform: Platform) -> None:
    """What the dashboard asks: the newest signals first (paging down by id), and how many
    were stored since a time, both per tenant."""
    with platform.database.write() as uow:
        add_strategy(uow, 2, "always", rule_text=ALWAYS)
    (own,) = run_all(platform, 2, ["always"])
    with platform.database.read() as uow:
        oldest = query_signals(uow, 2, strategy="always", limit=10_000)
        newest = uow.signals.page(SignalQuery(tenant_id=2, strategy="always", limit=5,
                                              newest_first=True))
        below = uow.signals.page(SignalQuery(tenant_id=2, strategy="always", limit=5,
                                             newest_first=True, after_id=newest[-1].id))
        assert [s.id for s in newest + below] == [s.id for s in oldest][::-1][:10]
        since = datetime.now(UTC) - timedelta(minutes=1)  # memory rows: the wall clock
        assert uow.signals.count_created_since(2, since) == own.signals_written
        assert uow.signals.count_created_since(3, since) == 0  # not tenant 3's to see
        assert uow.signals.count_created_since(2, since + timedelta(days=1)) == 0


def test_a_tenants_recent_scans_come_newest_first_without_results(platform: Platform) -> None:
    first = run_scan(platform, ScanRequest(tenant_id=2, strategy="sma_cross", top=3))
    second = run_scan(platform, ScanRequest(tenant_id=2, strategy="macd_trend", top=3))
    run_scan(platform, ScanRequest(tenant_id=3, strategy="sma_cross", top=3))
    with platform.database.read() as uow:
        recent = uow.scans.recent(2, 10)
        assert [s.id for s in recent] == [second.id, first.id]
        assert all(s.results == () for s in recent)
        assert [s.id for s in uow.scans.recent(2, 1)] == [second.id]
