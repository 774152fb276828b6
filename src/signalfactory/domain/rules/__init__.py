"""The rule language: parse, check and evaluate trading rules safely and fast.

A rule text holds an ``entry:`` part (or ``short_entry:``) and optionally ``exit:``,
``short_exit:`` and ``score:`` parts, separated by ``;`` or line breaks (a line that does not
start with ``label:`` continues the previous part; ``#`` starts a comment)::

    entry: crosses_above(sma(close, 10), sma(close, 30)) and rsi(close, 14) < 70
    exit: crosses_below(sma(close, 10), sma(close, 30)) or close < lowest(low, 20)[1]

Expressions:

- numbers (``14``, ``2.5``, ``1e3``); prices ``open high low close volume hl2 hlc3 ohlc4``;
- ``+ - * /`` and unary ``-`` on numbers (``x / 0`` is undefined); ``< <= > >= == !=`` give
  conditions; ``and or not`` combine conditions; parentheses;
- ``x[n]``: the value n bars back (on numbers or conditions), within the same instrument;
- ``crosses_above(a, b)`` = ``a > b and (a <= b)[1]``; ``crosses_below`` likewise;
  ``highest(x, n)``, ``lowest(x, n)`` (current bar included); ``abs(x)``, ``min(a, b, ...)``,
  ``max(a, b, ...)``;
- every indicator of ``signalfactory.domain.indicators.registry``: series inputs first (for
  ``rsi``, ``sma``... the series to apply it to: ``sma(rsi(close, 14), 5)``; inputs such as the
  high/low/close of ``atr`` come from the bars), then parameters positionally or by keyword
  (``bbands(close, 20, nbdevup=2.5)``); parameters are number literals. ``.name`` picks an
  output (``macd(close).signal``, ``bbands(close).upper``), else the first one.

Types are checked: entry/exit parts must be conditions and ``score`` a number, so
``rsi(close, 14) and 3`` is refused. Names, arities and parameter ranges are checked too; each
error is a ``BadInputError`` whose ``position`` is the character offset of the problem.
A rule is at most 20,000 characters, nests at most 32 levels (parentheses, calls, ``not``,
``-``) and its tree is at most 100 levels high (a chain ``a + b + c + ...`` is as high as it
is long: group it with parentheses); beyond that it is refused (rule ``expression-too-deep``),
so no stage can exhaust the stack.

Missing values: an indicator's warm-up, a look-back past an instrument's first bar, ``x / 0``
and gaps in the data are undefined (NaN). A comparison with an undefined side is *unknown*,
and unknown never fires a signal, under ``not`` too (three-valued logic: ``not (rsi < 30)``
is unknown, not true, while RSI is warming up). ``rule_lookback`` gives the warm-up bars a rule
needs; ``check_enough_bars`` refuses data shorter than that.

``parse_rule`` -> syntax tree; ``check_rule`` -> ``RuleSet``; ``evaluate`` -> ``Evaluation``
over a ``BarSeries`` or a whole ``BarUniverse`` (see ``evaluator`` for how it is vectorised
and ``scoring`` for the default score).

>>> rule = check_rule("entry: rsi(close, 14) < 30; exit: rsi(close, 14) > 70")
>>> rule.lookback
14
"""

from signalfactory.domain.rules.evaluator import evaluate
from signalfactory.domain.rules.parser import parse_rule
from signalfactory.domain.rules.result import Evaluation, as_universe
from signalfactory.domain.rules.ruleset import (
    RuleSet,
    check_enough_bars,
    check_rule,
    rule_lookback,
)
from signalfactory.domain.rules.syntax import PART_LABELS, RuleText, render_rule

__all__ = ["PART_LABELS", "Evaluation", "RuleSet", "RuleText", "as_universe",
           "check_enough_bars", "check_rule", "evaluate", "parse_rule", "render_rule",
           "rule_lookback"]
