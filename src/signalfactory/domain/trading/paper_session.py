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

A bot over several symbols shares its cash between them: `TradingSession.step_all` takes one
time step of every symbol with a bar at that time in the portfolio backtest's order (all
exits, then entries ranked by score), so a bot over a universe trades as `run_portfolio` with
``max_positions`` = its number of symbols (`run_universe_bars` replays stored bars so).

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
from signalfactory.domain.bars import BarUniverse
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.trading.capital import bot_cash, bot_equity
from signalfactory.domain.trading.decisions import (
    NONE,
    QUIET,
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
class SymbolStep:
    """One symbol's part of a time step: its bar, the signals the fill model acts on (and
    the time of the bar they belong to), its ATR there, and the score ranking its entry."""

    symbol: str
    bar: Bar
    signals: BarSignals
    signal_ns: int
    atr: float = math.nan
    score: float = math.nan


@dataclass(frozen=True)
class StepResult:
    #: the decision per symbol stepped (`decisions.NONE`, `CLOSE`, `OPEN_LONG`...)
    actions: tuple[int, ...]
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

    def step(self, symbol: str, bar: Bar, signals: BarSignals, *, signal_ns: int,
             execute: Execute, atr: float = math.nan) -> StepResult:
        """One bar of one symbol: act at its close or open (by ``config.fill``) on
        ``signals`` (the bar's own for ``close``, the previous bar's for ``next_open``), then
        mark its close."""
        return self.step_all([SymbolStep(symbol, bar, signals, signal_ns, atr)],
                             execute=execute)

    def step_all(self, steps: Sequence[SymbolStep], *, execute: Execute) -> StepResult:
        """One time step of a bot over its symbols that have a bar now, in the portfolio
        backtest's order (`domain.backtest.portfolio`): every exit first, then the entries
        ranked by score (best first, NaN last, ties in the given order), each sized on the
        equity and cash of that moment; with ``close`` the bars' closes are marked before the
        entries, with ``next_open`` after them."""
        at_close = self.config.fill == "close"
        intents: list[OrderIntent] = []
        fills: list[Fill] = []
        actions: list[int] = []

        def send(intent: OrderIntent) -> None:
            intents.append(intent)
            got = execute(intent)
            fills.extend(got)
            self.apply(got)

        for st in steps:
            price = st.bar.close if at_close else st.bar.open
            self.quotes.set(st.symbol, price, st.bar.ts_ns)
            held = self.quantity(st.symbol)
            action = decide(held, st.signals, self.config.direction)
            actions.append(action)
            leave = exit_intent(self.ref, symbol=st.symbol, quantity=held, action=action,
                                bar_ns=st.signal_ns, price=price)
            if leave is not None:
                send(leave)
        if at_close:
            self._mark(steps)
        wanted = [(st, a) for st, a in zip(steps, actions, strict=True)
                  if entry_side(a) is not None and self.quantity(st.symbol) == 0.0]
        wanted.sort(key=lambda item: -item[0].score if math.isfinite(item[0].score)
                    else math.inf)
        for st, action in wanted:
            price = st.bar.close if at_close else st.bar.open
            enter = entry_intent(self.ref, symbol=st.symbol, action=action,
                                 bar_ns=st.signal_ns, price=price, equity=self.equity(),
                                 cash=self.cash(), config=self.config, atr=st.atr,
                                 market=self.markets.get(st.symbol))
            if enter is not None:
                send(enter)
        if not at_close:
            self._mark(steps)
        return StepResult(tuple(actions), tuple(intents), tuple(fills), self.equity())

    def close_bar(self, symbol: str, bar: Bar) -> float:
        """Mark the bar's close without acting; returns the bot's equity."""
        self._mark([SymbolStep(symbol, bar, QUIET, bar.ts_ns)])
        return self.equity()

    def _mark(self, steps: Sequence[SymbolStep]) -> None:
        for st in steps:
            self.marks[st.symbol] = st.bar.close
            self.quotes.set(st.symbol, st.bar.close, st.bar.ts_ns)


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
        return StepResult((NONE,), (), (), session.close_bar(symbol, bars.bar(t)))
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


def run_universe_bars(session: TradingSession, universe: BarUniverse, signals: Signals, *,
                      execute: Execute, atr: npt.NDArray[np.float64] | None = None,
                      score: npt.NDArray[np.float64] | None = None) -> EquityCurve:
    """Step a universe's bars (rows as `BarUniverse` lays them out, signals, ATR and score
    aligned with the rows) on the union of their times; the equity marked at each time."""
    n = universe.n_bars
    if len(signals) != n:
        raise BadInputError(f"signals cover {len(signals)} rows, the universe {n}")
    times = np.unique(universe.ts)
    inst = np.repeat(np.arange(universe.n_instruments), universe.lengths())
    step_of_row = np.searchsorted(times, universe.ts)
    order = np.argsort(step_of_row, kind="stable")  # by time, then instrument
    bounds = np.searchsorted(step_of_row[order], np.arange(times.shape[0] + 1))
    at_close = session.config.fill == "close"
    equity = np.empty(times.shape[0], dtype=np.float64)
    for k in range(times.shape[0]):
        steps: list[SymbolStep] = []
        for r in order[bounds[k]:bounds[k + 1]]:
            i = int(inst[r])
            row = int(r) if at_close else int(r) - 1
            first = row < int(universe.offsets[i])
            bar = Bar(int(universe.ts[r]), float(universe.open[r]), float(universe.high[r]),
                      float(universe.low[r]), float(universe.close[r]))
            steps.append(SymbolStep(
                universe.symbols[i], bar, QUIET if first else BarSignals.at(signals, row),
                int(universe.ts[max(row, 0)]),
                atr=math.nan if atr is None or first else float(atr[row]),
                score=math.nan if score is None or first else float(score[row])))
        equity[k] = session.step_all(steps, execute=execute).equity
    return EquityCurve(times, equity, session.allocation)

