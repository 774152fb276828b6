"""Backtest every instrument of a universe independently, in one call, on every core.

Each instrument gets its own cash (``config.initial_cash``) and its own position; results are
per instrument. Work goes chunk by chunk over instruments (``chunk_bars`` bars at a time), so
memory stays bounded by the universe itself plus one chunk of scratch: signals can be built
per chunk by a callable, equity curves are summarised inside the kernel (`SUMMARY_FIELDS`) and
kept only when asked (``keep_equity``, stored as float32 to halve their size unless
``equity_dtype=np.float64`` asks for the exact curve).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from signalfactory.domain.backtest import _core
from signalfactory.domain.backtest.config import F_CASH, BacktestConfig
from signalfactory.domain.backtest.engine import EMPTY_F64, Trades
from signalfactory.domain.backtest.metrics import N_SUMMARY, SUMMARY_FIELDS, summary_nb
from signalfactory.domain.backtest.signals import Signals
from signalfactory.domain.bars import BarUniverse
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.numba_setup import njit, prange

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
SignalSource = Signals | Callable[[BarUniverse], Signals]
DEFAULT_CHUNK_BARS = 4_000_000


@njit(cache=True, parallel=True)
def _universe_nb(offsets: np.ndarray, open_: np.ndarray, high: np.ndarray, low: np.ndarray,
                 close: np.ndarray, le: np.ndarray, lx: np.ndarray, se: np.ndarray,
                 sx: np.ndarray, atr: np.ndarray, fp: np.ndarray, ip: np.ndarray,
                 trade_offsets: np.ndarray, trades: np.ndarray, n_trades: np.ndarray,
                 equity: np.ndarray, with_metrics: bool, keep_equity: bool,
                 equity_keep: np.ndarray, bars_per_year: float, summary: np.ndarray) -> None:
    """One chunk: instrument i covers rows offsets[i]:offsets[i+1] of the chunk arrays.

    ``equity`` is a chunk-long scratch buffer, or empty when neither metrics nor curves are
    wanted (the simulation then records no curve at all).
    """
    n_inst = offsets.shape[0] - 1
    record = equity.shape[0] > 0
    for i in prange(n_inst):
        a = offsets[i]
        b = offsets[i + 1]
        rows = trades[trade_offsets[i]:trade_offsets[i + 1]]
        eq = equity[a:b] if record else equity[0:0]
        k, final = _core.simulate_nb(open_, high, low, close, le, lx, se, sx, atr, fp, ip, a,
                                     b, eq, rows)
        n_trades[i] = k
        if with_metrics:
            summary_nb(eq, rows[:k], fp[F_CASH], bars_per_year, summary[i])
        else:
            summary[i, :] = np.nan
            if b > a:
                summary[i, 0] = final
                summary[i, 1] = final / fp[F_CASH] - 1.0
            summary[i, N_SUMMARY - 1] = k
        if keep_equity:
            for t in range(b - a):
                equity_keep[a + t] = eq[t]


@dataclass(frozen=True)
class UniverseResult:
    """Per-instrument results; trades carry bar indices local to their instrument."""

    symbols: tuple[str, ...]
    summary: FloatArray  # (n_instruments, len(SUMMARY_FIELDS))
    trades: Trades
    trade_offsets: IntArray  # trades of instrument i: trade_offsets[i]:trade_offsets[i+1]
    equity: npt.NDArray[np.floating[Any]]  # CSR like the universe, or empty when not kept

    def column(self, name: str) -> FloatArray:
        values: FloatArray = self.summary[:, SUMMARY_FIELDS.index(name)]
        return values

    @property
    def final_equity(self) -> FloatArray:
        return self.column("final_equity")

    @property
    def total_return(self) -> FloatArray:
        return self.column("total_return")

    def trades_of(self, i: int) -> Trades:
        a, b = int(self.trade_offsets[i]), int(self.trade_offsets[i + 1])
        return Trades(*(getattr(self.trades, f)[a:b] for f in (
            "entry_idx", "exit_idx", "entry_price", "exit_price", "size", "pnl", "ret",
            "fees", "reason")))


def _chunks(offsets: IntArray, chunk_bars: int) -> list[tuple[int, int]]:
    """Instrument ranges [i, j) holding at most ``chunk_bars`` bars (at least one instrument)."""
    out: list[tuple[int, int]] = []
    i = 0
    n = offsets.shape[0] - 1
    while i < n:
        limit = int(offsets[i]) + chunk_bars
        j = int(np.searchsorted(offsets, limit, side="right")) - 1
        j = max(j, i + 1)
        out.append((i, min(j, n)))
        i = min(j, n)
    return out


def _slice_signals(signals: Signals, a: int, b: int) -> Signals:
    return Signals(signals.long_entry[a:b], signals.long_exit[a:b], signals.short_entry[a:b],
                   signals.short_exit[a:b])


def run_universe(universe: BarUniverse, signals: SignalSource, config: BacktestConfig, *,
                 atr: FloatArray | None = None, bars_per_year: float = 252.0,
                 with_metrics: bool = True, keep_equity: bool = False,
                 equity_dtype: type[np.floating[Any]] = np.float32,
                 chunk_bars: int = DEFAULT_CHUNK_BARS) -> UniverseResult:
    """Backtest each instrument on its own cash; ``signals`` are rows aligned with the universe
    or a callable building them for a sub-universe (called once per chunk).

    ``with_metrics=False`` computes only final equity, total return and trade count per
    instrument (the other summary columns are NaN) and records no equity curve at all.
    """
    n_inst = universe.n_instruments
    if isinstance(signals, Signals) and len(signals) != universe.n_bars:
        raise BadInputError(f"signals cover {len(signals)} bars, the universe {universe.n_bars}")
    if config.needs_atr and (atr is None or atr.shape[0] != universe.n_bars):
        raise BadInputError("risk sizing needs an ATR array aligned with the universe rows",
                            rule="size")
    fp, ip = config.kernel_params()
    summary = np.empty((n_inst, len(SUMMARY_FIELDS)), dtype=np.float64)
    equity_keep = np.empty(universe.n_bars if keep_equity else 0, dtype=equity_dtype)
    trade_parts: list[Trades] = []
    counts = np.zeros(n_inst, dtype=np.int64)
    for i, j in _chunks(universe.offsets, max(int(chunk_bars), 1)):
        a, b = int(universe.offsets[i]), int(universe.offsets[j])
        local_offsets = np.ascontiguousarray(universe.offsets[i:j + 1] - a)
        if isinstance(signals, Signals):
            sig = _slice_signals(signals, a, b)
        else:
            sig = signals(_sub_universe(universe, i, j))
            if len(sig) != b - a:
                raise BadInputError(f"the signal callable returned {len(sig)} bars for a chunk "
                                    f"of {b - a}")
        # one trade row per possible entry, plus one, for each instrument
        per_inst = np.ones(j - i, dtype=np.int64)
        for arr in (sig.long_entry, sig.short_entry):
            before = np.searchsorted(np.flatnonzero(arr), local_offsets)
            per_inst += np.diff(before)
        trade_offsets = np.zeros(j - i + 1, dtype=np.int64)
        np.cumsum(per_inst, out=trade_offsets[1:])
        rows = np.empty((int(trade_offsets[-1]), _core.N_TRADE_COLS), dtype=np.float64)
        n_trades = np.zeros(j - i, dtype=np.int64)
        eq = np.empty(b - a if with_metrics or keep_equity else 0, dtype=np.float64)
        chunk_atr = (np.ascontiguousarray(atr[a:b], dtype=np.float64)
                     if config.needs_atr and atr is not None else EMPTY_F64)
        _universe_nb(local_offsets, universe.open[a:b], universe.high[a:b], universe.low[a:b],
                     universe.close[a:b], sig.long_entry, sig.long_exit, sig.short_entry,
                     sig.short_exit, chunk_atr, fp, ip, trade_offsets, rows, n_trades, eq,
                     with_metrics, keep_equity,
                     equity_keep[a:b] if keep_equity else equity_keep,
                     float(bars_per_year), summary[i:j])
        # gather the written rows: instrument m wrote rows trade_offsets[m] + 0..n_trades[m]-1
        inst_of_row = np.repeat(np.arange(j - i), n_trades)
        first_written = np.cumsum(n_trades) - n_trades
        keep = trade_offsets[:-1][inst_of_row] + (np.arange(inst_of_row.shape[0])
                                                  - first_written[inst_of_row])
        chunk_rows = rows[keep]
        # local bar indices: subtract each instrument's first row
        base = local_offsets[:-1][inst_of_row].astype(np.float64)
        chunk_rows[:, _core.T_ENTRY_IDX] -= base
        chunk_rows[:, _core.T_EXIT_IDX] -= base
        trade_parts.append(Trades.from_records(chunk_rows))
        counts[i:j] = n_trades
    all_offsets = np.zeros(n_inst + 1, dtype=np.int64)
    np.cumsum(counts, out=all_offsets[1:])
    return UniverseResult(symbols=universe.symbols, summary=summary,
                          trades=_concat_trades(trade_parts), trade_offsets=all_offsets,
                          equity=equity_keep)


def _concat_trades(parts: list[Trades]) -> Trades:
    if not parts:
        return Trades.from_records(np.zeros((0, _core.N_TRADE_COLS)))
    fields: list[Any] = [np.concatenate([getattr(p, f) for p in parts]) for f in (
        "entry_idx", "exit_idx", "entry_price", "exit_price", "size", "pnl", "ret", "fees",
        "reason")]
    return Trades(*fields)


def _sub_universe(u: BarUniverse, i: int, j: int) -> BarUniverse:
    a, b = int(u.offsets[i]), int(u.offsets[j])
    return BarUniverse(symbols=u.symbols[i:j], offsets=u.offsets[i:j + 1] - a, ts=u.ts[a:b],
                       open=u.open[a:b], high=u.high[a:b], low=u.low[a:b], close=u.close[a:b],
                       volume=u.volume[a:b])


__all__ = ["N_SUMMARY", "SUMMARY_FIELDS", "UniverseResult", "run_universe"]
