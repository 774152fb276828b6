"""A bot stepping through bars: signals -> decision -> order intents -> fills -> positions.

The bot runner (paper or live) and the paper-equals-backtest test run this same step. It
follows the engine's order of events (`domain.backtest._core`), so over the same bars and
signals a paper run makes the backtest's trades and marks the backtest's equity:

- ``fill="close"``: at bar *t* the signals of *t* are acted on at ``close[t]``;
- ``fill="next_open"``: at bar *t* the signals of *t - 1* are acted on at ``open[t]`` (the
  position they are decided against is the one held at the end of *t - 1*, as the engine's
  pending order is);
- acting is: decide with the engine's rule, send the exit of the whole position (if the
  decision exits), and only when it filled, size the entry on the cash it left and send it;
- then the bar's close marks equity (cash plus positions at their last closes).

Orders leave through an injected ``execute(intent) -> fills`` (the caller's order path: risk
checks, cash reservation, exchange, storage), so this module stays pure. The prices a paper
exchange fills at come from `TradingSession.quotes`, which each step sets to the price it acts
at and then to the close. Protective stops and liquidation are backtest settings a bot does
not have, so sessions never use them.

A session is rebuilt from stored positions (``positions=``), so a restarted runner continues
where it stopped; intents carry the signal bar's time, hence the same client order ids after
a restart.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from signalfactory.domain.backtest.config import BacktestConfig
from signalfactory.domain.backtest.signals import Signals
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.trading.capital import bot_cash, bot_equity, position_value
from signalfactory.domain.trading.decisions import (
    NONE,
    BarSignals,
    BotRef,
    apply_fill,
    decide,
    entry_intent,
    entry_side,
    exit_intent,
)
from signalfactory.domain.trading.exchange import Market
from signalfactory.domain.trading.orders import Fill, OrderIntent, Position
from signalfactory.domain.trading.portfolio import EquityCurve
from signalfactory.domain.trading.quotes import BarQuotes

Execute = Callable[[OrderIntent], Sequence[Fill]]
"""Send one intent through the order path; returns the fills it got (none if refused)."""


@dataclass(frozen=True)
class Bar:
    ts_ns: int
    open: float
    high: float
    low: float
    close: float


@dataclass(frozen=True)
class StepResult:
    action: int
    intents: tuple[OrderIntent, ...]
    fills: tuple[Fill, ...]
    equity: float


@dataclass
class TradingSession:
    """One bot's trading state: positions, last closes, the quotes a paper exchange reads.

    ``config``: the bot's backtest settings (`decisions.backtest_config`), its
    ``initial_cash`` being the bot's allocation; ``base_currencies``: per symbol, for fees
    charged in the base currency.
    """

    ref: BotRef
    config: BacktestConfig
    positions: dict[str, Position] = field(default_factory=dict)
    markets: Mapping[str, Market] = field(default_factory=dict)
    base_currencies: Mapping[str, str] = field(default_factory=dict)
    marks: dict[str, float] = field(default_factory=dict)
    quotes: BarQuotes = field(default_factory=BarQuotes)

    @classmethod
    def resume(cls, ref: BotRef, config: BacktestConfig, positions: Iterable[Position], *,
               marks: Mapping[str, float] | None = None,
               markets: Mapping[str, Market] | None = None,
               base_currencies: Mapping[str, str] | None = None,
               quotes: BarQuotes | None = None) -> TradingSession:
        """A session from stored positions (and the last closes, and the quotes a paper
        exchange already reads, when there are)."""
        return cls(ref, config, {p.symbol: p for p in positions if p.quantity != 0.0
                                 or p.realised_pnl != 0.0},
                   dict(markets or {}), dict(base_currencies or {}), dict(marks or {}),
                   quotes if quotes is not None else BarQuotes())

    @property
    def allocation(self) -> float:
        return self.config.initial_cash

    def quantity(self, symbol: str) -> float:
        p = self.positions.get(symbol)
        return 0.0 if p is None else p.quantity

    def cash(self) -> float:
        return bot_cash(self.allocation, self.positions.values())

    def equity(self) -> float:
        return bot_equity(self.allocation, self.positions.values(), self.marks)

    def apply(self, fills: Iterable[Fill]) -> None:
        """Move positions by fills (the session's own, or found by reconciliation)."""
        for fill in fills:
            self.positions[fill.symbol] = apply_fill(
                self.positions.get(fill.symbol), fill, bot_id=self.ref.bot_id,
                base_currency=self.base_currencies.get(fill.symbol))

    def act(self, symbol: str, signals: BarSignals, *, price: float, price_ns: int,
            signal_ns: int, execute: Execute, atr: float = math.nan) -> StepResult:
        """Act on one bar's signals at ``price`` (see the module docstring)."""
        self.quotes.set(symbol, price, price_ns)
        held = self.quantity(symbol)
        action = decide(held, signals, self.config.direction)
        if action == NONE:
            return StepResult(action, (), (), math.nan)
        intents: list[OrderIntent] = []
        fills: list[Fill] = []
        leave = exit_intent(self.ref, symbol=symbol, quantity=held, action=action,
                            bar_ns=signal_ns, price=price)
        if leave is not None:
            intents.append(leave)
            got = execute(leave)
            fills.extend(got)
            self.apply(got)
        if entry_side(action) is not None and self.quantity(symbol) == 0.0:
            cash = self.cash()
            others = sum(position_value(p, self.marks.get(s, p.average_price))
                         for s, p in self.positions.items() if s != symbol)
            enter = entry_intent(self.ref, symbol=symbol, action=action, bar_ns=signal_ns,
                                 price=price, equity=cash + others, cash=cash,
                                 config=self.config, atr=atr, market=self.markets.get(symbol))
            if enter is not None:
                intents.append(enter)
                got = execute(enter)
                fills.extend(got)
                self.apply(got)
        return StepResult(action, tuple(intents), tuple(fills), math.nan)

    def close_bar(self, symbol: str, bar: Bar) -> float:
        """Mark the bar's close; returns the bot's equity."""
        self.marks[symbol] = bar.close
        self.quotes.set(symbol, bar.close, bar.ts_ns)
        return self.equity()

    def step(self, symbol: str, bar: Bar, signals: BarSignals, *, signal_ns: int,
             execute: Execute, atr: float = math.nan) -> StepResult:
        """One bar: act at its close or open (by ``config.fill``) on ``signals`` (the bar's
        own for ``close``, the previous bar's for ``next_open``), then mark its close."""
        price = bar.close if self.config.fill == "close" else bar.open
        result = self.act(symbol, signals, price=price, price_ns=bar.ts_ns,
                          signal_ns=signal_ns, execute=execute, atr=atr)
        equity = self.close_bar(symbol, bar)
        return StepResult(result.action, result.intents, result.fills, equity)


@dataclass(frozen=True, eq=False)
class BarArrays:
    """One symbol's bars as the engine reads them."""

    ts: npt.NDArray[np.int64]
    open: npt.NDArray[np.float64]
    high: npt.NDArray[np.float64]
    low: npt.NDArray[np.float64]
    close: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    def bar(self, t: int) -> Bar:
        return Bar(int(self.ts[t]), float(self.open[t]), float(self.high[t]),
                   float(self.low[t]), float(self.close[t]))


def step_at(session: TradingSession, symbol: str, bars: BarArrays, signals: Signals, t: int,
            *, execute: Execute, atr: npt.NDArray[np.float64] | None = None) -> StepResult:
    """The step of bar ``t`` with the signals and ATR of the bar the fill model reads (the
    arrays cover bars up to at least ``t``, computed from data up to each bar)."""
    s = t if session.config.fill == "close" else t - 1
    if s < 0:  # next_open, first bar: nothing decided before it
        return StepResult(NONE, (), (), session.close_bar(symbol, bars.bar(t)))
    return session.step(symbol, bars.bar(t), BarSignals.at(signals, s),
                        signal_ns=int(bars.ts[s]), execute=execute,
                        atr=float(atr[s]) if atr is not None else math.nan)


def run_bars(session: TradingSession, symbol: str, bars: BarArrays, signals: Signals, *,
             execute: Execute, atr: npt.NDArray[np.float64] | None = None, start: int = 0,
             end: int | None = None) -> EquityCurve:
    """Step bars ``start..end-1``; the equity marked at each close, from the allocation."""
    stop = len(bars) if end is None else end
    if len(signals) != len(bars):
        raise BadInputError(f"signals cover {len(signals)} bars, the bars {len(bars)}")
    if not 0 <= start <= stop <= len(bars):
        raise BadInputError(f"window {start}..{stop} is outside the {len(bars)} bars")
    equity = np.empty(stop - start, dtype=np.float64)
    for t in range(start, stop):
        if t == start and session.config.fill == "next_open":
            # a window's first bar has no decision pending from before the window
            equity[0] = session.close_bar(symbol, bars.bar(t))
            continue
        equity[t - start] = step_at(session, symbol, bars, signals, t, execute=execute,
                                    atr=atr).equity
    return EquityCurve(bars.ts[start:stop].copy(), equity, session.allocation)
