"""Performance metrics of one backtest, computed with numpy from its equity curve and trades.

Definitions (``E_t`` = equity marked at the close of bar *t*, ``E_-1`` = initial cash,
``n`` = number of bars, ``B`` = bars per year):

- bar return ``r_t = E_t / E_{t-1} - 1`` for every bar (the first against the initial cash);
- ``total_return = E_{n-1} / E_-1 - 1``; ``years = n / B``;
  ``cagr = (1 + total_return) ** (1 / years) - 1`` (``-1`` when equity ends at or below zero);
- ``volatility = std(r, ddof=1) * sqrt(B)``; ``sharpe = mean(r) / std(r, ddof=1) * sqrt(B)``
  (risk-free rate 0); ``sortino = mean(r) / sqrt(mean(min(r, 0) ** 2)) * sqrt(B)``;
- drawdown ``d_t = 1 - E_t / max(E_-1..E_t)``; ``max_drawdown = max d_t`` (a positive fraction);
  ``max_drawdown_bars``: the longest peak-to-recovery stretch (to the last bar if equity never
  recovered), ``max_drawdown_seconds`` the same stretch in time when timestamps are given;
  ``calmar = cagr / max_drawdown``;
- ``var_95 = -q_5%(r)``, historical, on bar returns, ``q`` interpolated linearly between the
  order statistics ``k = floor(0.05 (n - 1))`` and ``k + 1`` (``numpy.percentile``'s default,
  which is empyrical's ``value_at_risk``); ``cvar_95 = -mean`` of the ``k + 1`` lowest bar
  returns (empyrical's ``conditional_value_at_risk``); both reported as positive loss
  fractions (0.02 = a 2 % loss on a bad bar);
- trade statistics use closed trades (a position still open at the end is in ``n_trades`` as
  ``open_trades`` but not in win rate, profit factor, expectancy or holding time):
  ``win_rate`` = share with ``pnl > 0``; ``profit_factor`` = gross profit / gross loss
  (inf with no losing trade); ``expectancy`` = mean pnl per trade in cash;
  ``avg_trade_return`` = mean of per-trade returns; ``avg_holding_bars`` = mean exit - entry bar;
- ``exposure`` = share of bars whose close found a position open;
- ``buy_and_hold_return = close[-1] / close[0] - 1`` over the same bars, without costs.

Annualisation: ``B`` is a parameter; `bars_per_year` maps a bar length to it. Stock calendars
count 252 sessions of 6.5 hours a year (1d -> 252, 1h -> 1638, 1w -> 52); crypto calendars
trade around the clock (1d -> 365, 1h -> 8760, 1w -> 52.14).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from signalfactory.domain.backtest._core import R_OPEN, T_ENTRY_IDX, T_EXIT_IDX, T_PNL, T_REASON
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.kernels import kernel

if TYPE_CHECKING:
    from signalfactory.domain.backtest.engine import Trades

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Calendar = Literal["stock", "crypto"]
SECONDS_PER_DAY = 86_400
STOCK_SESSION_SECONDS = 6.5 * 3600
STOCK_DAYS_PER_YEAR = 252
CRYPTO_DAYS_PER_YEAR = 365


def bars_per_year(timeframe_seconds: int, calendar: Calendar = "stock") -> float:
    """How many bars of this length a year holds (the annualisation factor B)."""
    if timeframe_seconds <= 0:
        raise BadInputError("a timeframe must be a positive number of seconds")
    if calendar == "crypto":
        return CRYPTO_DAYS_PER_YEAR * SECONDS_PER_DAY / timeframe_seconds
    if calendar != "stock":
        raise BadInputError(f"calendar {calendar!r} is not valid; use stock or crypto")
    if timeframe_seconds >= 7 * SECONDS_PER_DAY:
        return 52.0 * 7 * SECONDS_PER_DAY / timeframe_seconds
    if timeframe_seconds >= SECONDS_PER_DAY:
        return STOCK_DAYS_PER_YEAR * SECONDS_PER_DAY / timeframe_seconds
    return STOCK_DAYS_PER_YEAR * STOCK_SESSION_SECONDS / timeframe_seconds


@dataclass(frozen=True)
class Metrics:
    total_return: float
    cagr: float
    volatility: float
    sharpe: float
    sortino: float
    calmar: float
    max_drawdown: float
    max_drawdown_bars: int
    max_drawdown_seconds: float
    var_95: float
    cvar_95: float
    win_rate: float
    profit_factor: float
    expectancy: float
    avg_trade_return: float
    exposure: float
    n_trades: int
    open_trades: int
    avg_holding_bars: float
    avg_holding_seconds: float
    buy_and_hold_return: float
    final_equity: float
    n_bars: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


@kernel(cache=True, nogil=True)
def ratio_nb(num: float, den: float) -> float:
    """num / den for a non-negative denominator: nan for 0/0, +-inf for x/0."""
    if den > 0.0:
        return num / den
    if num == 0.0 or math.isnan(num) or math.isnan(den):
        return np.nan
    return np.inf if num > 0.0 else -np.inf


def _ratio(num: float, den: float) -> float:
    return float(ratio_nb(num, den))


# error_model="numpy": float division yields inf/nan instead of raising ZeroDivisionError,
# which keeps the check (and its branch) out of the per-bar loop.
@kernel(cache=True, nogil=True, error_model="numpy")
def equity_pass_nb(equity: np.ndarray, initial: float,
                   neg_out: np.ndarray) -> tuple[float, float, float, float, int, int, float,
                                                 int, int]:
    """Everything metrics need from the curve, in one read of it.

    Returns (sum r, sum r^2, sum of squared negative r, sum of negative r, negative count,
    zero count, max drawdown, peak position, end position of the longest stretch under water;
    positions count the initial cash as 0 and bar t as t + 1). Negative returns are copied
    into ``neg_out`` (one slot per bar, or empty for none) packed at its start: the 5 % tail
    lives there. Long curves make memory
    traffic the cost, so there is no per-bar returns array and no second pass.
    """
    n = equity.shape[0]
    keep = neg_out.shape[0] > 0
    prev = initial
    s1 = 0.0
    s2 = 0.0
    down = 0.0
    neg_sum = 0.0
    n_neg = 0
    n_zero = 0
    peak = initial
    peak_pos = 0
    max_dd = 0.0
    best_len = 0
    best_peak = 0
    best_end = 0
    for t in range(n):
        e = equity[t]
        r = e / prev - 1.0
        prev = e
        s1 += r
        s2 += r * r
        # branch-free on the sign of r: a coin flip per bar would mispredict half the time
        loss = min(r, 0.0)
        down += loss * loss
        neg_sum += loss
        if keep:
            neg_out[n_neg] = r  # kept only if negative: the count below moves on
        n_neg += r < 0.0
        n_zero += r == 0.0
        j = t + 1
        if e >= peak:
            if j - 1 - peak_pos > 0 and j - peak_pos > best_len:
                best_len = j - peak_pos
                best_peak = peak_pos
                best_end = j
            peak = e
            peak_pos = j
        elif e < peak * (1.0 - max_dd):  # a deeper trough: only then pay for a division
            max_dd = 1.0 - e / peak
    if n - peak_pos > best_len:  # still under water at the last bar
        best_peak = peak_pos
        best_end = n
    return s1, s2, down, neg_sum, n_neg, n_zero, max_dd, best_peak, best_end


@kernel(cache=True, nogil=True)
def moments_nb(s1: float, s2: float, down: float, n: int) -> tuple[float, float, float]:
    """(mean, sample std, downside deviation) from the sums of `equity_pass_nb`.

    The one-pass variance formula loses nothing that matters here: bar returns have a mean
    far below their spread, so ``s2 - s1 * mean`` does not cancel.
    """
    if n == 0:
        return np.nan, np.nan, np.nan
    mean = s1 / n
    std = math.sqrt(max(s2 - s1 * mean, 0.0) / (n - 1)) if n > 1 else np.nan
    return mean, std, math.sqrt(down / n)


def drawdown_stats(equity: FloatArray, initial: float,
                   ts: IntArray | None) -> tuple[float, int, float]:
    """(max drawdown fraction, longest peak-to-recovery in bars, the same in seconds)."""
    stats = equity_pass_nb(np.ascontiguousarray(equity, dtype=np.float64), initial, _NO_BUF)
    return _drawdown_from(stats, equity.shape[0], ts)


def _drawdown_from(stats: tuple[Any, ...], n: int,
                   ts: IntArray | None) -> tuple[float, int, float]:
    max_dd, p, end = float(stats[6]), int(stats[7]), int(stats[8])
    seconds = math.nan
    if end == p:
        seconds = 0.0
    elif ts is not None and ts.shape[0] == n:
        # position j is the close of bar j - 1; position 0 (the start) is dated at bar 0
        seconds = float(ts[end - 1] - ts[max(p - 1, 0)]) / 1e9
    return max_dd, end - p, seconds


_NO_BUF = np.zeros(0, dtype=np.float64)


# Columns of the summary rows computed inside universe and sweep kernels (no curve kept)
SUMMARY_FIELDS: tuple[str, ...] = (
    "final_equity", "total_return", "cagr", "volatility", "sharpe", "sortino", "max_drawdown",
    "calmar", "win_rate", "profit_factor", "expectancy", "exposure", "n_trades")
N_SUMMARY = len(SUMMARY_FIELDS)


@kernel(cache=True, nogil=True)
def summary_nb(equity: np.ndarray, trades: np.ndarray, initial: float, bars_per_year: float,
               out: np.ndarray) -> None:
    """The `SUMMARY_FIELDS` of one run into ``out``, with `compute_metrics`' definitions
    (``trades``: the run's trade rows)."""
    n = equity.shape[0]
    out[:] = np.nan
    out[12] = trades.shape[0]
    if n == 0:
        return
    final = equity[n - 1]
    out[0] = final
    out[1] = final / initial - 1.0
    years = n / bars_per_year
    cagr = (final / initial) ** (1.0 / years) - 1.0 if final > 0.0 else -1.0
    out[2] = cagr
    s1, s2, down, _, _, _, max_dd, _, _ = equity_pass_nb(equity, initial,
                                                         np.empty(0, dtype=np.float64))
    mean, std, downside = moments_nb(s1, s2, down, n)
    ann = math.sqrt(bars_per_year)
    out[3] = std * ann
    out[4] = ratio_nb(mean, std) * ann
    out[5] = ratio_nb(mean, downside) * ann
    out[6] = max_dd
    out[7] = ratio_nb(cagr, max_dd)
    wins = 0
    closed = 0
    gross_win = 0.0
    gross_loss = 0.0
    held = 0.0
    for j in range(trades.shape[0]):
        span = trades[j, T_EXIT_IDX] - trades[j, T_ENTRY_IDX]
        if trades[j, T_REASON] == R_OPEN:
            held += span + 1.0
            continue
        held += span
        closed += 1
        pnl = trades[j, T_PNL]
        if pnl > 0.0:
            wins += 1
            gross_win += pnl
        elif pnl < 0.0:
            gross_loss -= pnl
    if closed > 0:
        out[8] = wins / closed
        out[9] = ratio_nb(gross_win, gross_loss)
        out[10] = (gross_win - gross_loss) / closed
    out[11] = min(held / n, 1.0)


def lerp(a: float, b: float, t: float) -> float:
    """``a + (b - a) t`` exactly as numpy's percentile interpolates (from the nearer end)."""
    diff = b - a
    return b - diff * (1.0 - t) if t >= 0.5 else a + diff * t


def value_at_risk(returns: FloatArray, cutoff: float = 0.05) -> tuple[float, float]:
    """(``cutoff`` quantile of ``returns`` interpolated linearly, mean of the
    ``floor(cutoff (n - 1)) + 1`` lowest returns): historical VaR and CVaR as return
    fractions (negative for losses), the definitions of the module docstring; NaN for none.

    Robust to many equal values: flat stretches give long runs of exactly-zero returns, on
    which numpy's introselect degrades badly (50 ms instead of 2 ms on a million bars), so the
    sign classes are split first and only the part holding the lowest values is partitioned.
    """
    r = np.asarray(returns, dtype=np.float64)
    n = r.shape[0]
    if n == 0:
        return math.nan, math.nan
    position = cutoff * (n - 1)
    k = math.floor(position)
    wanted = min(k + 2, n)  # the order statistics k and k + 1, and everything below them
    low = _lowest(r[r < 0.0], wanted)
    if low.shape[0] < wanted:
        zeros = min(int(np.count_nonzero(r == 0.0)), wanted - low.shape[0])
        low = np.concatenate([low, np.zeros(zeros)])
    if low.shape[0] < wanted:
        low = np.concatenate([low, _lowest(r[r > 0.0], wanted - low.shape[0])])
    kth = [k, k + 1] if k + 1 < n else [k]
    low.partition(kth)
    a = float(low[k])
    q = lerp(a, float(low[k + 1]), position - k) if k + 1 < n else a
    return q, float(low[: k + 1].mean())


def _lowest(values: FloatArray, m: int) -> FloatArray:
    """The ``m`` lowest of ``values`` (all of them if there are fewer), in no order."""
    if values.shape[0] <= m:
        return values.copy()
    return np.partition(values, m - 1)[:m]


def _tail(equity: FloatArray, initial: float, neg: FloatArray,
          stats: tuple[Any, ...]) -> tuple[float, float]:
    """(5 % quantile of bar returns, mean of the lowest ones), as `value_at_risk`."""
    n = equity.shape[0]
    n_neg = int(stats[4])
    position = 0.05 * (n - 1)
    k = math.floor(position)
    if n_neg > k + 1:  # the usual case: the tail is made of losing bars only
        losses = neg[:n_neg]
        losses.partition([k, k + 1])
        q = lerp(float(losses[k]), float(losses[k + 1]), position - k)
        return q, float(losses[: k + 1].mean())
    prev = np.empty(n, dtype=np.float64)  # few losing bars: rare, do it plainly
    prev[0] = initial
    prev[1:] = equity[:-1]
    return value_at_risk(equity / prev - 1.0, 0.05)


@dataclass(frozen=True)
class CurveFigures:
    """The figures of an equity curve alone (no trades, no prices): what a trading bot, a
    tenant or the whole platform reports, by the same definitions as a backtest."""

    total_return: float
    cagr: float
    volatility: float
    sharpe: float
    sortino: float
    calmar: float
    max_drawdown: float
    max_drawdown_bars: int
    max_drawdown_seconds: float
    var_95: float
    cvar_95: float
    final_equity: float
    n_bars: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def curve_figures(equity: npt.NDArray[np.floating[Any]], bars_per_year: float, *,
                  initial_cash: float, ts: IntArray | None = None) -> CurveFigures:
    """Return, risk and tail figures of ``equity`` (marked once per bar, starting from
    ``initial_cash``); the definitions are the module docstring's."""
    eq = np.asarray(equity, dtype=np.float64)
    n = eq.shape[0]
    if n == 0:
        raise BadInputError("metrics need at least one bar of equity")
    if not bars_per_year > 0:
        raise BadInputError("bars_per_year must be positive")
    if not initial_cash > 0:
        raise BadInputError("metrics need a positive initial equity")
    final = float(eq[-1])
    total_return = final / initial_cash - 1.0
    years = n / bars_per_year
    cagr = (final / initial_cash) ** (1.0 / years) - 1.0 if final > 0 else -1.0

    neg = np.empty(n, dtype=np.float64)  # only the negative returns get written (and paged)
    stats = equity_pass_nb(eq, initial_cash, neg)
    mean, std, downside = (float(x) for x in moments_nb(stats[0], stats[1], stats[2], n))
    ann = math.sqrt(bars_per_year)
    q, cvar = _tail(eq, initial_cash, neg, stats)
    max_dd, dd_bars, dd_seconds = _drawdown_from(stats, n, ts)
    return CurveFigures(
        total_return=total_return,
        cagr=cagr,
        volatility=std * ann,
        sharpe=_ratio(mean, std) * ann if n > 1 else math.nan,  # std is nan for one bar
        sortino=_ratio(mean, downside) * ann,
        calmar=_ratio(cagr, max_dd),
        max_drawdown=max_dd,
        max_drawdown_bars=dd_bars,
        max_drawdown_seconds=dd_seconds,
        var_95=-q,
        cvar_95=-cvar,
        final_equity=final,
        n_bars=n,
    )


def compute_metrics(equity: npt.NDArray[np.floating[Any]], trades: Trades,
                    close: FloatArray | None, bars_per_year: float, *, initial_cash: float,
                    ts: IntArray | None = None, bar_offset: int = 0,
                    buy_and_hold_return: float | None = None, exposure: float | None = None,
                    trade_bars_are_local: bool = False) -> Metrics:
    """All metrics of one run; ``close`` and ``ts`` cover the same bars as ``equity``.

    Trade bar indices are positions in the arrays the backtest ran on; ``bar_offset`` is the
    index of the first bar of ``equity`` there (the ``start`` of a windowed run). A portfolio
    passes its own ``buy_and_hold_return`` and ``exposure`` (share of bars with any position)
    and ``trade_bars_are_local`` (trade indices count each instrument's own bars, so holding
    time is reported in bars only).
    """
    n = equity.shape[0]
    if close is not None and close.shape[0] != n:
        raise BadInputError(f"close has {close.shape[0]} bars, equity {n}")
    if close is None and buy_and_hold_return is None:
        raise BadInputError("metrics need the close prices or a buy-and-hold return")
    curve = curve_figures(equity, bars_per_year, initial_cash=initial_cash, ts=ts)

    open_mask = trades.is_open
    closed_pnl = trades.pnl[~open_mask]
    n_closed = int(closed_pnl.shape[0])
    gross_win = float(closed_pnl[closed_pnl > 0].sum())
    gross_loss = -float(closed_pnl[closed_pnl < 0].sum())
    held = trades.exit_idx - trades.entry_idx + open_mask.astype(np.int64)
    hold_closed = (trades.exit_idx - trades.entry_idx)[~open_mask]
    avg_hold = float(hold_closed.mean()) if n_closed else math.nan
    avg_hold_seconds = math.nan
    if ts is not None and n_closed and not trade_bars_are_local:
        if ts.shape[0] != n:
            raise BadInputError(f"ts has {ts.shape[0]} bars, equity {n}")
        spans = (ts[trades.exit_idx[~open_mask] - bar_offset]
                 - ts[trades.entry_idx[~open_mask] - bar_offset])
        avg_hold_seconds = float(spans.mean()) / 1e9
    return Metrics(
        total_return=curve.total_return,
        cagr=curve.cagr,
        volatility=curve.volatility,
        sharpe=curve.sharpe,
        sortino=curve.sortino,
        calmar=curve.calmar,
        max_drawdown=curve.max_drawdown,
        max_drawdown_bars=curve.max_drawdown_bars,
        max_drawdown_seconds=curve.max_drawdown_seconds,
        var_95=curve.var_95,
        cvar_95=curve.cvar_95,
        win_rate=float(np.count_nonzero(closed_pnl > 0)) / n_closed if n_closed else math.nan,
        profit_factor=_ratio(gross_win, gross_loss) if n_closed else math.nan,
        expectancy=float(closed_pnl.mean()) if n_closed else math.nan,
        avg_trade_return=float(trades.ret[~open_mask].mean()) if n_closed else math.nan,
        exposure=min(float(held.sum()) / n, 1.0) if exposure is None else exposure,
        n_trades=len(trades),
        open_trades=int(np.count_nonzero(open_mask)),
        avg_holding_bars=avg_hold,
        avg_holding_seconds=avg_hold_seconds,
        buy_and_hold_return=(float(close[-1] / close[0] - 1.0) if close is not None
                             else float(buy_and_hold_return or 0.0)),
        final_equity=curve.final_equity,
        n_bars=n,
    )
