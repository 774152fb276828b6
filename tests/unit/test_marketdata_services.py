"""Market-data services against the in-memory ports: no database, the same calls."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from signalfactory.domain.bars import BarSeries
from signalfactory.domain.errors import BadInputError, NotFoundError
from signalfactory.domain.instruments import InstrumentSpec
from signalfactory.domain.timeframes import Timeframe
from signalfactory.domain.timestamps import datetime_to_ns
from signalfactory.services.marketdata.bars import (
    BarsWritten,
    SymbolBars,
    load_universe,
    write_bars,
)
from signalfactory.services.marketdata.collect import collect, cursor
from signalfactory.services.marketdata.ingest import ingest_files
from signalfactory.services.marketdata.ports import MarketDataSource
from signalfactory.services.marketdata.sample import store_sample
from signalfactory.services.platform import Platform
from signalfactory.testing import memory_platform
from signalfactory.testing.marketdata import MarketDataStore
from signalfactory.testing.memory import InMemoryDatabase

D1 = Timeframe.parse("1d")
H1 = Timeframe.parse("1h")
DAY = D1.nanoseconds
START = datetime_to_ns(datetime(2024, 1, 1, tzinfo=UTC))


def _batch(symbol: str, days: int, *, first: int = 0, price: float = 100.0,
           tags: dict[str, str] | None = None) -> SymbolBars:
    ts = START + (first + np.arange(days, dtype=np.int64)) * DAY
    close = price + np.arange(days, dtype=np.float64)
    return SymbolBars(InstrumentSpec(symbol, tags=tags or {}), ts, close, close + 1, close - 1,
                      close, np.full(days, 10.0))


def _state(platform: Platform) -> MarketDataStore:
    database = platform.database
    assert isinstance(database, InMemoryDatabase)
    return database.state.store("marketdata", MarketDataStore)


def _snapshot(platform: Platform) -> tuple[object, ...]:
    """Everything market data stores, comparable with ``==`` (arrays as lists)."""
    data = _state(platform)
    bars = {tf: tuple(getattr(c, f).tolist() for f in ("instrument_id", "ts", "open", "high",
                                                        "low", "close", "volume"))
            for tf, c in data.bars.items()}
    return (copy.deepcopy(data.instruments), data.next_instrument_id, bars,
            list(data.ingests), dict(data.cursors))


@pytest.fixture
def platform() -> Platform:
    return memory_platform()


def test_write_then_load_round_trip(platform: Platform) -> None:
    report = write_bars(platform, D1, [_batch("AAA", 5), _batch("BBB", 3, price=50.0)],
                        source="test")
    assert (report.rows, report.instruments, report.timeframe) == (8, 2, "1d")
    assert report.min_ts == datetime(2024, 1, 1, tzinfo=UTC)
    assert report.max_ts == datetime(2024, 1, 5, tzinfo=UTC)
    uni = load_universe(platform, D1)
    assert uni.symbols == ("AAA", "BBB")
    assert uni.n_bars == 8
    np.testing.assert_array_equal(uni.series(1).close, [50.0, 51.0, 52.0])
    (entry,) = _state(platform).ingests
    assert (entry.source, entry.rows, entry.instruments) == ("test", 8, 2)


def test_a_bad_batch_leaves_the_state_exactly_as_before(platform: Platform) -> None:
    write_bars(platform, D1, [_batch("AAA", 5)], source="first")
    before = _snapshot(platform)
    bad = _batch("CCC", 3)
    broken = SymbolBars(bad.spec, bad.ts, bad.open, bad.high, bad.low, bad.close,
                        bad.volume[:1])  # a column of the wrong length
    with pytest.raises(IndexError):  # after the instruments were upserted
        write_bars(platform, D1, [_batch("BBB", 4), _batch("AAA", 2, first=10), broken],
                   source="second")
    assert _snapshot(platform) == before
    assert load_universe(platform, D1).symbols == ("AAA",)


def test_a_failing_extra_step_undoes_the_whole_write(platform: Platform) -> None:
    before = _snapshot(platform)

    def fail(_uow: object) -> None:
        raise BadInputError("refused")

    with pytest.raises(BadInputError):
        write_bars(platform, D1, [_batch("AAA", 5)], source="x", extra=fail)
    assert _snapshot(platform) == before


def test_reingest_is_idempotent_and_overlap_upserts(platform: Platform) -> None:
    write_bars(platform, D1, [_batch("AAA", 10)], source="a")
    write_bars(platform, D1, [_batch("AAA", 10)], source="a")
    once = load_universe(platform, D1)
    assert once.n_bars == 10
    # The last five bars again with new prices, and five new ones.
    write_bars(platform, D1, [_batch("AAA", 10, first=5, price=500.0)], source="b")
    uni = load_universe(platform, D1)
    assert uni.n_bars == 15
    np.testing.assert_array_equal(uni.close[:5], once.close[:5])
    np.testing.assert_array_equal(uni.close[5:], 500.0 + np.arange(10))
    assert np.all(np.diff(uni.ts) > 0)
    assert len(_state(platform).instruments) == 1


def test_a_repeated_bar_in_one_write_keeps_its_last_value(platform: Platform) -> None:
    write_bars(platform, D1, [_batch("AAA", 3), _batch("AAA", 1, first=1, price=7.0)],
               source="x")
    np.testing.assert_array_equal(load_universe(platform, D1).close, [100.0, 7.0, 102.0])


def test_tags_merge_and_the_instrument_cache_is_invalidated_after_commit(
        platform: Platform) -> None:
    calls: list[str] = []
    platform.cache.get_or_load("instruments", ("list",), lambda: calls.append("load") or "1")
    write_bars(platform, D1, [_batch("AAA", 2, tags={"sector": "energy"})], source="x")
    platform.cache.get_or_load("instruments", ("list",), lambda: calls.append("load") or "2")
    assert calls == ["load", "load"]  # the new instrument made the cached list stale
    write_bars(platform, D1, [_batch("AAA", 2)], source="x")  # nothing new: cache kept
    platform.cache.get_or_load("instruments", ("list",), lambda: calls.append("load") or "3")
    assert calls == ["load", "load"]
    write_bars(platform, D1, [_batch("AAA", 2, tags={"universe": "core"})], source="x")
    with platform.database.read() as uow:
        (found,) = uow.instruments.find()
    assert dict(found.tags) == {"sector": "energy", "universe": "core"}


def test_subscribers_run_after_commit_with_what_was_written(platform: Platform) -> None:
    seen: list[tuple[BarsWritten, list[str]]] = []

    def subscriber(p: Platform, written: BarsWritten) -> None:
        with p.database.read() as uow:  # the write is committed: a new reader sees it
            seen.append((written, uow.bars.timeframes()))

    platform.bar_subscribers.append(subscriber)
    write_bars(platform, D1, [_batch("AAA", 5), _batch("BBB", 3, first=2)], source="feed")
    ((written, stored),) = seen
    assert stored == ["1d"]
    assert written.timeframe == D1 and written.source == "feed"
    assert written.first_new == {1: START, 2: START + 2 * DAY}
    assert written.arrival_ns == platform.clock.time_ns()
    write_bars(platform, D1, [], source="empty")
    assert len(seen) == 1  # nothing written, nobody told


def test_a_failing_subscriber_never_undoes_the_write(platform: Platform) -> None:
    def boom(_p: Platform, _w: BarsWritten) -> None:
        raise RuntimeError("subscriber failed")

    platform.bar_subscribers.append(boom)
    with pytest.raises(RuntimeError):
        write_bars(platform, D1, [_batch("AAA", 5)], source="x")
    assert load_universe(platform, D1).n_bars == 5


def test_load_universe_by_tag_symbols_and_time_range(platform: Platform) -> None:
    write_bars(platform, D1, [_batch("AAA", 10, tags={"sector": "energy"}),
                              _batch("BBB", 10, tags={"sector": "tech"}),
                              _batch("CCC", 10, tags={"sector": "energy", "core": "yes"})],
               source="x")
    assert load_universe(platform, D1, tag="sector=energy").symbols == ("AAA", "CCC")
    assert load_universe(platform, D1, tag="tech").symbols == ("BBB",)
    assert load_universe(platform, D1, tag="core").symbols == ("CCC",)
    assert load_universe(platform, D1, symbols=["CCC", "BBB"]).symbols == ("BBB", "CCC")
    window = load_universe(platform, D1, symbols=["AAA"], start="2024-01-03",
                           end=datetime(2024, 1, 5, tzinfo=UTC))
    assert window.ts.tolist() == [START + d * DAY for d in (2, 3, 4)]
    with pytest.raises(NotFoundError, match="ZZZ"):
        load_universe(platform, D1, symbols=["AAA", "ZZZ"])


def test_a_higher_timeframe_is_aggregated_from_a_lower_one(platform: Platform) -> None:
    ts = START + np.arange(48, dtype=np.int64) * H1.nanoseconds
    close = np.arange(48, dtype=np.float64) + 1
    write_bars(platform, H1, [SymbolBars(InstrumentSpec("AAA"), ts, close, close + 1,
                                         close - 1, close, np.ones(48))], source="x")
    daily = load_universe(platform, D1)
    assert daily.n_bars == 2
    assert daily.close.tolist() == [24.0, 48.0]
    assert daily.volume.tolist() == [24.0, 24.0]
    with pytest.raises(NotFoundError, match="stored: 1h"):
        load_universe(platform, Timeframe.parse("1m"))


def test_sample_and_ingest_store_through_the_ports(platform: Platform, tmp_path: Path) -> None:
    report = store_sample(platform, symbols=3, bars=20, seed=1)
    assert (report.rows, report.instruments) == (60, 3)
    assert load_universe(platform, D1, tag="universe=sample").n_instruments == 3
    path = tmp_path / "XYZ.csv"
    path.write_text("date,open,high,low,close,volume\n2024-01-02,1,2,0.5,1.5,10\n"
                    "2024-01-03,1.5,2,1,1.8,12\n")
    assert ingest_files(platform, [path]).rows == 2
    before = _snapshot(platform)
    bad = tmp_path / "BAD.csv"
    bad.write_text("date,open,high,low,close,volume\n2024-01-02,1,2,0.5,1.5,10\n"
                   "2024-01-03,1.5,1,2,1.8,12\n")  # high below low
    with pytest.raises(BadInputError):
        ingest_files(platform, [path, bad])
    assert _snapshot(platform) == before


class _Source:
    """Two symbols of hourly bars, handed out in pages; fails after ``fail_after`` pages."""

    name = "fake"

    def __init__(self, bars: int, fail_after: int | None = None) -> None:
        self.bars = bars
        self.fail_after = fail_after

    def symbols(self) -> list[InstrumentSpec]:
        return [InstrumentSpec("AAA", venue="X"), InstrumentSpec("BBB", venue="X")]

    def fetch(self, symbol: str, timeframe: Timeframe, since_ns: int | None,
              page_size: int = 1000) -> Iterator[BarSeries]:
        ts = START + np.arange(self.bars, dtype=np.int64) * timeframe.nanoseconds
        if since_ns is not None:
            ts = ts[ts > since_ns]
        for number, a in enumerate(range(0, len(ts), page_size)):
            if self.fail_after is not None and number >= self.fail_after:
                raise ConnectionError("source went away")
            t = ts[a:a + page_size]
            close = np.ones(len(t))
            yield BarSeries(symbol, t, close, close, close, close, close)


def test_collect_resumes_from_its_cursor(platform: Platform) -> None:
    assert isinstance(_Source(1), MarketDataSource)
    with pytest.raises(ConnectionError):
        collect(platform, _Source(10, fail_after=2), H1, page_size=3)
    assert load_universe(platform, H1).n_bars == 6  # two pages of AAA kept
    assert cursor(platform, "fake", "AAA", H1) == START + 5 * H1.nanoseconds
    assert cursor(platform, "fake", "BBB", H1) is None
    report = collect(platform, _Source(10), H1, page_size=3)
    assert report.rows == 4 + 10
    assert load_universe(platform, H1).n_bars == 20
    with platform.database.read() as uow:
        assert {i.venue for i in uow.instruments.find()} == {"X"}
