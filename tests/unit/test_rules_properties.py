"""Property-based tests of the rule language.

- Random valid rules (generated from the grammar) check and evaluate without error, and the
  vectorised result equals a slow per-bar reference interpreter written with three-valued
  (true / false / unknown) logic, directly over the syntax tree.
- Random invalid rules (a deleted token, an unknown name, a wrong arity) and arbitrary text are
  refused with a BadInputError carrying a position; nothing raises anything else.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from signalfactory.domain.bars import BarSeries, BarUniverse
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.indicators import compute, registry
from signalfactory.domain.rules import check_rule, evaluate, parse_rule
from signalfactory.domain.rules.syntax import Binary, Call, Expr, Index, Name, Number, Unary
from signalfactory.domain.rules.tokens import tokenize

PRICES = ["open", "high", "low", "close", "volume", "hl2", "hlc3", "ohlc4"]
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


# -- grammar strategies ------------------------------------------------------------------------

def period(low: int = 2, high: int = 12) -> st.SearchStrategy[str]:
    return st.integers(low, high).map(str)


def number() -> st.SearchStrategy[str]:
    return st.one_of(st.integers(0, 100).map(str),
                     st.floats(0.0, 100.0, allow_nan=False).map(lambda f: f"{f:.3f}"))


def numeric_over(sub: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Numeric expressions whose operands are drawn from ``sub``."""
    series = sub.filter(lambda text: re.search("[a-z]", text) is not None)  # not a constant
    indicators = st.one_of(
        st.builds("sma({}, {})".format, series, period()),
        st.builds("ema({}, {})".format, series, period()),
        st.builds("rsi({}, {})".format, series, period()),
        st.builds("bbands({}, {}, nbdevup={}).{}".format, series, period(),
                  st.sampled_from(["1", "2.5"]), st.sampled_from(["upper", "middle", "lower"])),
        st.builds("macd({}, {}, {}, {}).{}".format, series, period(2, 6), period(7, 12),
                  period(2, 5), st.sampled_from(["macd", "signal", "hist"])),
        st.builds("zscore({}, {})".format, series, period()),
        st.builds("percentrank({}, {})".format, series, period(1, 8)),
        st.builds("atr({})".format, period(1, 10)),
        st.builds("adx({})".format, period(2, 8)),
        st.builds("donchian({}).{}".format, period(1, 10),
                  st.sampled_from(["upper", "middle", "lower"])),
        st.builds("keltner({}, {}).{}".format, period(1, 8), st.sampled_from(["1", "2.0"]),
                  st.sampled_from(["upper", "middle", "lower"])),
        st.builds("supertrend({}).{}".format, period(1, 8),
                  st.sampled_from(["value", "direction"])),
        st.builds("ichimoku(3, 5, 8, {}).{}".format, period(0, 4),
                  st.sampled_from(["tenkan", "kijun", "senkou_a", "senkou_b", "chikou"])),
        st.sampled_from(["vwap(4)", "cum_vwap()", "stoch().slowd", "cdlengulfing()"]),
    )
    composite = st.one_of(
        st.builds("({} {} {})".format, sub, st.sampled_from("+-*/"), sub),
        st.builds("-{}".format, sub),
        st.builds("abs({})".format, sub),
        st.builds("min({}, {})".format, sub, sub),
        st.builds("max({}, {}, {})".format, sub, sub, sub),
        st.builds("highest({}, {})".format, sub, period(1, 6)),
        st.builds("lowest({}, {})".format, sub, period(1, 6)),
        st.builds("({})[{}]".format, sub, period(0, 3)),
    )
    return st.one_of(LEAVES, indicators, composite)


def condition_over(sub: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        sub,
        st.builds("({} and {})".format, sub, sub),
        st.builds("({} or {})".format, sub, sub),
        st.builds("not ({})".format, sub),
        st.builds("({})[{}]".format, sub, period(0, 2)),
    )


LEAVES = st.one_of(st.sampled_from(PRICES), number())
NUMERIC_1 = numeric_over(LEAVES)
NUMERIC_2 = numeric_over(NUMERIC_1)
COMPARISON = st.one_of(
    st.builds("{} {} {}".format, NUMERIC_1, st.sampled_from(["<", "<=", ">", ">=", "==", "!="]),
              NUMERIC_1),
    st.builds("crosses_above({}, {})".format, NUMERIC_1, NUMERIC_1),
    st.builds("crosses_below({}, {})".format, NUMERIC_1, NUMERIC_1),
)
CONDITION_1 = condition_over(COMPARISON)
CONDITION_2 = condition_over(CONDITION_1)


@st.composite
def rule_texts(draw: st.DrawFn) -> str:
    parts = [f"entry: {draw(CONDITION_2)}"]
    if draw(st.booleans()):
        parts.append(f"exit: {draw(CONDITION_1)}")
    if draw(st.booleans()):
        parts.append(f"short_entry: {draw(CONDITION_1)}")
        if draw(st.booleans()):
            parts.append(f"short_exit: {draw(CONDITION_1)}")
    if draw(st.booleans()):
        parts.append(f"score: {draw(NUMERIC_2)}")
    return draw(st.sampled_from(["\n", "; "])).join(draw(st.permutations(parts)))


def make_bars(n: int, seed: int, symbol: str = "X") -> BarSeries:
    rng = np.random.default_rng(seed)
    close = 20.0 * np.exp(np.cumsum(rng.normal(0.0, 0.05, n)))
    open_ = close * (1.0 + rng.normal(0.0, 0.02, n))
    high = np.maximum(open_, close) * (1.0 + rng.uniform(0.0, 0.03, n))
    low = np.minimum(open_, close) * (1.0 - rng.uniform(0.0, 0.03, n))
    return BarSeries(symbol, np.arange(n, dtype=np.int64), open_, high, low, close,
                     rng.uniform(10.0, 1000.0, n).round())


# -- reference interpreter: one bar at a time, three-valued logic ------------------------------

Truth = bool | None
_CMP: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    "==": operator.eq, "!=": operator.ne}


class Reference:
    def __init__(self, bars: BarSeries) -> None:
        self.bars = bars
        self.n = len(bars)
        self.cache: dict[int, list[float]] = {}

    def price(self, name: str, t: int) -> float:
        b = self.bars
        if name == "hl2":
            return float((b.high[t] + b.low[t]) / 2)
        if name == "hlc3":
            return float((b.high[t] + b.low[t] + b.close[t]) / 3)
        if name == "ohlc4":
            return float((b.open[t] + b.high[t] + b.low[t] + b.close[t]) / 4)
        return float(b.column(name)[t])

    def series(self, expr: Expr) -> list[float]:
        """Values of a numeric expression at every bar, computed once per node."""
        key = id(expr)
        if key not in self.cache:
            self.cache[key] = [self._num(expr, t) for t in range(self.n)]
        return self.cache[key]

    def num(self, expr: Expr, t: int) -> float:
        return self.series(expr)[t] if 0 <= t < self.n else math.nan

    def _num(self, expr: Expr, t: int) -> float:
        if isinstance(expr, Number):
            return expr.value
        if isinstance(expr, Name):
            return self.price(expr.name, t)
        if isinstance(expr, Unary):
            return -self.num(expr.operand, t)
        if isinstance(expr, Index):
            return self.num(expr.operand, t - int(expr.bars.text))
        if isinstance(expr, Binary):
            a, b = self.num(expr.left, t), self.num(expr.right, t)
            if expr.op == "/":
                return a / b if b != 0 else math.nan
            return {"+": operator.add, "-": operator.sub, "*": operator.mul}[expr.op](a, b)
        assert isinstance(expr, Call)
        if expr.name in ("highest", "lowest"):
            n = int(expr.args[1].text)  # type: ignore[union-attr]
            if t - n + 1 < 0:
                return math.nan
            window = [self.num(expr.args[0], k) for k in range(t - n + 1, t + 1)]
            if any(math.isnan(w) for w in window):
                return math.nan
            return max(window) if expr.name == "highest" else min(window)
        if expr.name in ("abs", "min", "max"):
            args = [self.num(a, t) for a in expr.args]
            if any(math.isnan(a) for a in args):
                return math.nan
            return {"abs": lambda v: abs(v[0]), "min": min, "max": max}[expr.name](args)
        return self.indicator(expr)[t]

    def indicator(self, call: Call) -> list[float]:
        key = id(call)
        if key not in self.cache:
            ind = registry[call.name]
            k = len(ind.series_inputs)
            series = [np.array(self.series(a)) for a in call.args[:k]]
            params = {p.name: _literal(a) for p, a in zip(ind.params, call.args[k:],
                                                           strict=False)}
            params.update({kw.name: _literal(kw.value) for kw in call.keywords})
            outputs = compute(call.name, self.bars, *series, **params)
            name = ind.outputs[ind.output_index(call.output)]
            self.cache[key] = [float(v) for v in outputs[name]]
        return self.cache[key]

    def cond(self, expr: Expr, t: int) -> Truth:
        if t < 0:
            return None
        if isinstance(expr, Unary):
            inner = self.cond(expr.operand, t)
            return None if inner is None else not inner
        if isinstance(expr, Index):
            return self.cond(expr.operand, t - int(expr.bars.text))
        if isinstance(expr, Call):
            a, b = expr.args
            now, before = (">", "<=") if expr.name == "crosses_above" else ("<", ">=")
            return _and(self.compare(now, a, b, t), self.compare(before, a, b, t - 1))
        assert isinstance(expr, Binary)
        if expr.op == "and":
            return _and(self.cond(expr.left, t), self.cond(expr.right, t))
        if expr.op == "or":
            left, right = self.cond(expr.left, t), self.cond(expr.right, t)
            if left is True or right is True:
                return True
            return None if left is None or right is None else False
        return self.compare(expr.op, expr.left, expr.right, t)

    def compare(self, op: str, left: Expr, right: Expr, t: int) -> Truth:
        if t < 0:
            return None
        a, b = self.num(left, t), self.num(right, t)
        if math.isnan(a) or math.isnan(b):
            return None
        return _CMP[op](a, b)


def _and(a: Truth, b: Truth) -> Truth:
    if a is False or b is False:
        return False
    return None if a is None or b is None else True


def _literal(expr: Expr) -> float:
    if isinstance(expr, Unary):
        return -_literal(expr.operand)
    assert isinstance(expr, Number)
    return int(expr.text) if expr.is_integer else expr.value


# -- properties --------------------------------------------------------------------------------

@SETTINGS
@given(rule_texts(), st.integers(0, 45), st.integers(0, 1000))
def test_valid_rules_match_the_reference_interpreter(text: str, n: int, seed: int) -> None:
    rule = check_rule(text)
    bars = make_bars(n, seed)
    ev = evaluate(rule, bars, values="all")
    syntax = parse_rule(text)
    ref = Reference(bars)
    for part in syntax.parts:
        if part.label == "score":
            expected = np.array([ref.num(part.expr, t) for t in range(n)])
            np.testing.assert_array_equal(ev.score, expected)
        else:
            expected_flags = [ref.cond(part.expr, t) is True for t in range(n)]
            assert ev.signal(part.label).tolist() == expected_flags, part.label
    if rule.part("score") is None:
        fired = ev.entry | ev.short_entry
        assert (ev.score[fired] >= 0).all() and (ev.score[fired] <= 1).all()
        assert np.isnan(ev.score[~fired]).all()


@SETTINGS
@given(rule_texts(), st.lists(st.integers(0, 30), min_size=1, max_size=4),
       st.integers(1, 70))
def test_universe_evaluation_equals_each_instrument_alone(text: str, lengths: list[int],
                                                         block_rows: int) -> None:
    series = [make_bars(n, seed=i, symbol=f"S{i}") for i, n in enumerate(lengths)]
    u = BarUniverse.from_series(series)
    ev = evaluate(text, u, block_rows=block_rows, values="all")
    for i, bars in enumerate(series):
        alone = evaluate(text, bars, values="all")
        rows = ev.rows(i)
        for label in ("entry", "exit", "short_entry", "short_exit"):
            np.testing.assert_array_equal(ev.signal(label)[rows], alone.signal(label))
        np.testing.assert_array_equal(ev.score[rows], alone.score)
        for name, values in ev.values.items():
            np.testing.assert_array_equal(values[rows], alone.values[name])


def dirty_bars(n: int, seed: int) -> BarSeries:
    """Prices with gaps (NaN), zero volume, zeros and huge values: evaluation must cope."""
    bars = make_bars(n, seed)
    rng = np.random.default_rng(seed)
    for column in (bars.open, bars.high, bars.low, bars.close, bars.volume):
        column[rng.random(n) < 0.1] = np.nan
        column[rng.random(n) < 0.05] = 0.0
        column[rng.random(n) < 0.02] = 1e300
    return bars


@SETTINGS
@given(rule_texts(), st.integers(0, 40), st.integers(0, 1000))
def test_valid_rules_evaluate_on_dirty_data(text: str, n: int, seed: int) -> None:
    ev = evaluate(text, dirty_bars(n, seed))
    assert ev.entry.dtype == np.bool_ and ev.entry.shape == (n,)
    assert ev.score.shape == (n,)


def _refused_or_valid(text: str) -> None:
    """Either a valid rule that evaluates, or BadInputError with a position in the text."""
    try:
        rule = check_rule(text)
    except BadInputError as exc:
        assert exc.position is not None
        assert 0 <= exc.position <= len(text)
        assert exc.detail.startswith(f"position {exc.position}: ")
        return
    evaluate(rule, make_bars(25, 1))


@SETTINGS
@given(rule_texts(), st.data())
def test_deleting_a_token_is_refused_or_still_valid(text: str, data: st.DataObject) -> None:
    tokens = [t for t in tokenize(text) if t.kind != "end"]
    tok = data.draw(st.sampled_from(tokens))
    _refused_or_valid(text[:tok.pos] + text[tok.pos + len(tok.text):])


@SETTINGS
@given(rule_texts(), st.data(), st.from_regex(r"zq[a-z]{1,6}", fullmatch=True))
def test_an_unknown_name_is_refused(text: str, data: st.DataObject, unknown: str) -> None:
    names = [t for t in tokenize(text) if t.kind == "name"]
    tok = data.draw(st.sampled_from(names))
    mutated = text[:tok.pos] + unknown + text[tok.pos + len(tok.text):]
    try:
        check_rule(mutated)
    except BadInputError as exc:
        assert exc.position is not None
        return
    raise AssertionError(f"accepted {mutated!r}")


@SETTINGS
@given(rule_texts(), st.data(), st.sampled_from(["", ", close", ", 3", ", close, close"]))
def test_wrong_arity_is_refused(text: str, data: st.DataObject, extra: str) -> None:
    fixed = {"crosses_above": 2, "crosses_below": 2, "highest": 2, "lowest": 2, "abs": 1}
    calls = [t for t in tokenize(text) if t.kind == "name" and t.text in fixed]
    assume(calls)
    tok = data.draw(st.sampled_from(calls))
    open_paren = tok.pos + len(tok.text)
    # replace the argument list by a wrong number of arguments
    depth, end = 0, open_paren
    for end in range(open_paren, len(text)):
        depth += {"(": 1, ")": -1}.get(text[end], 0)
        if depth == 0:
            break
    args = ", ".join(["close"] * (fixed[tok.text] + 1)) if extra == "" else "close" + extra
    assume(args.count(",") + 1 != fixed[tok.text])
    mutated = text[:open_paren] + f"({args})" + text[end + 1:]
    try:
        check_rule(mutated)
    except BadInputError as exc:
        assert exc.position is not None
        return
    raise AssertionError(f"accepted {mutated!r}")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_arbitrary_text_is_refused_or_valid(text: str) -> None:
    _refused_or_valid(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="entry:exit;scorelowhighclse()[]<>=!+-*/., 0123456789andornot_\n#",
               max_size=60))
def test_rule_like_noise_is_refused_or_valid(text: str) -> None:
    _refused_or_valid(text)
