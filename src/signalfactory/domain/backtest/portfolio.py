"""Portfolio mode: one cash balance shared by every instrument of a universe.

Bars are aligned on the **union** of the instruments' timestamps: at each timestamp the
instruments that have a bar there are processed, the others keep their last close for
marking. Within one timestamp the order is fixed, so results are deterministic:

1. ``next_open`` only: pending exits fill at the open (freeing cash and slots), then pending
   entries fill at the open in ranking order;
2. protective stops of positions held during the bar (same rules as single mode);
3. this bar's signals: exits (and the closing leg of flips) first; with ``fill="close"`` the
   entries then fill at the close in ranking order, with ``next_open`` they wait for step 1 of
   the instrument's next bar;
4. equity = cash + value of every open position at its last close.

Ranking when more instruments want to enter than there are free slots (``max_positions``) or
cash: higher ``score`` first (the score of the signal bar; NaN counts as lowest); equal scores,
or no score array at all, go by instrument order in the universe. An entry that cannot be
afforded is skipped and the next candidate is tried.

Sizing uses the portfolio's equity (``size_value=0.2`` with ``fraction`` puts a fifth of equity
in each position), never more than the free cash.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from signalfactory.domain.backtest import _core
from signalfactory.domain.backtest._core import (
    A_CLOSE,
    A_FLIP_LONG,
    A_NONE,
    A_OPEN_LONG,
    R_END,
    R_OPEN,
    R_REVERSED,
    R_SIGNAL,
    decide_nb,
    record_trade_nb,
    stop_exit_nb,
    units_nb,
)
from signalfactory.domain.backtest.config import (
    F_CASH,
    F_FEE_FIXED,
    F_FEE_PCT,
    F_SL,
    F_SLIPPAGE,
    F_TP,
    F_TRAIL,
    I_CLOSE_AT_END,
    I_DIRECTION,
    I_FILL,
    BacktestConfig,
)
from signalfactory.domain.backtest.engine import EMPTY_F64, Trades
from signalfactory.domain.backtest.metrics import Metrics, compute_metrics
from signalfactory.domain.backtest.signals import Signals
from signalfactory.domain.bars import BarUniverse
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.numba_setup import njit

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@njit(cache=True, nogil=True, error_model="numpy")
def _close_nb(i: int, row: int, raw: float, reason: int, units: np.ndarray, entry: np.ndarray,
              entry_row: np.ndarray, entry_fee: np.ndarray, row_base: np.ndarray,
              fp: np.ndarray, trades: np.ndarray, inst: np.ndarray, k: int) -> tuple[float, int]:
    """Close instrument i's position at ``raw`` (before slippage); returns (cash delta, k)."""
    u = units[i]
    px = raw * (1.0 - fp[F_SLIPPAGE]) if u > 0.0 else raw * (1.0 + fp[F_SLIPPAGE])
    fee = abs(u) * px * fp[F_FEE_PCT] + fp[F_FEE_FIXED]
    delta = abs(u) * entry[i] + u * (px - entry[i]) - fee
    record_trade_nb(trades, k, entry_row[i] - row_base[i], row - row_base[i], entry[i], px, u,
                    entry_fee[i] + fee, reason)
    inst[k] = i
    units[i] = 0.0
    return delta, k + 1


@njit(cache=True, nogil=True, error_model="numpy")
def _portfolio_nb(order: np.ndarray, step_off: np.ndarray, inst_of_row: np.ndarray,
                  row_base: np.ndarray, open_: np.ndarray, high: np.ndarray, low: np.ndarray,
                  close: np.ndarray, le: np.ndarray, lx: np.ndarray, se: np.ndarray,
                  sx: np.ndarray, score: np.ndarray, atr: np.ndarray, fp: np.ndarray,
                  ip: np.ndarray, max_positions: int, equity_out: np.ndarray,
                  exposed: np.ndarray, trades: np.ndarray, inst: np.ndarray) -> int:
    n_inst = row_base.shape[0]
    has_atr = atr.shape[0] > 0
    at_close = ip[I_FILL] == 0
    has_stops = fp[F_SL] > 0.0 or fp[F_TP] > 0.0 or fp[F_TRAIL] > 0.0
    direction = ip[I_DIRECTION]
    units = np.zeros(n_inst)
    entry = np.zeros(n_inst)
    entry_row = np.zeros(n_inst, dtype=np.int64)
    entry_fee = np.zeros(n_inst)
    extreme = np.zeros(n_inst)
    held_from = np.zeros(n_inst, dtype=np.int64)
    last_close = np.full(n_inst, np.nan)
    last_row = np.full(n_inst, -1, dtype=np.int64)
    pending = np.zeros(n_inst, dtype=np.int64)
    pending_score = np.zeros(n_inst)
    pending_atr = np.zeros(n_inst)
    cand_row = np.empty(n_inst, dtype=np.int64)
    cand_key = np.empty(n_inst)
    cand_act = np.empty(n_inst, dtype=np.int64)
    cash = fp[F_CASH]
    n_open = 0
    k = 0
    for s in range(step_off.shape[0] - 1):
        a = step_off[s]
        b = step_off[s + 1]
        nc = 0
        # 1. next_open: pending exits, then pending entries become candidates at the open
        if not at_close:
            for e in range(a, b):
                r = order[e]
                i = inst_of_row[r]
                act = pending[i]
                if act != A_NONE and units[i] != 0.0:
                    reason = R_SIGNAL if act == A_CLOSE else R_REVERSED
                    d, k = _close_nb(i, r, open_[r], reason, units, entry, entry_row,
                                     entry_fee, row_base, fp, trades, inst, k)
                    cash += d
                    n_open -= 1
                if act != A_NONE and act != A_CLOSE:
                    cand_row[nc] = r
                    cand_key[nc] = pending_score[i]
                    cand_act[nc] = act
                    nc += 1
                pending[i] = A_NONE
        if nc > 0:  # ranked entries at the open, before the bar's stops can apply to them
            cash, n_open = _enter_nb(nc, cand_row, cand_key, cand_act, open_, inst_of_row,
                                     pending_atr, has_atr, True, atr, cash, n_open,
                                     max_positions, units, entry, entry_row, entry_fee,
                                     extreme, held_from, last_close, fp, ip)
            nc = 0
        # 2. protective stops of positions held during this bar
        for e in range(a, b):
            r = order[e]
            i = inst_of_row[r]
            if has_stops and units[i] != 0.0 and held_from[i] <= r:
                raw, reason = stop_exit_nb(units[i], entry[i], extreme[i], open_[r], high[r],
                                           low[r], fp)
                if reason >= 0:
                    d, k = _close_nb(i, r, raw, reason, units, entry, entry_row, entry_fee,
                                     row_base, fp, trades, inst, k)
                    cash += d
                    n_open -= 1
        # 3. this bar's signals: exits now, entries ranked (now at the close, or pending)
        for e in range(a, b):
            r = order[e]
            i = inst_of_row[r]
            if not (le[r] or lx[r] or se[r] or sx[r]):
                continue
            act = decide_nb(units[i], le[r], lx[r], se[r], sx[r], direction)
            if act == A_NONE:
                continue
            if not at_close:
                pending[i] = act
                pending_score[i] = score[r] if score.shape[0] > 0 else 0.0
                pending_atr[i] = atr[r] if has_atr else np.nan
                continue
            if units[i] != 0.0:
                reason = R_SIGNAL if act == A_CLOSE else R_REVERSED
                d, k = _close_nb(i, r, close[r], reason, units, entry, entry_row, entry_fee,
                                 row_base, fp, trades, inst, k)
                cash += d
                n_open -= 1
            if act != A_CLOSE:
                cand_row[nc] = r
                cand_key[nc] = score[r] if score.shape[0] > 0 else 0.0
                cand_act[nc] = act
                nc += 1
        # 4. mark, then entries at the close (ranked)
        for e in range(a, b):
            r = order[e]
            i = inst_of_row[r]
            last_close[i] = close[r]
            last_row[i] = r
            if units[i] != 0.0 and held_from[i] <= r and fp[F_TRAIL] > 0.0:
                if units[i] > 0.0:
                    extreme[i] = max(extreme[i], high[r])
                else:
                    extreme[i] = min(extreme[i], low[r])
        if nc > 0:
            cash, n_open = _enter_nb(nc, cand_row, cand_key, cand_act, close, inst_of_row,
                                     pending_atr, has_atr, False, atr, cash, n_open,
                                     max_positions, units, entry, entry_row, entry_fee,
                                     extreme, held_from, last_close, fp, ip)
        equity = cash
        for i in range(n_inst):
            if units[i] != 0.0:
                equity += abs(units[i]) * entry[i] + units[i] * (last_close[i] - entry[i])
        equity_out[s] = equity
        exposed[s] = n_open > 0
    # positions still open at the end
    for i in range(n_inst):
        if units[i] != 0.0:
            r = last_row[i]
            if ip[I_CLOSE_AT_END] == 1:
                d, k = _close_nb(i, r, close[r], R_END, units, entry, entry_row, entry_fee,
                                 row_base, fp, trades, inst, k)
                cash += d
            else:
                record_trade_nb(trades, k, entry_row[i] - row_base[i], r - row_base[i],
                                entry[i], close[r], units[i], entry_fee[i], R_OPEN)
                inst[k] = i
                k += 1
    if ip[I_CLOSE_AT_END] == 1 and equity_out.shape[0] > 0:
        equity_out[equity_out.shape[0] - 1] = cash
    return k


@njit(cache=True, nogil=True, error_model="numpy")
def _enter_nb(nc: int, cand_row: np.ndarray, cand_key: np.ndarray, cand_act: np.ndarray,
              price: np.ndarray, inst_of_row: np.ndarray, pending_atr: np.ndarray,
              has_atr: bool, from_pending: bool, atr: np.ndarray, cash: float, n_open: int,
              max_positions: int, units: np.ndarray, entry: np.ndarray, entry_row: np.ndarray,
              entry_fee: np.ndarray, extreme: np.ndarray, held_from: np.ndarray,
              last_close: np.ndarray, fp: np.ndarray, ip: np.ndarray) -> tuple[float, int]:
    """Open the ranked candidates while slots and cash last; returns (cash, n_open)."""
    keys = np.empty(nc)
    for c in range(nc):
        key = cand_key[c]
        keys[c] = np.inf if np.isnan(key) else -key  # best score first, NaN last
    ranked = np.argsort(keys, kind="mergesort")  # stable: ties keep instrument order
    for c in ranked:
        if n_open >= max_positions:
            break
        r = cand_row[c]
        i = inst_of_row[r]
        sign = 1.0 if cand_act[c] in (A_OPEN_LONG, A_FLIP_LONG) else -1.0
        px = price[r] * (1.0 + sign * fp[F_SLIPPAGE])
        equity = cash
        for j in range(units.shape[0]):
            if units[j] != 0.0:
                equity += abs(units[j]) * entry[j] + units[j] * (last_close[j] - entry[j])
        atr_t = (pending_atr[i] if from_pending else atr[r]) if has_atr else np.nan
        u = units_nb(equity, cash, px, atr_t, fp, ip)
        if u <= 0.0:
            continue
        fee = u * px * fp[F_FEE_PCT] + fp[F_FEE_FIXED]
        cash -= u * px + fee
        units[i] = sign * u
        entry[i] = px
        entry_row[i] = r
        entry_fee[i] = fee
        extreme[i] = px
        held_from[i] = r if from_pending else r + 1
        n_open += 1
    return cash, n_open


@dataclass(frozen=True)
class PortfolioResult:
    """Equity per union timestamp; trades with instrument-local bar indices."""

    times: IntArray  # the union of the instruments' timestamps (ns, UTC)
    equity: FloatArray
    trades: Trades
    instrument: IntArray  # instrument index of each trade
    final_equity: float
    initial_cash: float
    buy_and_hold_return: float  # equal-weighted mean over instruments, first to last close
    exposure: float  # share of timestamps that ended with at least one position open

    def metrics(self, bars_per_year: float) -> Metrics:
        return compute_metrics(self.equity, self.trades, None, bars_per_year,
                               initial_cash=self.initial_cash, ts=self.times,
                               buy_and_hold_return=self.buy_and_hold_return,
                               exposure=self.exposure, trade_bars_are_local=True)


def run_portfolio(universe: BarUniverse, signals: Signals, config: BacktestConfig, *,
                  max_positions: int, score: FloatArray | None = None,
                  atr: FloatArray | None = None) -> PortfolioResult:
    """Backtest the universe as one account with shared cash; see the module docstring."""
    n = universe.n_bars
    if len(signals) != n:
        raise BadInputError(f"signals cover {len(signals)} bars, the universe {n}")
    if max_positions < 1:
        raise BadInputError("max_positions must be at least 1", rule="max_positions")
    if score is not None and score.shape != (n,):
        raise BadInputError("score needs one value per universe row", rule="score")
    if config.needs_atr and (atr is None or atr.shape != (n,)):
        raise BadInputError("risk sizing needs an ATR array aligned with the universe rows",
                            rule="size")
    times = np.unique(universe.ts)
    step_of_row = np.searchsorted(times, universe.ts)
    order = np.argsort(step_of_row, kind="stable")  # rows by time, ties in instrument order
    step_off = np.searchsorted(step_of_row[order], np.arange(times.shape[0] + 1))
    lengths = universe.lengths()
    inst_of_row = np.repeat(np.arange(universe.n_instruments, dtype=np.int64), lengths)
    capacity = signals.entry_count() + universe.n_instruments + 1
    trades = np.empty((capacity, _core.N_TRADE_COLS), dtype=np.float64)
    inst = np.empty(capacity, dtype=np.int64)
    equity = np.empty(times.shape[0], dtype=np.float64)
    exposed = np.empty(times.shape[0], dtype=np.bool_)
    fp, ip = config.kernel_params()
    k = _portfolio_nb(order, step_off, inst_of_row, universe.offsets[:-1].copy(),
                      universe.open, universe.high, universe.low, universe.close,
                      signals.long_entry, signals.long_exit, signals.short_entry,
                      signals.short_exit, EMPTY_F64 if score is None else
                      np.ascontiguousarray(score, dtype=np.float64),
                      np.ascontiguousarray(atr, dtype=np.float64)
                      if config.needs_atr and atr is not None else EMPTY_F64,
                      fp, ip, int(max_positions), equity, exposed, trades, inst)
    k = int(k)
    nonempty = lengths > 0
    first = universe.close[universe.offsets[:-1][nonempty]]
    last = universe.close[universe.offsets[1:][nonempty] - 1]
    bh = float(np.mean(last / first - 1.0)) if nonempty.any() else 0.0
    return PortfolioResult(times=times, equity=equity, trades=Trades.from_records(trades[:k]),
                           instrument=inst[:k].copy(),
                           final_equity=float(equity[-1]) if equity.shape[0] else
                           config.initial_cash, initial_cash=config.initial_cash,
                           buy_and_hold_return=bh,
                           exposure=float(exposed.mean()) if exposed.shape[0] else 0.0)
