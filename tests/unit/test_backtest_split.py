"""Splitting a universe backtest: chunk sizes from the work estimate, chunk results carried
as bytes without losing a bit, and the counter row counting a chunk once."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import numpy as np
import pytest

from signalfactory.domain.backtest.engine import Trades
from signalfactory.domain.bars import BarUniverse
from signalfactory.services.backtests import split
from signalfactory.services.backtests.modes import (
    Data,
    SymbolPart,
    in_window,
    masked,
    span,
    union_of_times,
)
from signalfactory.services.backtests.split import (
    bars_digest,
    chunk_ranges,
    decode_parts,
    encode_parts,
    join_traded_times,
    simulation_rate,
    split_wanted,
    traded_times,
)
from signalfactory.settings import Settings
from signalfactory.testing.job_splits import MemorySplitRepository
from signalfactory.testing.memory import MemoryState


def universe(lengths: list[int]) -> BarUniverse:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    n = int(offsets[-1])
    col = np.linspace(1.0, 2.0, n)
    return BarUniverse(symbols=tuple(f"S{i}" for i in range(len(lengths))), offsets=offsets,
                       ts=np.arange(n, dtype=np.int64), open=col, high=col, low=col,
                       close=col, volume=col)


@pytest.mark.parametrize("lengths", [[300] * 10, [50, 2000, 10, 900, 40, 40, 1000],
                                     list(range(1, 200))])
def test_chunks_cover_the_universe_in_order_each_with_at_least_the_target(
        lengths: list[int]) -> None:
    u = universe(lengths)
    ranges = chunk_ranges(u, 1.0, 1000.0)
    assert ranges[0][0] == 0 and ranges[-1][1] == u.n_instruments
    assert all(a < b for a, b in ranges)
    assert all(b == c for (_, b), (c, _) in itertools.pairwise(ranges))
    work = [int(u.offsets[b] - u.offsets[a]) for a, b in ranges]
    assert len(ranges) >= 2
    assert min(work) >= 1000  # 1 s at 1,000 bars/s
    assert sum(work) == u.n_bars


def test_less_than_two_chunks_of_work_is_not_split() -> None:
    assert chunk_ranges(universe([600, 1300]), 1.0, 1000.0) == [(0, 2)]
    assert len(chunk_ranges(universe([600, 1300]), 1.0, 600.0)) == 2
    assert chunk_ranges(universe([600, 1300]), 2.0, 600.0) == [(0, 2)]
    # more parameter sets are more work per bar
    assert len(chunk_ranges(universe([600, 1300]), 1.0, 1000.0, parameter_sets=3)) == 2


@pytest.mark.parametrize("seconds", [0.005, 10.0])
def test_the_rate_is_timed_on_real_work_after_a_warm_up(
        monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    # a fake simulation: 1 ms of fixed cost and 2,000,000 bars/s, its first run 5 s slower
    u = universe([1000] * 80)
    now, runs = [0.0], []

    def simulate(_plan: object, bars: BarUniverse, _start: object, i: int, j: int,
                 *_rest: object) -> list[SymbolPart]:
        runs.append((i, j))
        now[0] += (5.0 if len(runs) == 1 else 0.0) + 0.001 + \
            float(bars.offsets[j] - bars.offsets[i]) / 2e6
        return []

    monkeypatch.setattr(split, "simulate_span", simulate)
    monkeypatch.setattr(split, "encode_parts", lambda *_args: b"")
    monkeypatch.setattr(split, "chunk_rows", lambda *_args: ([], []))
    data = Data(bars=u, start_ns=None, data_range=None)  # type: ignore[arg-type]
    rate = simulation_rate(None, data, seconds, clock=lambda: now[0])  # type: ignore[arg-type]
    last = runs[-1][1]
    took = 0.001 + last * 1000 / 2e6
    assert runs[:2] == [(0, 1), (0, 1)] and all(i == 0 for i, _ in runs)
    assert runs[-2] == runs[-1]  # the last size timed twice
    if seconds < 1:  # the run that counts lasted the seconds asked for, and not 3 times more
        assert seconds <= took < 3 * seconds and len(runs) <= 7
    else:  # at most an eighth of the universe
        assert last == 10
    # the warm-up's 5 s do not count; the fixed cost does (chunks err long, not short)
    assert rate == pytest.approx(last * 1000 / took)
    assert rate < 2e6


def test_split_is_on_with_celery_unless_told() -> None:
    assert not split_wanted(Settings())
    assert split_wanted(Settings(broker_url="redis://127.0.0.1:6379/15"))
    assert not split_wanted(Settings(broker_url="redis://127.0.0.1:6379/15", split="never"))
    assert split_wanted(Settings(split="always"))
    with pytest.raises(ValueError, match="split_chunk_seconds"):
        Settings(split_chunk_seconds=0.5)


def test_parts_round_trip_bit_for_bit() -> None:
    rng = np.random.default_rng(3)

    def trades(n: int) -> Trades:
        return Trades(rng.integers(0, 99, n), rng.integers(0, 99, n), rng.random(n),
                      rng.random(n), rng.standard_normal(n), rng.standard_normal(n) * 1e-17,
                      rng.random(n), rng.random(n), rng.integers(0, 7, n).astype(np.int8))

    parts = [SymbolPart("AAA", rng.standard_normal(50), trades(3),
                        {"symbol": "AAA", "sharpe": 0.1 + 0.2, "n_trades": 3, "cagr": None},
                        0.25, float("nan")),
             SymbolPart("BBB", np.array([np.inf, -0.0, 5e-324]), trades(0),
                        {"symbol": "BBB", "sharpe": 1 / 3}, 0.0, -1.0)]
    back = list(decode_parts(encode_parts(parts, (np.arange(3), np.zeros(53, np.int32)))))
    assert [p.symbol for p in back] == ["AAA", "BBB"]
    for a, b in zip(parts, back, strict=True):
        assert a.equity.tobytes() == b.equity.tobytes()
        assert a.scalars == b.scalars
        assert np.array([a.exposure, a.hold]).tobytes() == np.array([b.exposure,
                                                                     b.hold]).tobytes()
        for name in ("entry_idx", "exit_idx", "entry_price", "exit_price", "size", "pnl",
                     "ret", "fees", "reason"):
            x, y = getattr(a.trades, name), getattr(b.trades, name)
            assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), name


def test_a_chunks_digest_is_the_parents_cut() -> None:
    u = universe([30, 40, 50, 60])
    part = span(u, 1, 3)
    alone = universe([40, 50])
    alone = BarUniverse(symbols=("S1", "S2"), offsets=alone.offsets, ts=u.ts[30:120],
                        open=u.open[30:120], high=u.high[30:120], low=u.low[30:120],
                        close=u.close[30:120], volume=u.volume[30:120])
    assert bars_digest(part) == bars_digest(alone)
    changed = BarUniverse(symbols=alone.symbols, offsets=alone.offsets, ts=alone.ts,
                          open=alone.open, high=alone.high, low=alone.low,
                          close=alone.close + 1e-12, volume=alone.volume)
    assert bars_digest(changed) != bars_digest(part)


def test_the_counter_counts_a_chunk_once() -> None:
    repo = MemorySplitRepository(MemoryState())
    now = datetime(2026, 12, 4, tzinfo=UTC)
    assert repo.create("p", "backtest.chunk", ["c0", "c1"], now, cut='{"chunks": [[0, 1]]}')
    assert not repo.create("p", "backtest.chunk", ["x"], now, cut="{}")
    assert repo.cut("p") == '{"chunks": [[0, 1]]}' and repo.cut("q") is None
    assert repo.started("p", 1) == 1 and repo.started("p", 1) == 2
    assert repo.started("p", 5) == 0
    assert repo.counts("p") == (0, 2) and repo.counts("q") is None
    assert repo.pending("p") == [(0, "c0"), (1, "c1")] and repo.pending("q") == []
    assert repo.complete("p", 1, b"one", 1.5, now) == (1, 2, True)
    assert repo.complete("p", 1, b"again", 1.5, now) == (1, 2, False)  # a zombie's write
    assert repo.pending("p") == [(0, "c0")]
    assert repo.complete("p", 0, b"zero", 1.0, now) == (2, 2, True)
    assert repo.complete("q", 0, b"none", 1.0, now) == (0, 0, False)
    assert repo.counts("p") == (2, 2)
    state = repo.get("p")
    assert state is not None and state.complete
    assert [c.executions for c in state.chunks] == [0, 2]
    assert repo.results("p") == [b"zero", b"one"]
    repo.drop_results("p")
    assert repo.results("p") == [] and repo.pending("p") == []


@pytest.mark.parametrize("runs", [[], [[5]], [[1, 2, 3], [2, 3, 4], [0, 9]], [[3, 3, 3]]])
def test_the_union_of_times_is_uniques_result(runs: list[list[int]]) -> None:
    ts = np.array([t for run in runs for t in run], dtype=np.int64)
    union = union_of_times(ts)
    assert union.dtype == np.int64 and union.tobytes() == np.unique(ts).tobytes()


@pytest.mark.parametrize("start_ns", [None, 150])
def test_the_chunks_traded_times_are_the_universes(start_ns: int | None) -> None:
    # instruments trading at times of their own, some shared, some not
    rng = np.random.default_rng(5)
    times = [np.sort(rng.choice(400, size=n, replace=False)).astype(np.int64)
             for n in (50, 300, 7, 120, 399, 1)]
    u = universe([len(t) for t in times])
    u = BarUniverse(symbols=u.symbols, offsets=u.offsets, ts=np.concatenate(times),
                    open=u.open, high=u.high, low=u.low, close=u.close, volume=u.volume)
    win = masked(u, in_window(u, start_ns))
    expected = union_of_times(win.ts)
    for ranges in ([(0, 6)], [(0, 2), (2, 5), (5, 6)], [(0, 1), (1, 2), (2, 3), (3, 6)]):
        sent = [traded_times(span(u, i, j), start_ns) for i, j in ranges]
        assert all(p.dtype == np.int32 for _, p in sent)
        got, positions = join_traded_times(sent)
        assert got.tobytes() == expected.tobytes()
        assert got[positions].tobytes() == win.ts.tobytes()
        # places in any integer type (as sent, when the chunks share their times)
        assert positions.astype(np.int64).tobytes() == \
            np.searchsorted(expected, win.ts).tobytes()


def test_chunks_trading_at_the_same_times_join_as_any_chunks_do() -> None:
    # every instrument at the same times but the last (a shorter history): the chunks that
    # share their times take the shortcut, the last range does not
    shared = np.arange(0, 3000, 10, dtype=np.int64)
    times = [shared] * 5 + [shared[40:]]
    u = universe([len(t) for t in times])
    u = BarUniverse(symbols=u.symbols, offsets=u.offsets, ts=np.concatenate(times),
                    open=u.open, high=u.high, low=u.low, close=u.close, volume=u.volume)
    for ranges in ([(0, 2), (2, 4), (4, 5)], [(0, 3), (3, 6)], [(0, 1), (1, 5), (5, 6)]):
        got, positions = join_traded_times([traded_times(span(u, i, j), None)
                                            for i, j in ranges])
        covered = span(u, ranges[0][0], ranges[-1][1]).ts
        assert got.tobytes() == shared.tobytes()
        expected = np.searchsorted(shared, covered)
        assert positions.dtype.kind == "i"
        assert positions.astype(np.int64).tobytes() == expected.tobytes()
