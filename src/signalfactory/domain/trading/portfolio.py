"""Portfolio figures of bots, tenants and the whole platform, by the backtest's definitions.

- **PnL**: realised (net of fees, from positions), unrealised ``q * (mark - average)``.
- **Equity curves**: a bot's equity marked once per bar (`EquityCurve`); a tenant's or the
  platform's is the sum of its bots' curves on the union of their times, each bot's last
  value carried forward and its starting equity counted before its first mark
  (`combine_curves`). `daily_curve` keeps the last mark of each UTC day, for figures of
  curves whose bots run on different timeframes.
- **Figures** (`figures`): total return, CAGR, volatility, Sharpe, Sortino, max drawdown, VaR
  and CVaR 95 (historical), computed by `domain.backtest.metrics.curve_figures`, the code
  backtests use, so a paper bot and its backtest report the same numbers for the same curve.
- **Round trips** (`round_trips`): fills replayed into trades from flat to flat, comparable
  with a backtest's trades (entry and exit at average prices, PnL net of both sides' fees).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

from signalfactory.domain.backtest.metrics import CurveFigures, curve_figures
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.timestamps import datetime_to_ns
from signalfactory.domain.trading.decisions import apply_fill, flat
from signalfactory.domain.trading.orders import Fill, Position

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
DAY_NS = 86_400 * 1_000_000_000


def realised_pnl(positions: Iterable[Position]) -> float:
    return sum(p.realised_pnl for p in positions)


def unrealised_pnl(positions: Iterable[Position], marks: Mapping[str, float]) -> float:
    """``q * (mark - average)`` over positions with a mark (others count 0)."""
    total = 0.0
    for p in positions:
        mark = marks.get(p.symbol)
        if mark is not None and p.quantity != 0.0:
            total += p.quantity * (mark - p.average_price)
    return total


@dataclass(frozen=True, eq=False)
class EquityCurve:
    """Equity marked at times ``ts`` (ns, increasing), starting from ``initial``."""

    ts: IntArray
    equity: FloatArray
    initial: float

    def __post_init__(self) -> None:
        if self.ts.shape != self.equity.shape or self.ts.ndim != 1:
            raise BadInputError("an equity curve needs one time per equity value")
        if self.ts.shape[0] > 1 and not bool(np.all(np.diff(self.ts) > 0)):
            raise BadInputError("equity curve times must increase")

    @classmethod
    def of(cls, points: Sequence[tuple[int, float]], initial: float) -> EquityCurve:
        ts = np.fromiter((p[0] for p in points), dtype=np.int64, count=len(points))
        eq = np.fromiter((p[1] for p in points), dtype=np.float64, count=len(points))
        return cls(ts, eq, initial)

    def __len__(self) -> int:
        return int(self.ts.shape[0])


def combine_curves(curves: Sequence[EquityCurve]) -> EquityCurve:
    """The sum of several curves on the union of their times (see the module docstring)."""
    if not curves:
        raise BadInputError("no equity curves to combine")
    times = np.unique(np.concatenate([c.ts for c in curves]))
    total = np.zeros(times.shape[0], dtype=np.float64)
    for c in curves:
        # index of the curve's last mark at or before each time (-1: before its first)
        k = np.searchsorted(c.ts, times, side="right") - 1
        values = np.where(k >= 0, c.equity[np.maximum(k, 0)], c.initial)
        total += values
    return EquityCurve(times, total, float(sum(c.initial for c in curves)))


def daily_curve(curve: EquityCurve) -> EquityCurve:
    """The last mark of each UTC day, stamped with that mark's time."""
    if len(curve) == 0:
        return curve
    day = curve.ts // DAY_NS
    last = np.flatnonzero(np.r_[day[1:] != day[:-1], True])
    return EquityCurve(curve.ts[last], curve.equity[last], curve.initial)


def figures(curve: EquityCurve, bars_per_year: float) -> CurveFigures:
    """Return and risk figures of a curve (the backtest's `curve_figures`)."""
    return curve_figures(curve.equity, bars_per_year, initial_cash=curve.initial, ts=curve.ts)


def bar_returns(curve: EquityCurve) -> FloatArray:
    """``E_t / E_{t-1} - 1`` per mark, the first against the initial equity."""
    prev = np.r_[curve.initial, curve.equity[:-1]]
    returns: FloatArray = curve.equity / prev - 1.0
    return returns


@dataclass(frozen=True)
class PortfolioFigures:
    """What a bot, a tenant or the platform reports."""

    equity: float
    realised_pnl: float
    unrealised_pnl: float
    figures: CurveFigures | None  # None until there is a mark


def portfolio_figures(curve: EquityCurve, positions: Iterable[Position],
                      marks: Mapping[str, float], bars_per_year: float) -> PortfolioFigures:
    held = list(positions)
    equity = float(curve.equity[-1]) if len(curve) else curve.initial
    return PortfolioFigures(equity=equity, realised_pnl=realised_pnl(held),
                            unrealised_pnl=unrealised_pnl(held, marks),
                            figures=figures(curve, bars_per_year) if len(curve) else None)


# -- round trips -------------------------------------------------------------------------------

@dataclass(frozen=True)
class RoundTrip:
    """A position from flat to flat. ``size`` signed (its largest extent); prices are
    averages; ``pnl`` net of every fee paid on the way; an open trip is valued at ``mark``
    (``exit_price``), its exit fee not yet paid (a backtest's trade still open)."""

    symbol: str
    entry_at: datetime
    exit_at: datetime | None
    size: float
    entry_price: float
    exit_price: float
    pnl: float
    fees: float
    is_open: bool

    @property
    def entry_ns(self) -> int:
        return datetime_to_ns(self.entry_at)

    @property
    def exit_ns(self) -> int | None:
        return None if self.exit_at is None else datetime_to_ns(self.exit_at)


@dataclass
class _Trip:
    entry_at: datetime
    size: float
    entry_price: float
    realised_before: float
    fees: float = 0.0
    exit_qty: float = 0.0
    exit_value: float = 0.0


def round_trips(fills: Iterable[Fill], *, bot_id: int = 0, base_currency: str | None = None,
                marks: Mapping[str, float] | None = None) -> list[RoundTrip]:
    """Fills (in execution order) replayed into round trips, in the order they opened.

    A fill that crosses zero closes one trip and opens the next at its price (its fee goes to
    the trip it closes). Trips still open are valued at ``marks`` (NaN without a mark)."""
    positions: dict[str, Position] = {}
    trips: dict[str, _Trip] = {}
    done: list[tuple[int, RoundTrip]] = []
    order = 0
    opened: dict[str, int] = {}
    for fill in fills:
        before = positions.get(fill.symbol) or flat(bot_id, fill.symbol, fill.executed_at)
        after = apply_fill(before, fill, bot_id=bot_id, base_currency=base_currency)
        positions[fill.symbol] = after
        q0, q1 = before.quantity, after.quantity
        trip = trips.get(fill.symbol)
        if trip is None and q1 != 0.0:
            trips[fill.symbol] = _Trip(fill.executed_at, q1, after.average_price,
                                       before.realised_pnl, fees=_fee_of(fill, base_currency))
            opened[fill.symbol] = order
            order += 1
            continue
        if trip is None:
            continue
        trip.fees += _fee_of(fill, base_currency)
        if q1 != 0.0 and (q0 > 0) == (q1 > 0):
            if abs(q1) > abs(q0):  # added to the position
                trip.size = q1
                trip.entry_price = after.average_price
            else:
                closed = abs(q0) - abs(q1)
                trip.exit_qty += closed
                trip.exit_value += closed * fill.price
            continue
        # back to flat, or through it
        trip.exit_qty += abs(q0)
        trip.exit_value += abs(q0) * fill.price
        realised_now = after.realised_pnl
        done.append((opened[fill.symbol], RoundTrip(
            symbol=fill.symbol, entry_at=trip.entry_at, exit_at=fill.executed_at,
            size=trip.size, entry_price=trip.entry_price,
            exit_price=trip.exit_value / trip.exit_qty, pnl=realised_now - trip.realised_before,
            fees=trip.fees, is_open=False)))
        del trips[fill.symbol]
        if q1 != 0.0:  # crossed zero: the rest opens a new trip
            trips[fill.symbol] = _Trip(fill.executed_at, q1, after.average_price,
                                       after.realised_pnl)
            opened[fill.symbol] = order
            order += 1
    for symbol, trip in trips.items():
        p = positions[symbol]
        mark = (marks or {}).get(symbol, math.nan)
        done.append((opened[symbol], RoundTrip(
            symbol=symbol, entry_at=trip.entry_at, exit_at=None, size=trip.size,
            entry_price=trip.entry_price, exit_price=mark,
            pnl=p.realised_pnl - trip.realised_before + p.quantity * (mark - p.average_price),
            fees=trip.fees, is_open=True)))
    done.sort(key=lambda item: item[0])
    return [trip for _, trip in done]


def _fee_of(fill: Fill, base_currency: str | None) -> float:
    if base_currency is not None and fill.fee_currency == base_currency:
        return fill.fee * fill.price
    return fill.fee
