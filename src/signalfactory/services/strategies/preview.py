"""Previews: what a rule would signal on one symbol, and indicator expressions over its bars,
without storing anything (the strategy editor's preview and the symbol chart's overlays)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from signalfactory.domain.bars import BarUniverse
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.rules import check_rule, evaluate
from signalfactory.domain.strategies import RuleStrategy, SignalRecord, signal_records
from signalfactory.domain.timeframes import Timeframe
from signalfactory.services.marketdata.bars import load_universe
from signalfactory.services.platform import Platform

F64 = npt.NDArray[np.float64]
#: an expression is evaluated as the score of a rule whose entry never fires
_SCORE_PREFIX = "entry: close < 0; score: "
MAX_OVERLAYS = 5


@dataclass(frozen=True)
class SymbolWindow:
    """The last bars of one symbol (time order) and what was found on them."""

    symbol: str
    timeframe: str
    bars: BarUniverse
    signals: list[SignalRecord]


def last_bars(universe: BarUniverse, n: int) -> BarUniverse:
    """The last ``n`` bars of a one-instrument universe (views, no copy)."""
    if universe.n_bars <= n:
        return universe
    cut = slice(universe.n_bars - n, universe.n_bars)
    return BarUniverse(symbols=universe.symbols, offsets=np.array([0, n], dtype=np.int64),
                       ts=universe.ts[cut], open=universe.open[cut], high=universe.high[cut],
                       low=universe.low[cut], close=universe.close[cut],
                       volume=universe.volume[cut], instrument_ids=universe.instrument_ids)


def symbol_bars(platform: Platform, symbol: str, timeframe: str, last: int) -> BarUniverse:
    """The last ``last`` bars of one symbol; ``NotFoundError`` for an unknown symbol and
    ``BadInputError`` when it has no bars of that timeframe."""
    tf = Timeframe.parse(timeframe)
    universe = load_universe(platform, tf, symbols=[symbol])
    if universe.n_bars == 0:
        raise BadInputError(f"{symbol} has no {tf.name} bars", rule="symbol")
    return last_bars(universe, last)


def preview_rule(platform: Platform, rule_text: str, symbol: str, timeframe: str = "1d",
                 last: int = 500) -> SymbolWindow:
    """Evaluate a rule on a symbol's last bars (with the history its look-back needs before
    them) and return the window with the signals on it. Nothing is stored."""
    strategy = RuleStrategy.from_text("preview", rule_text)
    history = symbol_bars(platform, symbol, timeframe, last + strategy.required_lookback)
    evaluation = strategy.evaluate(history)
    window = last_bars(history, last)
    first_ts = int(window.ts[0])
    return SymbolWindow(symbol, Timeframe.parse(timeframe).name, window,
                        signal_records(evaluation, since_ts=first_ts))


def expression_values(expressions: list[str], bars: BarUniverse) -> dict[str, F64]:
    """Each expression of the rule language (``sma(close, 20)``) over the bars; errors give
    the position inside the expression itself."""
    if len(expressions) > MAX_OVERLAYS:
        raise BadInputError(f"at most {MAX_OVERLAYS} overlays", rule="overlay")
    values: dict[str, F64] = {}
    for text in expressions:
        try:
            rule = check_rule(_SCORE_PREFIX + text)
        except BadInputError as exc:
            position = (exc.position - len(_SCORE_PREFIX)) if exc.position is not None \
                else None
            raise BadInputError(f"overlay {text!r}: " + str(exc.detail).replace(
                f"position {exc.position}", f"position {position}"), rule="overlay",
                position=position) from None
        values[text] = evaluate(rule, bars).score
    return values


def finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
