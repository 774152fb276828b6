"""Checker: names, arity, parameter types and ranges, value types, look-back, IR shape."""

from __future__ import annotations

import pytest

from signalfactory.domain.errors import BadInputError
from signalfactory.domain.rules import check_enough_bars, check_rule, ir, rule_lookback


def error(text: str) -> BadInputError:
    with pytest.raises(BadInputError) as info:
        check_rule(text)
    assert info.value.position is not None
    return info.value


@pytest.mark.parametrize(("text", "position", "fragment"), [
    ("entry: rsii(close, 14) < 30", 7, "unknown name 'rsii'; did you mean 'rsi'?"),
    ("entry: clsoe > 1", 7, "unknown name 'clsoe'; did you mean 'close'?"),
    ("entry: rsi(close, 14) and 3", 7, "'and' needs a condition (true/false), but "
                                       "'rsi(close, 14)' is a number"),
    ("entry: close > 1 and 3", 21, "'3' is a number"),
    ("entry: close", 7, "'entry:' needs a condition"),
    ("entry: close > 1; score: close > 2", 25, "'score:' needs a number, but 'close > 2' is "
                                               "a condition"),
    ("entry: (close > 1) + 1 > 2", 8, "'+' needs a number"),
    ("entry: not close", 11, "'not' needs a condition"),
    ("entry: sma(close > 1, 5) > 1", 11, "sma() needs a number"),
    ("entry: sma() > 1", 7, "sma() needs 1 series first (price), e.g. sma(close, ...)"),
    ("entry: sma(10) > 1", 11, "sma() needs a series as its input 'price', e.g. sma(close, "
                               "...), not the constant 10"),
    ("entry: sma(close, 10, 20) > 1", 22, "this argument is one too many"),
    ("entry: sma(close, timperiod=10) > 1", 18, "has no parameter 'timperiod'; did you mean "
                                                "'timeperiod'?"),
    ("entry: sma(close, close) > 1", 18, "must be a number written out"),
    ("entry: sma(close, 2.5) > 1", 7, "must be a whole number"),
    ("entry: sma(close, 0) > 1", 7, "must be at least 1"),
    ("entry: sma(close, -3) > 1", 7, "must be at least 1"),
    ("entry: rsi(close, 1) > 1", 7, "the smallest accepted value is 2"),
    ("entry: bbands(close, matype=42).upper > 1", 7, "'matype' of bbands must be one of"),
    ("entry: bbands(close, 20).uper > 1", 25, "no output 'uper'; did you mean 'upper'?"),
    ("entry: crosses_above(close) ", 7, "crosses_above() takes 2 arguments, got 1"),
    ("entry: crosses_above(close, open, x=1)", 34, "takes no keyword arguments"),
    ("entry: highest(high) > 1", 7, "highest() takes 2 arguments, got 1"),
    ("entry: highest(high, 0) > 1", 21, "between 1 and 100000"),
    ("entry: highest(high, n) > 1", 21, "needs a whole number of bars as argument 2"),
    ("entry: close[100001] > 1", 13, "between 0 and 100000"),
    ("entry: max(close) > 1", 7, "max() needs at least 2 arguments"),
    ("entry: abs(close, open) > 1", 7, "abs() takes 1 argument, got 2"),
    ("entry: close(1) > 1", 7, "'close' is a price, not a function"),
    ("entry: rsi > 1", 7, "'rsi' is a function; call it with parentheses"),
    ("entry: abs(close).x > 1", 18, "abs() has no outputs to select"),
    ("entry: close > 1e999", 15, "is too large"),
])
def test_check_errors_point_at_the_problem(text: str, position: int, fragment: str) -> None:
    err = error(text)
    assert err.position == position, err.detail
    assert fragment in err.detail, err.detail
    assert err.detail.startswith(f"position {position}: ")


def test_names_are_case_insensitive_and_keywords_bind_parameters() -> None:
    a = check_rule("entry: SMA(Close, 10) > BBands(close, nbdevup=2.5).Upper")
    b = check_rule("entry: sma(close, timeperiod=10) > bbands(close, 20, 2.5).upper")
    assert a.parts == b.parts


def test_parameters_are_bound_with_defaults_in_declaration_order() -> None:
    rule = check_rule("entry: macd(close, slowperiod=40).signal > 0")
    cmp_ = rule.part("entry")
    assert isinstance(cmp_, ir.Compare)
    out = cmp_.left
    assert isinstance(out, ir.Output)
    assert out.call == ir.Apply("macd", (ir.Price("close"),), (12, 40, 9))
    assert out.index == 1


def test_not_is_pushed_down_to_comparisons() -> None:
    rule = check_rule("entry: not (close > open and volume >= 10) or not close[2] == 1")
    assert rule.part("entry") == ir.AnyOf((
        ir.Compare("<=", ir.Price("close"), ir.Price("open")),
        ir.Compare("<", ir.Price("volume"), ir.Const(10.0)),
        ir.Compare("!=", ir.Shift(ir.Price("close"), 2), ir.Const(1.0)),
    ))


def test_crosses_become_now_and_one_bar_before() -> None:
    a, b = ir.Price("close"), ir.Price("open")
    assert check_rule("entry: crosses_above(close, open)").part("entry") == ir.AllOf(
        (ir.Compare(">", a, b), ir.BoolShift(ir.Compare("<=", a, b), 1)))
    assert check_rule("entry: crosses_below(close, open)").part("entry") == ir.AllOf(
        (ir.Compare("<", a, b), ir.BoolShift(ir.Compare(">=", a, b), 1)))
    assert check_rule("entry: not crosses_above(close, open)").part("entry") == ir.AnyOf(
        (ir.Compare("<=", a, b), ir.BoolShift(ir.Compare(">", a, b), 1)))


def test_constants_fold() -> None:
    rule = check_rule("entry: close > 2 * 3 - -1 + 4 / 0 * 0")
    cmp_ = rule.part("entry")
    assert isinstance(cmp_, ir.Compare) and isinstance(cmp_.right, ir.Const)
    assert cmp_.right.value != cmp_.right.value  # 4 / 0 is undefined, so is the sum
    assert check_rule("entry: close > 2 * 3 - -1").part("entry") == ir.Compare(
        ">", ir.Price("close"), ir.Const(7.0))


def test_named_values_are_the_indicator_like_sub_expressions() -> None:
    rule = check_rule("entry: crosses_above(sma(close, 10), sma(close, 30)) and "
                      "rsi(close, 14) < 70\nexit: close < lowest(low, 20)[1] + 0 * close[3]")
    assert [text for text, _ in rule.named] == [
        "sma(close, 10)", "sma(close, 30)", "rsi(close, 14)", "lowest(low, 20)",
        "lowest(low, 20)[1]", "close[3]"]


@pytest.mark.parametrize(("text", "lookback"), [
    ("entry: close > open", 0),
    ("entry: close > close[5]", 5),
    ("entry: sma(close, 10) > 0", 9),
    ("entry: crosses_above(sma(close, 10), sma(close, 30))", 30),
    ("entry: sma(rsi(close, 14), 5) > 50", 18),
    ("entry: close < lowest(low, 20)[1]", 20),
    ("entry: close > 0\nexit: macd(close).signal > 0", 33),
    ("entry: close > 0; score: ema(close, 200)", 199),
    ("entry: (close > sma(close, 50))[3]", 52),
    ("entry: ichimoku().senkou_b > 0", 77),
])
def test_lookback(text: str, lookback: int) -> None:
    assert rule_lookback(text) == lookback
    check_enough_bars(text, lookback + 1)
    with pytest.raises(BadInputError, match=f"at least {lookback + 1} bars"):
        check_enough_bars(text, lookback)


def test_spec_example_lookback() -> None:
    assert rule_lookback(
        "entry: crosses_above(sma(close, 10), sma(close, 30)) and rsi(close, 14) < 70\n"
        "exit: crosses_below(sma(close, 10), sma(close, 30)) or close < lowest(low, 20)[1]"
    ) == 30
