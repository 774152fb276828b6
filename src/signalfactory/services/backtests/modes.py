"""How each backtest mode runs, over a validated plan and its bars (see services/backtests/run.py
for the modes' definitions and the use case around them).

Bars arrive as the history up to ``--to``; strategies are evaluated on all of it and the
engine trades only the window from ``--from`` (`Data.in_window`). Large universes go in
batches of instruments (`BATCH_BARS`), each evaluated and simulated on its own, so memory
stays bounded by the bars plus one batch and progress is reported per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import talib

from signalfactory.domain.backtest import Metrics, Signals, compute_metrics
from signalfactory.domain.backtest import engine as single_engine
from signalfactory.domain.backtest.curve_codec import ChunkedRows
from signalfactory.domain.backtest.engine import Trades
from signalfactory.domain.backtest.stored import (
    DataRange,
    EquityCurve,
    Scalars,
    TradeRecord,
    json_scalars,
)
from signalfactory.domain.bars import BarUniverse
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.indicators.slices import each_slice
from signalfactory.domain.strategies import RuleStrategy
from signalfactory.observability.recording import metrics

if TYPE_CHECKING:
    from signalfactory.services.backtests.run import Plan

Progress = Callable[[int, int], None]  # (instruments done, instruments in total)
#: instruments are simulated in batches of at most this many bars (history included)
BATCH_BARS = 2_000_000


# -- bars -----------------------------------------------------------------------------------

def take(u: BarUniverse, keep: np.ndarray) -> BarUniverse:
    """The instruments ``keep`` (indices, in order) of a universe."""
    lengths = np.diff(u.offsets)[keep]
    offsets = np.zeros(len(keep) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    rows = (np.concatenate([np.arange(u.offsets[i], u.offsets[i + 1]) for i in keep])
            if len(keep) else np.zeros(0, dtype=np.int64))
    ids = u.instrument_ids[keep] if u.instrument_ids.shape[0] == u.n_instruments else \
        u.instrument_ids
    return BarUniverse(symbols=tuple(u.symbols[i] for i in keep), offsets=offsets,
                       ts=u.ts[rows], open=u.open[rows], high=u.high[rows], low=u.low[rows],
                       close=u.close[rows], volume=u.volume[rows], instrument_ids=ids)


def span(u: BarUniverse, i: int, j: int) -> BarUniverse:
    """Instruments i..j-1 as a universe (views, no copies)."""
    a, b = int(u.offsets[i]), int(u.offsets[j])
    return BarUniverse(symbols=u.symbols[i:j], offsets=u.offsets[i:j + 1] - a, ts=u.ts[a:b],
                       open=u.open[a:b], high=u.high[a:b], low=u.low[a:b], close=u.close[a:b],
                       volume=u.volume[a:b])


def masked(u: BarUniverse, mask: np.ndarray) -> BarUniverse:
    """The rows where ``mask`` holds, instruments kept in order."""
    before = np.zeros(u.n_bars + 1, dtype=np.int64)
    np.cumsum(mask, out=before[1:])
    return BarUniverse(symbols=u.symbols, offsets=before[u.offsets], ts=u.ts[mask],
                       open=u.open[mask], high=u.high[mask], low=u.low[mask],
                       close=u.close[mask], volume=u.volume[mask],
                       instrument_ids=u.instrument_ids)


@dataclass(frozen=True)
class Data:
    bars: BarUniverse  # history up to --to, only instruments with bars in the window
    start_ns: int | None
    data_range: DataRange

    def in_window(self, u: BarUniverse) -> np.ndarray:
        return in_window(u, self.start_ns)


def in_window(u: BarUniverse, start_ns: int | None) -> np.ndarray:
    """Which bars of ``u`` are traded: those from ``start_ns`` on (all without it)."""
    if start_ns is None:
        return np.ones(u.n_bars, dtype=bool)
    mask: np.ndarray = u.ts >= start_ns
    return mask


# -- signals --------------------------------------------------------------------------------

def evaluate(plan: Plan, u: BarUniverse) -> tuple[Signals, np.ndarray]:
    """Signals and scores over ``u`` (full history); strategy failures are bad input."""
    strategy = plan.strategy
    try:
        ev = (strategy.evaluate(u, values="none") if isinstance(strategy, RuleStrategy)
              else strategy.evaluate(u))
    except BadInputError:
        _count_execution(plan.strategy_name, "failed")
        raise
    except Exception as exc:  # a Python strategy's bug: the user must fix the strategy
        _count_execution(plan.strategy_name, "failed")
        raise BadInputError(f"strategy {plan.strategy_name} failed: {type(exc).__name__}: "
                            f"{exc}; fix the strategy and run again") from exc
    _count_execution(plan.strategy_name, "succeeded")
    if plan.mirror:
        signals = Signals.build(u.n_bars, long_entry=ev.entry, long_exit=ev.exit,
                                short_entry=ev.exit, short_exit=ev.entry)
    else:
        signals = Signals.build(u.n_bars, long_entry=ev.entry, long_exit=ev.exit,
                                short_entry=ev.short_entry, short_exit=ev.short_exit)
    return signals, np.asarray(ev.score, dtype=np.float64)


def atr_of(plan: Plan, u: BarUniverse) -> np.ndarray | None:
    if not plan.config.needs_atr:
        return None
    return each_slice(talib.ATR, [u.high, u.low, u.close], u.offsets, plan.request.atr_period)


def _window_signals(s: Signals, mask: np.ndarray) -> Signals:
    return Signals(s.long_entry[mask], s.long_exit[mask], s.short_entry[mask],
                   s.short_exit[mask])


# -- results --------------------------------------------------------------------------------

REASONS = ("signal", "stop_loss", "take_profit", "trailing_stop", "reversed", "end", "open",
           "liquidated")


def _count_execution(strategy: str, status: str) -> None:
    if (m := metrics()) is not None:
        m.LOGIC_EXECUTIONS.labels(strategy, status).inc()


def trade_rows(trades: Trades, symbols: list[str], ts_of: Callable[[int, np.ndarray],
                                                                   np.ndarray],
               instrument: np.ndarray) -> list[TradeRecord]:
    """Trades as records; ``ts_of(instrument, bar indices)`` maps bars to ns timestamps."""
    out: list[TradeRecord] = []
    if len(trades) == 0:
        return out
    entry_ts = np.empty(len(trades), dtype=np.int64)
    exit_ts = np.empty(len(trades), dtype=np.int64)
    for i in union_of_times(instrument):  # the distinct instruments (np.unique imports np.ma)
        sel = instrument == i
        entry_ts[sel] = ts_of(int(i), trades.entry_idx[sel])
        exit_ts[sel] = ts_of(int(i), trades.exit_idx[sel])
    for k in range(len(trades)):
        out.append(TradeRecord(
            symbol=symbols[int(instrument[k])], entry_ts=int(entry_ts[k]),
            exit_ts=int(exit_ts[k]), size=float(trades.size[k]),
            entry_price=float(trades.entry_price[k]), exit_price=float(trades.exit_price[k]),
            pnl=float(trades.pnl[k]), return_=float(trades.ret[k]),
            fees=float(trades.fees[k]), exit_reason=REASONS[int(trades.reason[k])]))
    return out


@dataclass
class Outcome:
    metrics: Metrics
    final_equity: float
    trades: list[TradeRecord]
    per_symbol: list[Scalars]  # "symbol" and its figures, JSON-ready (`json_scalars`)
    curves: list[EquityCurve]
    #: a split backtest: its trades and per-symbol curves are not in ``trades`` and
    #: ``curves`` but held by its chunks in the database
    chunked: ChunkedRows | None = None

    @property
    def n_trades(self) -> int:
        return self.chunked.n_trades if self.chunked is not None else len(self.trades)


def _times_of(ts: np.ndarray) -> Callable[[int, np.ndarray], np.ndarray]:
    return lambda _instrument, idx: ts[idx]


def _single(plan: Plan, data: Data, progress: Progress | None) -> Outcome:
    u = data.bars
    signals, _score = evaluate(plan, u)
    start = int(np.searchsorted(u.ts, data.start_ns)) if data.start_ns is not None else 0
    result = single_engine.run_backtest(u.open, u.high, u.low, u.close, signals, plan.config,
                        atr=atr_of(plan, u), start=start)
    metrics = result.metrics(u.close, plan.bars_per_year, u.ts)
    trades = trade_rows(result.trades, list(u.symbols), _times_of(u.ts),
                        np.zeros(len(result.trades), dtype=np.int64))
    symbol = u.symbols[0]
    per_symbol: list[Scalars] = [json_scalars({"symbol": symbol, **metrics.as_dict()})]
    if progress is not None:
        progress(1, 1)
    return Outcome(metrics, result.final_equity, trades, per_symbol,
                   [EquityCurve(symbol, u.ts[start:].copy(), result.equity.astype(np.float64))])


def _batches(u: BarUniverse) -> list[tuple[int, int]]:
    """Instrument ranges of at most `BATCH_BARS` bars, and about 20 of them on a large
    universe so that progress moves (a batch still keeps every core busy)."""
    size = min(BATCH_BARS, max(u.n_bars // 20, 100_000))
    out, i, n = [], 0, u.n_instruments
    while i < n:
        j = int(np.searchsorted(u.offsets, int(u.offsets[i]) + size, side="right")) - 1
        j = min(max(j, i + 1), n)
        out.append((i, j))
        i = j
    return out


@dataclass(frozen=True)
class SymbolPart:
    """One instrument's share of a universe backtest: computed on its own (no instrument
    affects another), so it can be computed anywhere and assembled later."""

    symbol: str
    equity: np.ndarray  # float64, one value per bar in the window
    trades: Trades  # bar indices local to the instrument's window bars
    scalars: Scalars  # "symbol" and its figures (`json_scalars`)
    exposure: float
    hold: float  # its buy-and-hold return


TRADE_FIELDS = ("entry_idx", "exit_idx", "entry_price", "exit_price", "size", "pnl", "ret",
                "fees", "reason")


def simulate_span(plan: Plan, bars: BarUniverse, start_ns: int | None, i: int, j: int,
                  progress: Progress | None = None, total: int | None = None
                  ) -> list[SymbolPart]:
    """Instruments i..j-1 of ``bars`` simulated in batches (`_batches`), in order."""
    cash = plan.config.initial_cash
    parts: list[SymbolPart] = []
    for a, b in _batches(span(bars, i, j)):
        sub = span(bars, i + a, i + b)
        signals, _score = evaluate(plan, sub)
        atr = atr_of(plan, sub)
        mask = in_window(sub, start_ns)
        win = masked(sub, mask)
        # imported here: the universe and portfolio kernels load numba, a single symbol's
        # backtest need not (`signalfactory.domain.kernels`)
        from signalfactory.domain.backtest import run_universe

        result = run_universe(win, _window_signals(signals, mask), plan.config,
                              atr=None if atr is None else atr[mask],
                              bars_per_year=plan.bars_per_year, with_metrics=False,
                              keep_equity=True, equity_dtype=np.float64)
        for k, symbol in enumerate(win.symbols):
            lo, hi = int(win.offsets[k]), int(win.offsets[k + 1])
            eq = np.asarray(result.equity[lo:hi], dtype=np.float64)
            own = result.trades_of(k)
            m = compute_metrics(eq, own, win.close[lo:hi], plan.bars_per_year,
                                initial_cash=cash, ts=win.ts[lo:hi])
            parts.append(SymbolPart(symbol, eq, own, json_scalars({"symbol": symbol,
                                                                  **m.as_dict()}),
                                    float(m.exposure), float(m.buy_and_hold_return)))
        if progress is not None:
            progress(i + b, total if total is not None else bars.n_instruments)
    return parts


def union_of_times(ts: np.ndarray) -> np.ndarray:
    """The sorted distinct values of ``ts`` (`np.unique`'s result): a stable sort merges the
    instruments' already sorted runs, several times faster than unique's own sort."""
    ordered = np.sort(ts, kind="stable")
    if ordered.shape[0] == 0:
        return ordered
    keep = np.empty(ordered.shape[0], dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    out: np.ndarray = ordered[keep]
    return out


def window_ts(win: BarUniverse, k: int) -> np.ndarray:
    """Instrument ``k``'s traded times (``win``: the bars in the window)."""
    ts: np.ndarray = win.ts[int(win.offsets[k]):int(win.offsets[k + 1])]
    return ts


def part_rows(part: SymbolPart, ts: np.ndarray) -> tuple[list[TradeRecord], EquityCurve]:
    """An instrument's trades as stored records and its equity curve (``ts``: its traded
    times)."""
    return (trade_rows(part.trades, [part.symbol], _times_of(ts),
                       np.zeros(len(part.trades), dtype=np.int64)),
            EquityCurve(part.symbol, ts.copy(), part.equity))


def assemble_universe(plan: Plan, data: Data, parts: Iterable[SymbolPart], *,
                      rows: bool = True) -> Outcome:
    """The universe's outcome from its instruments' parts, given in instrument order: one
    sequence of float operations whoever computed the parts, so the numbers are the same.

    ``rows`` False leaves the instruments' trade records and curves out (a split backtest's
    chunks stored them): the outcome has the aggregate curve alone and no trades."""
    full = data.bars
    win = masked(full, data.in_window(full))
    times = union_of_times(win.ts)
    return assemble_window(plan, win.symbols, times, np.searchsorted(times, win.ts),
                           win.offsets, parts, rows=rows)


def assemble_window(plan: Plan, symbols: Sequence[str], times: np.ndarray,
                    positions: np.ndarray, offsets: np.ndarray, parts: Iterable[SymbolPart],
                    *, rows: bool = True) -> Outcome:
    """`assemble_universe` from the traded times alone, no bar: ``times`` are all the
    instruments' (`union_of_times`), and instrument ``k`` (``symbols[k]``) trades at
    ``times[positions[offsets[k]:offsets[k + 1]]]``."""
    cash = plan.config.initial_cash
    n_instruments = len(symbols)
    # sum over symbols of (equity - cash), forward-filled, built from per-bar changes
    changes = np.zeros(times.shape[0] + 1)
    trades: list[TradeRecord] = []
    per_symbol: list[Scalars] = []
    curves: list[EquityCurve] = []
    trade_parts: list[Trades] = []
    exposures: list[float] = []
    holds: list[float] = []
    k = -1
    for k, part in enumerate(parts):
        if k >= n_instruments or part.symbol != symbols[k]:
            raise ValueError(f"universe part {k} is {part.symbol!r}, expected "
                             f"{symbols[k] if k < n_instruments else 'none'}")
        pos = positions[int(offsets[k]):int(offsets[k + 1])]
        eq = part.equity
        per_symbol.append(part.scalars)
        exposures.append(part.exposure)
        holds.append(part.hold)
        step = np.diff(eq - cash, prepend=0.0)
        np.add.at(changes, pos, step)
        trade_parts.append(part.trades)
        if rows:
            own, curve = part_rows(part, times[pos])
            trades.extend(own)
            curves.append(curve)
    if k + 1 != n_instruments:
        raise ValueError(f"{k + 1} universe parts for {n_instruments} instruments")
    n = float(n_instruments)
    aggregate = cash + np.cumsum(changes[:-1]) / n
    all_trades = Trades(*(np.concatenate([getattr(t, f) for t in trade_parts])
                          for f in TRADE_FIELDS))
    metrics = compute_metrics(aggregate, all_trades, None, plan.bars_per_year,
                              initial_cash=cash, ts=times,
                              buy_and_hold_return=float(np.mean(holds)),
                              exposure=float(np.mean(exposures)), trade_bars_are_local=True)
    curves.append(EquityCurve("", times, aggregate))
    return Outcome(metrics, float(aggregate[-1]), trades, per_symbol, curves)


def _universe(plan: Plan, data: Data, progress: Progress | None) -> Outcome:
    full = data.bars
    if progress is not None:
        progress(0, full.n_instruments)
    parts = simulate_span(plan, full, data.start_ns, 0, full.n_instruments, progress)
    return assemble_universe(plan, data, parts)


def _portfolio(plan: Plan, data: Data, progress: Progress | None) -> Outcome:
    full = data.bars
    total = full.n_instruments
    if progress is not None:
        progress(0, total)
    parts: list[tuple[Signals, np.ndarray, np.ndarray | None]] = []
    for i, j in _batches(full):
        sub = span(full, i, j)
        signals, score = evaluate(plan, sub)
        parts.append((signals, score, atr_of(plan, sub)))
        if progress is not None:
            progress(j, total)  # evaluation is the long part; the simulation is one pass
    signals = Signals(*(np.concatenate([getattr(p[0], f) for p in parts]) for f in (
        "long_entry", "long_exit", "short_entry", "short_exit")))
    score = np.concatenate([p[1] for p in parts])
    atr = np.concatenate([p[2] for p in parts if p[2] is not None]) if plan.config.needs_atr \
        else None
    max_positions = plan.request.max_positions
    if max_positions is None:  # Plan.mode picks this mode only with a limit
        raise ValueError("a portfolio backtest needs max_positions")
    mask = data.in_window(full)
    win = masked(full, mask)
    from signalfactory.domain.backtest import run_portfolio

    result = run_portfolio(win, _window_signals(signals, mask), plan.config,
                           max_positions=max_positions, score=score[mask],
                           atr=None if atr is None else atr[mask])
    metrics = result.metrics(plan.bars_per_year)
    entry_ts = win.ts[win.offsets[result.instrument] + result.trades.entry_idx]
    order = np.lexsort((result.instrument, entry_ts))  # by entry time, then instrument
    ordered = Trades(*(getattr(result.trades, f)[order] for f in (
        "entry_idx", "exit_idx", "entry_price", "exit_price", "size", "pnl", "ret", "fees",
        "reason")))
    trades = trade_rows(ordered, list(win.symbols),
                        lambda i, idx: win.ts[int(win.offsets[i]) + idx],
                        result.instrument[order])
    per_symbol: list[Scalars] = []
    for k, symbol in enumerate(win.symbols):
        sel = result.instrument == k
        pnl = result.trades.pnl[sel]
        per_symbol.append(json_scalars({"symbol": symbol, "n_trades": int(sel.sum()),
                                        "pnl": float(pnl.sum()),
                                        "win_rate": float((pnl > 0).mean())
                                        if pnl.shape[0] else None}))
    return Outcome(metrics, result.final_equity, trades, per_symbol,
                   [EquityCurve("", result.times, result.equity)])


MODES: dict[str, Callable[[Plan, Data, Progress | None], Outcome]] = {
    "single": _single, "universe": _universe, "portfolio": _portfolio}
