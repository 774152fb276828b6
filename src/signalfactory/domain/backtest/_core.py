"""The numba simulation core: one instrument, one position, bar by bar.

Everything here is compiled (``@kernel(cache=True, nogil=True)``: numba, loaded when a process
needs the speed, see `signalfactory.domain.kernels`) and reads only plain arrays:
prices, four boolean signal arrays, an optional ATR array, and the parameter vectors built by
`BacktestConfig.kernel_params`. Semantics are documented in `config.py`; the order of events
inside bar *t* is what makes look-ahead impossible:

1. ``next_open`` only: the order decided at the end of bar *t - 1* fills at ``open[t]``.
2. Protective stops of a position held during the bar are checked against ``open/high/low[t]``
   with levels known before the bar (gap -> fill at the open; loss side wins a tie).
3. The signals of bar *t* are read and turned into an order: filled now at ``close[t]``
   (``fill="close"``) or kept for step 1 of bar *t + 1*.
4. The trailing extreme is updated with the bar's high/low (only if the position was held
   during the bar), and equity is marked at ``close[t]``.

No step reads an array at an index greater than *t*.
"""

from __future__ import annotations

import math

import numpy as np

from signalfactory.domain.backtest.config import (
    F_ATR_MULT,
    F_CASH,
    F_FEE_FIXED,
    F_FEE_PCT,
    F_SIZE,
    F_SL,
    F_SLIPPAGE,
    F_TP,
    F_TRAIL,
    I_CLOSE_AT_END,
    I_DIRECTION,
    I_FILL,
    I_SIZING,
    I_WHOLE,
)
from signalfactory.domain.kernels import kernel

# Order actions (decided from signals)
A_NONE, A_CLOSE, A_OPEN_LONG, A_OPEN_SHORT, A_FLIP_LONG, A_FLIP_SHORT = 0, 1, 2, 3, 4, 5
# Direction / fill / sizing codes (mirror the IntEnums in config.py)
D_LONG, D_SHORT = 0, 1
FILL_CLOSE = 0
S_FRACTION, S_CASH, S_UNITS, S_RISK = 0, 1, 2, 3
# Exit reasons (mirror ExitReason)
R_SIGNAL, R_SL, R_TP, R_TRAIL, R_REVERSED, R_END, R_OPEN, R_LIQUIDATED = 0, 1, 2, 3, 4, 5, 6, 7
# Columns of the float64 trade record matrix
T_ENTRY_IDX, T_EXIT_IDX, T_ENTRY_PRICE, T_EXIT_PRICE, T_SIZE, T_PNL, T_RET, T_FEES, T_REASON = (
    range(9))
N_TRADE_COLS = 9


@kernel(cache=True, nogil=True, error_model="numpy")
def decide_nb(pos: float, le: bool, lx: bool, se: bool, sx: bool, direction: int) -> int:
    """The order the signals of one bar ask for, given the current signed position.

    Exits win over entries of the same side; a long and a short entry on the same bar cancel
    each other; an opposite entry while in a position flips it (direction ``both`` only).
    """
    el = le and direction != D_SHORT
    es = se and direction != D_LONG
    if el and es:
        el = False
        es = False
    if pos > 0.0:
        if es:
            return A_FLIP_SHORT
        if lx:
            return A_CLOSE
        return A_NONE
    if pos < 0.0:
        if el:
            return A_FLIP_LONG
        if sx:
            return A_CLOSE
        return A_NONE
    if el and not lx:
        return A_OPEN_LONG
    if es and not sx:
        return A_OPEN_SHORT
    return A_NONE


@kernel(cache=True, nogil=True, error_model="numpy")
def units_nb(equity: float, cash: float, price: float, atr_t: float,
             fp: np.ndarray, ip: np.ndarray) -> float:
    """Units to open at ``price`` (already slipped); 0 when the order cannot be afforded."""
    fee = fp[F_FEE_PCT]
    fixed = fp[F_FEE_FIXED]
    size = fp[F_SIZE]
    mode = ip[I_SIZING]
    if mode == S_FRACTION:
        budget = equity * size
    elif mode == S_CASH:
        budget = size
    else:
        budget = cash
    budget = min(budget, cash)
    # Same arithmetic order as vectorbt so whole-unit rounding agrees to the last bit.
    affordable = ((budget - fixed) / (1.0 + fee)) / price
    if mode == S_UNITS:
        units = min(size, affordable)
    elif mode == S_RISK:
        if not (atr_t > 0.0) or math.isinf(atr_t):
            return 0.0
        units = min(size * equity / (atr_t * fp[F_ATR_MULT]), affordable)
    else:
        units = affordable
    if ip[I_WHOLE] == 1:
        units = math.floor(units)
    if not (units > 0.0):
        return 0.0
    return float(units)


@kernel(cache=True, nogil=True, error_model="numpy")
def stop_exit_nb(units: float, entry: float, extreme: float, o: float, h: float, lo: float,
                 fp: np.ndarray) -> tuple[float, int]:
    """(raw exit price, reason) when a protective stop triggers in this bar, else (nan, -1)."""
    sl = fp[F_SL]
    tp = fp[F_TP]
    trail = fp[F_TRAIL]
    if units > 0.0:
        loss = -np.inf
        loss_reason = R_SL
        if sl > 0.0:
            loss = entry * (1.0 - sl)
        if trail > 0.0 and extreme * (1.0 - trail) > loss:
            loss = extreme * (1.0 - trail)
            loss_reason = R_TRAIL
        target = entry * (1.0 + tp) if tp > 0.0 else np.inf
        if o <= loss:
            return o, loss_reason
        if o >= target:
            return o, R_TP
        if lo <= loss:
            return loss, loss_reason
        if h >= target:
            return target, R_TP
    else:
        loss = np.inf
        loss_reason = R_SL
        if sl > 0.0:
            loss = entry * (1.0 + sl)
        if trail > 0.0 and extreme * (1.0 + trail) < loss:
            loss = extreme * (1.0 + trail)
            loss_reason = R_TRAIL
        target = entry * (1.0 - tp) if tp > 0.0 else -np.inf
        if o >= loss:
            return o, loss_reason
        if o <= target:
            return o, R_TP
        if h >= loss:
            return loss, loss_reason
        if lo <= target:
            return target, R_TP
    return np.nan, -1


@kernel(cache=True, nogil=True, error_model="numpy")
def record_trade_nb(trades: np.ndarray, k: int, entry_idx: int, exit_idx: int, entry: float,
                    exit_price: float, units: float, fees: float, reason: int) -> None:
    pnl = units * (exit_price - entry) - fees
    trades[k, T_ENTRY_IDX] = entry_idx
    trades[k, T_EXIT_IDX] = exit_idx
    trades[k, T_ENTRY_PRICE] = entry
    trades[k, T_EXIT_PRICE] = exit_price
    trades[k, T_SIZE] = units
    trades[k, T_PNL] = pnl
    trades[k, T_RET] = pnl / (abs(units) * entry)
    trades[k, T_FEES] = fees
    trades[k, T_REASON] = reason


@kernel(cache=True, nogil=True, error_model="numpy")
def simulate_nb(open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
                le: np.ndarray, lx: np.ndarray, se: np.ndarray, sx: np.ndarray,
                atr: np.ndarray, fp: np.ndarray, ip: np.ndarray, start: int, end: int,
                equity_out: np.ndarray, trades: np.ndarray) -> tuple[int, float]:
    """Simulate bars ``start..end-1``; returns (number of trades written, final equity).

    ``equity_out`` has ``end - start`` slots or none (then equity is not recorded);
    ``atr`` has one value per bar or none (only risk sizing reads it); ``trades`` needs one row
    per possible entry plus one.
    """
    fee = fp[F_FEE_PCT]
    fixed = fp[F_FEE_FIXED]
    slip = fp[F_SLIPPAGE]
    direction = ip[I_DIRECTION]
    at_close = ip[I_FILL] == FILL_CLOSE
    record = equity_out.shape[0] > 0
    has_atr = atr.shape[0] > 0
    has_stops = fp[F_SL] > 0.0 or fp[F_TP] > 0.0 or fp[F_TRAIL] > 0.0
    trails = fp[F_TRAIL] > 0.0

    cash = fp[F_CASH]
    units = 0.0  # signed
    entry = 0.0
    entry_idx = -1
    entry_fee = 0.0
    extreme = 0.0
    held_from = 0  # first bar whose whole range the position was exposed to
    pending = A_NONE
    pending_atr = np.nan
    halted = False
    k = 0
    equity = cash

    t = start
    while t < end:
        # Fast path: with no stops, no pending order and no way to lose more than the equity
        # (flat or long), a bar without signals only marks equity. Same arithmetic as below.
        if not has_stops and pending == A_NONE and units >= 0.0 and not halted:
            base = cash + abs(units) * entry
            if units == 0.0:
                while t < end and not (le[t] | lx[t] | se[t] | sx[t]):
                    if record:
                        equity_out[t - start] = cash
                    t += 1
                equity = cash
            else:
                while t < end and not (le[t] | lx[t] | se[t] | sx[t]):
                    equity = base + units * (close[t] - entry)
                    if record:
                        equity_out[t - start] = equity
                    t += 1
            if t >= end:
                break
        o = open_[t]
        # 1. the order decided at the previous bar fills at this open
        if pending != A_NONE:
            act = pending
            pending = A_NONE
            if units != 0.0:
                px = o * (1.0 - slip) if units > 0.0 else o * (1.0 + slip)
                exit_fee = abs(units) * px * fee + fixed
                cash += abs(units) * entry + units * (px - entry) - exit_fee
                reason = R_SIGNAL if act == A_CLOSE else R_REVERSED
                record_trade_nb(trades, k, entry_idx, t, entry, px, units, entry_fee + exit_fee,
                                reason)
                k += 1
                units = 0.0
            if act != A_CLOSE:
                sign = 1.0 if act in (A_OPEN_LONG, A_FLIP_LONG) else -1.0
                px = o * (1.0 + sign * slip)
                u = units_nb(cash, cash, px, pending_atr, fp, ip)
                if u > 0.0:
                    entry_fee = u * px * fee + fixed
                    cash -= u * px + entry_fee
                    units = sign * u
                    entry = px
                    extreme = px
                    entry_idx = t
                    held_from = t
        # 2. protective stops, with levels known before this bar
        if has_stops and units != 0.0 and held_from <= t:
            raw, reason = stop_exit_nb(units, entry, extreme, o, high[t], low[t], fp)
            if reason >= 0:
                px = raw * (1.0 - slip) if units > 0.0 else raw * (1.0 + slip)
                exit_fee = abs(units) * px * fee + fixed
                cash += abs(units) * entry + units * (px - entry) - exit_fee
                record_trade_nb(trades, k, entry_idx, t, entry, px, units, entry_fee + exit_fee,
                                reason)
                k += 1
                units = 0.0
        # 3. this bar's signals
        if not halted and (le[t] or lx[t] or se[t] or sx[t]):
            act = decide_nb(units, le[t], lx[t], se[t], sx[t], direction)
            if act != A_NONE:
                if not at_close:
                    pending = act
                    pending_atr = atr[t] if has_atr else np.nan
                else:
                    c = close[t]
                    if units != 0.0:
                        px = c * (1.0 - slip) if units > 0.0 else c * (1.0 + slip)
                        exit_fee = abs(units) * px * fee + fixed
                        cash += abs(units) * entry + units * (px - entry) - exit_fee
                        reason = R_SIGNAL if act == A_CLOSE else R_REVERSED
                        record_trade_nb(trades, k, entry_idx, t, entry, px, units,
                                        entry_fee + exit_fee, reason)
                        k += 1
                        units = 0.0
                    if act != A_CLOSE:
                        sign = 1.0 if act in (A_OPEN_LONG, A_FLIP_LONG) else -1.0
                        px = c * (1.0 + sign * slip)
                        u = units_nb(cash, cash, px, atr[t] if has_atr else np.nan, fp, ip)
                        if u > 0.0:
                            entry_fee = u * px * fee + fixed
                            cash -= u * px + entry_fee
                            units = sign * u
                            entry = px
                            extreme = px
                            entry_idx = t
                            held_from = t + 1
        # 4. trailing extreme and equity at the close
        if units != 0.0:
            if trails and held_from <= t:
                extreme = max(extreme, high[t]) if units > 0.0 else min(extreme, low[t])
            c = close[t]
            equity = cash + abs(units) * entry + units * (c - entry)
            if equity <= 0.0 and not halted:
                px = c * (1.0 - slip) if units > 0.0 else c * (1.0 + slip)
                exit_fee = abs(units) * px * fee + fixed
                cash += abs(units) * entry + units * (px - entry) - exit_fee
                record_trade_nb(trades, k, entry_idx, t, entry, px, units, entry_fee + exit_fee,
                                R_LIQUIDATED)
                k += 1
                units = 0.0
                halted = True
                pending = A_NONE
                equity = cash
        else:
            equity = cash
        if record:
            equity_out[t - start] = equity
        t += 1

    # The position still open after the last bar
    if units != 0.0 and end > start:
        t = end - 1
        c = close[t]
        if ip[I_CLOSE_AT_END] == 1:
            px = c * (1.0 - slip) if units > 0.0 else c * (1.0 + slip)
            exit_fee = abs(units) * px * fee + fixed
            cash += abs(units) * entry + units * (px - entry) - exit_fee
            record_trade_nb(trades, k, entry_idx, t, entry, px, units, entry_fee + exit_fee,
                            R_END)
            equity = cash
            if record:
                equity_out[t - start] = equity
        else:
            record_trade_nb(trades, k, entry_idx, t, entry, c, units, entry_fee, R_OPEN)
        k += 1
    return k, equity
