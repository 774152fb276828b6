"""Built-in strategies, shipped as rule texts with parameters.

A template's text names its parameters in braces (``sma(close, {fast})``); rendering checks
each value against the parameter's type and range, substitutes it as a number literal (never
as text), and checks the resulting rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from signalfactory.domain.errors import BadInputError
from signalfactory.domain.indicators.spec import Param, ParamValue
from signalfactory.domain.strategies.base import RuleStrategy, StrategyParam

_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
Constraint = Callable[[Mapping[str, ParamValue]], str | None]


@dataclass(frozen=True)
class RuleTemplate:
    name: str
    text: str
    params: tuple[Param, ...]
    description: str
    version: str = "1"
    constraint: Constraint | None = None

    @property
    def defaults(self) -> dict[str, ParamValue]:
        return {p.name: p.default for p in self.params}

    def render(self, overrides: Mapping[str, StrategyParam] | None = None) -> RuleStrategy:
        """A ``RuleStrategy`` with ``overrides`` applied; BadInputError says what is wrong."""
        overrides = dict(overrides or {})
        known = {p.name: p for p in self.params}
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise BadInputError(f"strategy {self.name} has no parameter '{unknown[0]}'; "
                                f"parameters: {', '.join(known)}", rule=self.name)
        values: dict[str, ParamValue] = {}
        for param in self.params:
            raw = overrides.get(param.name, param.default)
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                raise BadInputError(f"parameter '{param.name}' must be a number, "
                                    f"got {raw!r}", rule=self.name)
            values[param.name] = param.check(raw, self.name)
        if self.constraint is not None:
            problem = self.constraint(values)
            if problem:
                raise BadInputError(problem, rule=self.name)
        text = _PLACEHOLDER.sub(lambda m: _literal(values[m.group(1)]), self.text)
        return RuleStrategy.from_text(self.name, text, version=self.version,
                                      parameters=dict(values), description=self.description)


def _literal(value: ParamValue) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


def _period(name: str, default: int, doc: str = "") -> Param:
    return Param(name, "int", default, minimum=1, maximum=10_000, doc=doc)


def _number(name: str, default: float, low: float, high: float, doc: str = "") -> Param:
    return Param(name, "float", default, minimum=low, maximum=high, doc=doc)


def _ordered(smaller: str, larger: str) -> Constraint:
    def check(values: Mapping[str, ParamValue]) -> str | None:
        if values[smaller] >= values[larger]:
            return (f"{smaller} ({values[smaller]}) must be less than {larger} "
                    f"({values[larger]})")
        return None
    return check


BUILTIN_TEMPLATES: dict[str, RuleTemplate] = {t.name: t for t in (
    RuleTemplate(
        name="sma_cross",
        text="entry: crosses_above(sma(close, {fast}), sma(close, {slow}))\n"
             "exit: crosses_below(sma(close, {fast}), sma(close, {slow}))",
        params=(_period("fast", 10, "fast SMA period"), _period("slow", 30, "slow SMA period")),
        description="Long when the fast SMA crosses above the slow one; exit on the "
                    "opposite cross.",
        constraint=_ordered("fast", "slow")),
    RuleTemplate(
        name="rsi_mean_reversion",
        text="entry: crosses_above(rsi(close, {period}), {oversold})\n"
             "exit: rsi(close, {period}) > {overbought}",
        params=(_period("period", 14, "RSI period"),
                _number("oversold", 30.0, 0.0, 100.0, "RSI level to recover from"),
                _number("overbought", 70.0, 0.0, 100.0, "RSI level to exit at")),
        description="Long when RSI climbs back above the oversold level; exit when it is "
                    "overbought.",
        constraint=_ordered("oversold", "overbought")),
    RuleTemplate(
        name="macd_trend",
        text="entry: crosses_above(macd(close, {fast}, {slow}, {signal}).macd, "
             "macd(close, {fast}, {slow}, {signal}).signal) and close > ema(close, {trend})\n"
             "exit: crosses_below(macd(close, {fast}, {slow}, {signal}).macd, "
             "macd(close, {fast}, {slow}, {signal}).signal)",
        params=(_period("fast", 12), _period("slow", 26), _period("signal", 9),
                _period("trend", 200, "EMA period of the trend filter")),
        description="Long on a MACD/signal bullish cross while price is above its long "
                    "EMA; exit on the bearish cross.",
        constraint=_ordered("fast", "slow")),
    RuleTemplate(
        name="bollinger_breakout",
        text="entry: crosses_above(close, bbands(close, {period}, {width}, {width}).upper)\n"
             "exit: crosses_below(close, bbands(close, {period}, {width}, {width}).middle)",
        params=(_period("period", 20), _number("width", 2.0, 0.1, 10.0, "standard deviations")),
        description="Long when the close breaks above the upper Bollinger band; exit when it "
                    "falls back below the middle band."),
    RuleTemplate(
        name="donchian_breakout",
        text="entry: close > donchian({entry_period}).upper[1]\n"
             "exit: close < donchian({exit_period}).lower[1]",
        params=(_period("entry_period", 20, "breakout channel"),
                _period("exit_period", 10, "exit channel")),
        description="Turtle-style: long on a close above the previous bar's N-bar high; exit "
                    "on a close below the previous bar's M-bar low."),
)}


def builtin_strategy(name: str, **parameters: StrategyParam) -> RuleStrategy:
    """A built-in strategy by name with parameter overrides; BadInputError if unknown."""
    template = BUILTIN_TEMPLATES.get(name)
    if template is None:
        raise BadInputError(f"unknown built-in strategy {name!r}; built-ins: "
                            f"{', '.join(BUILTIN_TEMPLATES)}")
    return template.render(parameters)
