"""The in-memory live windows equal the stored window after every commit: appended, late,
rewritten and out-of-order bars, a new instrument, another writer in between, a restart.

Each write's window is taken the way live evaluation takes it (``live.load_window``, from
memory when the windows cover it) and compared with the store read the way it was before the
windows existed; the windows' whole content is compared with the store too. Runs on SQLite and
PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from signalfactory.domain.bar_columns import BarColumns
from signalfactory.domain.bars import FIELDS, BarUniverse
from signalfactory.domain.instruments import InstrumentSpec
from signalfactory.domain.synthetic import business_days
from signalfactory.domain.timeframes import Timeframe
from signalfactory.services.marketdata.bars import BarsWritten, SymbolBars, write_bars
from signalfactory.services.marketdata.live_window import FULL
from signalfactory.services.platform import Platform
from signalfactory.services.signals import live
from signalfactory.services.strategies.catalog import add_strategy, instantiate

DAY = Timeframe.parse("1d")
LOOKBACK = 20
START_NS = 1_577_836_800 * 1_000_000_000  # 2020-01-01
DAYS = business_days(START_NS, 700)


def _bars(symbol: str, ts: Sequence[int], level: float = 100.0) -> SymbolBars:
    t = np.asarray(ts, dtype=np.int64)
    close = level + np.arange(t.size, dtype=np.float64) % 7
    return SymbolBars(InstrumentSpec(symbol), t, close - 0.5, close + 1.0, close - 1.0, close,
                      np.full(t.size, 1e4))


def _stored_window(platform: Platform, written: BarsWritten,
                   lookback: int = LOOKBACK) -> BarUniverse:
    """The window as live evaluation read it before the windows: a store read from the
    warm-up start, in full when an instrument has too little history before its new bars."""
    ids = np.array(sorted(written.first_new), dtype=np.int64)
    span = (live.warmup_bars(lookback) * 3 // 2 + 7) * DAY.nanoseconds
    start = min(written.first_new.values()) - span
    with platform.database.read(primary=True) as uow:
        symbols = uow.instruments.symbols(written.first_new)
        universe = uow.bars.load(DAY, symbols, ids, start)
        for k, ident in enumerate(universe.instrument_ids.tolist()):
            ts = universe.ts[universe.offsets[k]:universe.offsets[k + 1]]
            if int(np.searchsorted(ts, written.first_new[ident])) < lookback + 1:
                return uow.bars.load(DAY, symbols, ids, None)
        return universe


def _assert_same(got: BarUniverse, want: BarUniverse) -> None:
    assert got.symbols == want.symbols
    np.testing.assert_array_equal(got.instrument_ids, want.instrument_ids)
    np.testing.assert_array_equal(got.offsets, want.offsets)
    for name in ("ts", *FIELDS):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)


def _assert_held_equals_store(platform: Platform) -> None:
    held = platform.live_windows.held(DAY)
    if held is None:
        return
    cols, floors = held
    with platform.database.read(primary=True) as uow:
        for ident, floor in floors.items():
            stored = uow.bars.read_columns(DAY, np.array([ident], dtype=np.int64),
                                           None if floor == FULL else floor)
            mine = cols.take(cols.instrument_id == ident)
            for name in ("instrument_id", "ts", *FIELDS):
                np.testing.assert_array_equal(getattr(mine, name), getattr(stored, name),
                                              err_msg=f"instrument {ident} {name}")


class WindowCheck:
    """A bar subscriber comparing each write's live window with the store's."""

    def __init__(self) -> None:
        self.checked = 0

    def __call__(self, platform: Platform, written: BarsWritten) -> None:
        got = live.load_window(platform, written, written.symbols, LOOKBACK)
        _assert_same(got, _stored_window(platform, written))
        _assert_held_equals_store(platform)
        self.checked += 1


def _watching(platform: Platform) -> WindowCheck:
    check = WindowCheck()
    platform.bar_subscribers[:] = [check]
    return check


def _write(platform: Platform, *batches: SymbolBars) -> None:
    write_bars(platform, DAY, list(batches), source="test")


@pytest.mark.timeout(120)
def test_live_window_equals_the_stored_window_after_every_commit(platform: Platform) -> None:
    check = _watching(platform)
    names = ["AAA", "BBB", "CCC", "DDD"]
    _write(platform, *(_bars(s, DAYS[:600], 50.0 + k) for k, s in enumerate(names)))
    for day in range(600, 604):  # the live case: everyone's next bar
        _write(platform, *(_bars(s, [DAYS[day]], 60.0 + day % 3) for s in names))
    hits = platform.live_windows.hits
    assert hits >= 3, "appended bars are served from memory"
    _write(platform, _bars("AAA", [DAYS[604]]), _bars("BBB", [DAYS[604]]))  # a subset
    _write(platform, _bars("CCC", [DAYS[603] + 3_600 * 10**9]))  # late, between two bars
    _write(platform, _bars("DDD", [DAYS[602]], level=999.0))  # a rewritten bar: newest wins
    _write(platform, _bars("AAA", [DAYS[606], DAYS[605]][::-1]),  # both, one out of order
           _bars("BBB", [DAYS[605]]))
    _write(platform, _bars("CCC", [DAYS[100]], level=1.0))  # far behind every window
    _write(platform, _bars("EEE", DAYS[590:607]))  # new, short of history: read in full
    _write(platform, *(_bars(s, [DAYS[607]]) for s in [*names, "EEE"]))
    assert check.checked == 12
    assert platform.live_windows.hits > hits


@pytest.mark.timeout(120)
def test_another_writer_and_a_restart_drop_the_windows(platform: Platform) -> None:
    from signalfactory.bootstrap import build_platform

    check = _watching(platform)
    _write(platform, _bars("AAA", DAYS[:300]), _bars("BBB", DAYS[:300]))
    _write(platform, _bars("AAA", [DAYS[300]]), _bars("BBB", [DAYS[300]]))
    assert platform.live_windows.held(DAY) is not None
    other = build_platform()  # another process writing the same store
    try:
        other.bar_subscribers.clear()
        _write(other, _bars("AAA", [DAYS[301]], level=7.0), _bars("BBB", [DAYS[299]], level=3.0))
        # The next write's ingest id does not follow the last one seen here: windows dropped,
        # this write's window read from the store (it must hold the other writer's bars).
        misses = platform.live_windows.misses
        _write(platform, _bars("AAA", [DAYS[302]]), _bars("BBB", [DAYS[302]]))
        assert platform.live_windows.misses == misses + 1
    finally:
        other.close()
    restarted = build_platform()
    try:
        assert restarted.live_windows.held(DAY) is None
        again = _watching(restarted)
        _write(restarted, _bars("AAA", [DAYS[303]]), _bars("BBB", [DAYS[303]]))
        _write(restarted, _bars("AAA", [DAYS[304]]), _bars("BBB", [DAYS[304]]))
        assert again.checked == 2 and restarted.live_windows.hits == 1
    finally:
        restarted.close()
    assert check.checked == 3


@pytest.mark.timeout(120)
def test_signals_from_memory_equal_signals_from_the_store(platform: Platform) -> None:
    """A recursive indicator (EMA) depends on where its window starts: the records a write
    yields from the memory window are those of the stored window, record for record."""
    with platform.database.write() as uow:
        add_strategy(uow, 1, "trend", rule_text="entry: close > ema(close, 10)\n"
                                                "exit: close < ema(close, 10)")
    with platform.database.read() as uow:
        (stored,) = live.watched_strategies(uow, DAY)
    strategy = instantiate(stored, platform, "live")
    lookback = int(strategy.required_lookback)
    found: list[object] = []

    def compare(p: Platform, written: BarsWritten) -> None:
        mine = live.new_records(strategy, live.load_window(p, written, written.symbols,
                                                           lookback), written.first_new)
        assert mine == live.new_records(strategy, _stored_window(p, written, lookback),
                                        written.first_new)
        found.extend(mine)

    platform.bar_subscribers[:] = [compare]
    rng = np.random.default_rng(5)
    _write(platform, _bars("AAA", DAYS[:200]), _bars("BBB", DAYS[:200]))
    for day in range(200, 230):
        _write(platform, *(_bars(s, [DAYS[day]], 95.0 + 10 * rng.random())
                           for s in ("AAA", "BBB")))
    assert found and platform.live_windows.hits >= 25


@pytest.mark.timeout(120)
def test_evaluation_overlapped_with_the_commit_stores_what_the_store_window_gives(
        platform: Platform) -> None:
    """With ``live_overlap`` on, once the windows hold the timeframe, each write is evaluated
    while it commits; its new signals are those of the stored window."""
    platform.bar_preparers[:] = [live.prepare_new_bars]  # as bootstrap wires it when on
    with platform.database.write() as uow:
        add_strategy(uow, 1, "trend", rule_text="entry: close > ema(close, 10)\n"
                                                "exit: close < ema(close, 10)")
    with platform.database.read() as uow:
        (stored,) = live.watched_strategies(uow, DAY)
    strategy = instantiate(stored, platform, "live")
    lookback = int(strategy.required_lookback)
    reports: list[live.LiveReport] = []

    def evaluate(p: Platform, written: BarsWritten) -> None:
        want = {(r.instrument, r.ts) for r in live.new_records(
            strategy, _stored_window(p, written, lookback), written.first_new)}
        report = live.evaluate_new_bars(p, written)
        assert report is not None
        if len(written.first_new) == 2:  # an append: every record is on a new bar
            assert report.signals_new == len(want)
        reports.append(report)

    platform.bar_subscribers[:] = [evaluate]
    rng = np.random.default_rng(8)
    _write(platform, _bars("AAA", DAYS[:200]), _bars("BBB", DAYS[:200]))
    for day in range(200, 230):
        _write(platform, *(_bars(s, [DAYS[day]], 95.0 + 10 * rng.random())
                           for s in ("AAA", "BBB")))
    assert sum(r.overlapped for r in reports) >= 28 and reports[-1].overlapped
    # A late rewrite starts its window before what the commits kept held (they trim to where
    # the next append's window starts): evaluated after the commit, from the store.
    _write(platform, _bars("BBB", [DAYS[215]], level=500.0))
    assert sum(r.signals_new for r in reports) > 0
    assert not reports[-1].overlapped


def test_merging_keeps_the_stores_rule_newest_write_wins() -> None:
    from signalfactory.services.marketdata.live_window import LiveWindows

    windows = LiveWindows()
    ts = np.array(DAYS[:5], dtype=np.int64)
    first = BarColumns(np.ones(5, dtype=np.int64), ts, *(np.arange(5.0) for _ in FIELDS))
    windows.committed(DAY, first, 1)
    windows.fill(DAY, windows.generation, first, np.array([1], dtype=np.int64), int(ts[0]))
    rewrite = BarColumns(np.ones(2, dtype=np.int64), ts[[1, 4]],
                         *(np.array([10.0, 40.0]) for _ in FIELDS))
    windows.committed(DAY, rewrite, 2)
    held = windows.held(DAY)
    assert held is not None
    np.testing.assert_array_equal(held[0].close, [0.0, 10.0, 2.0, 3.0, 40.0])
    windows.committed(DAY, rewrite, 4)  # a gap: another writer committed ingest 3
    assert windows.held(DAY) is None


def test_appends_trim_the_held_bars_to_the_next_window_which_is_served_without_a_copy(
) -> None:
    from signalfactory.services.marketdata.live_window import LiveWindows

    windows = LiveWindows()
    ts = np.array(DAYS[:50], dtype=np.int64)
    two = np.repeat(np.array([1, 2], dtype=np.int64), 50)
    first = BarColumns(two, np.tile(ts, 2), *(np.arange(100.0) for _ in FIELDS))
    windows.committed(DAY, first, 1)
    windows.fill(DAY, windows.generation, first, np.array([1, 2], dtype=np.int64), None)
    span = 10 * DAY.nanoseconds

    def append(day: int, ingest: int) -> BarColumns | None:
        new = BarColumns(np.array([1, 2], dtype=np.int64), np.full(2, DAYS[day]),
                         *(np.full(2, float(day)) for _ in FIELDS))
        windows.committed(DAY, new, ingest)
        return windows.window(DAY, {1: DAYS[day], 2: DAYS[day]}, DAYS[day] - span, 5)

    got = append(50, 2)  # no window served yet: nothing known to trim to, a copy is cut
    held = windows.held(DAY)
    assert got is not None and held is not None and got.ts is not held[0].ts
    assert set(held[1].values()) == {FULL}
    got = append(51, 3)  # trimmed to this window's start in the merge: served as held
    held = windows.held(DAY)
    assert got is not None and held is not None
    assert got.ts is held[0].ts and set(held[1].values()) == {DAYS[51] - span}
    days = np.array(DAYS[:52], dtype=np.int64)
    want = days[days >= DAYS[51] - span]
    np.testing.assert_array_equal(got.ts, np.tile(want, 2))
    np.testing.assert_array_equal(got.instrument_id, np.repeat([1, 2], len(want)))
    np.testing.assert_array_equal(got.close[got.ts == DAYS[51]], [51.0, 51.0])
    np.testing.assert_array_equal(got.close[got.ts == DAYS[50]], [50.0, 50.0])
    # A window reaching further back than what is held: the store is read.
    assert windows.window(DAY, {1: DAYS[51]}, DAYS[30], 5) is None
