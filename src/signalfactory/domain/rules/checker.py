"""Checker: syntax tree -> IR. Resolves names, checks arity, parameter types and ranges, and
value types (condition vs number). Every error is a BadInputError with ``position``."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from typing import Final, Literal

from signalfactory.domain.errors import BadInputError
from signalfactory.domain.indicators.registry import IndicatorRegistry
from signalfactory.domain.indicators.spec import Indicator, ParamValue
from signalfactory.domain.rules import ir
from signalfactory.domain.rules.parser import fail
from signalfactory.domain.rules.syntax import (
    Binary,
    Call,
    Expr,
    Index,
    Name,
    Number,
    Unary,
    render,
)

MAX_BARS: Final = 100_000
FUNCTIONS: Final = ("crosses_above", "crosses_below", "highest", "lowest", "abs", "min", "max")
_CONDITION_OPS: Final = ("and", "or", "<", "<=", ">", ">=", "==", "!=")


def is_condition(expr: Expr) -> bool:
    """Whether ``expr`` is true/false-valued. Decidable from syntax: no name is a condition."""
    if isinstance(expr, Binary):
        return expr.op in _CONDITION_OPS
    if isinstance(expr, Unary):
        return expr.op == "not"
    if isinstance(expr, Call):
        return expr.name in ("crosses_above", "crosses_below")
    if isinstance(expr, Index):
        return is_condition(expr.operand)
    return False


def shown(expr: Expr, limit: int = 60) -> str:
    """An expression as an error message quotes it: canonical text, cut if long."""
    text = render(expr)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def start_of(expr: Expr) -> int:
    """Offset of the first character of ``expr``."""
    if isinstance(expr, Binary):
        return start_of(expr.left)
    if isinstance(expr, Index):
        return start_of(expr.operand)
    return expr.pos


class Checker:
    """Turns syntax into IR; records named numeric sub-expressions (text -> node) as it goes."""

    def __init__(self, registry: IndicatorRegistry) -> None:
        self.registry = registry
        self.named: dict[ir.Num, str] = {}

    # -- conditions (negation normal form) -------------------------------------------------
    def cond(self, expr: Expr, context: str, negate: bool = False) -> ir.Cond:
        if not is_condition(expr):
            text = shown(expr)
            raise fail(start_of(expr), f"{context} needs a condition (true/false), but "
                                       f"'{text}' is a number; compare it, e.g. '{text} > 0'")
        if isinstance(expr, Unary):
            return self.cond(expr.operand, "'not'", not negate)
        if isinstance(expr, Index):
            bars = self.bars(expr.bars)
            inner = self.cond(expr.operand, "'[ ]'", negate)
            return inner if bars == 0 else ir.BoolShift(inner, bars)
        if isinstance(expr, Call):
            return self.crosses(expr, negate)
        if not isinstance(expr, Binary):
            raise TypeError(f"expected Binary, got {type(expr).__name__}")
        if expr.op in ("and", "or"):
            left = self.cond(expr.left, f"'{expr.op}'", negate)
            right = self.cond(expr.right, f"'{expr.op}'", negate)
            conj = (expr.op == "and") != negate
            return _join(ir.AllOf if conj else ir.AnyOf, left, right)
        op = ir.NEGATED[expr.op] if negate else expr.op
        left_num = self.num(expr.left, f"'{expr.op}'")
        right_num = self.num(expr.right, f"'{expr.op}'")
        return ir.Compare(op, left_num, right_num)  # type: ignore[arg-type]

    def crosses(self, call: Call, negate: bool) -> ir.Cond:
        a, b = self.fixed_args(call, 2)
        left, right = self.num(a, f"{call.name}()"), self.num(b, f"{call.name}()")
        now, before = (">", "<=") if call.name == "crosses_above" else ("<", ">=")
        if negate:  # not (x now and y before) == (not x now) or (not y before)
            return ir.AnyOf((ir.Compare(ir.NEGATED[now], left, right),
                             ir.BoolShift(ir.Compare(ir.NEGATED[before], left, right), 1)))
        return ir.AllOf((ir.Compare(now, left, right),  # type: ignore[arg-type]
                         ir.BoolShift(ir.Compare(before, left, right), 1)))  # type: ignore[arg-type]

    # -- numbers ---------------------------------------------------------------------------
    def num(self, expr: Expr, context: str) -> ir.Num:
        if is_condition(expr):
            raise fail(start_of(expr), f"{context} needs a number, but '{shown(expr)}' is a "
                                       "condition (true/false)")
        if isinstance(expr, Number):
            return ir.Const(self.literal(expr))
        if isinstance(expr, Name):
            return self.name(expr)
        if isinstance(expr, Unary):
            inner = self.num(expr.operand, "'-'")
            return ir.Const(-inner.value) if isinstance(inner, ir.Const) else ir.Neg(inner)
        if isinstance(expr, Index):
            bars = self.bars(expr.bars)
            operand = self.num(expr.operand, "'[ ]'")
            if bars == 0:
                return operand
            return self.remember(ir.Shift(operand, bars), expr)
        if isinstance(expr, Binary):
            left = self.num(expr.left, f"'{expr.op}'")
            right = self.num(expr.right, f"'{expr.op}'")
            if isinstance(left, ir.Const) and isinstance(right, ir.Const):
                return ir.Const(_fold(expr.op, left.value, right.value))
            return ir.Arith(expr.op, left, right)  # type: ignore[arg-type]
        return self.call(expr)

    def name(self, expr: Name) -> ir.Num:
        if expr.name in ir.PRICE_NAMES:
            return ir.Price(expr.name)
        if expr.name in self.registry or expr.name in FUNCTIONS:
            raise fail(expr.pos, f"'{expr.name}' is a function; call it with parentheses, "
                                 f"e.g. {expr.name}(...)")
        known = [*ir.PRICE_NAMES, *FUNCTIONS, *self.registry]
        raise fail(expr.pos, f"unknown name '{expr.name}'{_suggest(expr.name, known)}; "
                             f"prices are {', '.join(ir.PRICE_NAMES)}")

    def call(self, expr: Call) -> ir.Num:
        if expr.name in ir.PRICE_NAMES:
            raise fail(expr.pos, f"'{expr.name}' is a price, not a function; write "
                                 f"'{expr.name}' or '{expr.name}[1]' for the previous bar")
        if expr.name in FUNCTIONS:
            if expr.output is not None:
                raise fail(expr.output_pos, f"{expr.name}() has no outputs to select")
            return self.function(expr)
        indicator = self.registry.get(expr.name)
        if indicator is None:
            names = [*FUNCTIONS, *self.registry]
            raise fail(expr.pos, f"unknown name '{expr.name}'{_suggest(expr.name, names)}")
        return self.indicator(expr, indicator)

    def function(self, expr: Call) -> ir.Num:
        if expr.name in ("highest", "lowest"):
            series, count = self.fixed_args(expr, 2)
            operand = self.num(series, f"{expr.name}()")
            if not isinstance(count, Number):
                raise fail(start_of(count), f"{expr.name}() needs a whole number of bars as "
                                            f"argument 2, e.g. {expr.name}(high, 20)")
            bars = self.bars(count, minimum=1)
            kind: Literal["highest", "lowest"] = "highest" if expr.name == "highest" else "lowest"
            return self.remember(ir.Window(kind, operand, bars), expr)
        if expr.name == "abs":
            (arg,) = self.fixed_args(expr, 1)
            return ir.Func("abs", (self.num(arg, "abs()"),))
        if expr.keywords:
            raise fail(expr.keywords[0].pos, f"{expr.name}() takes no keyword arguments")
        if len(expr.args) < 2:
            raise fail(expr.pos, f"{expr.name}() needs at least 2 arguments, "
                                 f"got {len(expr.args)}")
        name: Literal["min", "max"] = "min" if expr.name == "min" else "max"
        return ir.Func(name, tuple(self.num(a, f"{expr.name}()") for a in expr.args))

    def indicator(self, expr: Call, ind: Indicator) -> ir.Num:
        series_inputs = ind.series_inputs
        if len(expr.args) < len(series_inputs):
            wanted = ", ".join(i.name for i in series_inputs)
            example = ", ".join(i.default for i in series_inputs)
            raise fail(expr.pos, f"{ind.name}() needs {len(series_inputs)} series first "
                                 f"({wanted}), e.g. {ind.name}({example}, ...)")
        inputs = tuple(self.num(a, f"{ind.name}()") for a in expr.args[:len(series_inputs)])
        for arg, value, inp in zip(expr.args, inputs, series_inputs, strict=False):
            if isinstance(value, ir.Const):
                raise fail(start_of(arg), f"{ind.name}() needs a series as its input "
                                          f"'{inp.name}', e.g. {ind.name}({inp.default}, ...), "
                                          f"not the constant {shown(arg)}")
        positional = [self.param_literal(a, ind, i)
                      for i, a in enumerate(expr.args[len(series_inputs):])]
        keywords: dict[str, ParamValue] = {}
        names = [p.name for p in ind.params]
        for kw in expr.keywords:
            if kw.name not in names:
                raise fail(kw.pos, f"{ind.name}() has no parameter '{kw.name}'"
                                   f"{_suggest(kw.name, names)}; parameters: "
                                   f"{', '.join(names) or 'none'}")
            keywords[kw.name] = self.param_literal(kw.value, ind, names.index(kw.name))
        try:
            params = ind.bind(positional, keywords)
        except BadInputError as exc:
            raise fail(expr.pos, exc.detail) from None
        try:
            index = ind.output_index(expr.output)
        except KeyError:
            outs = ind.output_names()
            raise fail(expr.output_pos, f"{ind.name}() has no output '{expr.output}'"
                                        f"{_suggest(expr.output or '', outs)}; outputs: "
                                        f"{', '.join(outs)}") from None
        return self.remember(ir.Output(ir.Apply(ind.name, inputs, params), index), expr)

    def param_literal(self, expr: Expr, ind: Indicator, index: int) -> ParamValue:
        if index >= len(ind.params):
            raise fail(start_of(expr), f"{ind.name}() takes {len(ind.series_inputs)} series "
                                       f"and {len(ind.params)} parameters "
                                       f"({', '.join(p.name for p in ind.params) or 'none'}); "
                                       "this argument is one too many")
        sign, node = 1, expr
        if isinstance(node, Unary) and node.op == "-":
            sign, node = -1, node.operand
        if not isinstance(node, Number):
            raise fail(start_of(expr), f"parameter '{ind.params[index].name}' of {ind.name}() "
                                       f"must be a number written out, e.g. "
                                       f"{ind.params[index].default}, got '{shown(expr)}'")
        value = self.literal(node)
        return sign * int(value) if node.is_integer else sign * value

    # -- helpers ---------------------------------------------------------------------------
    def fixed_args(self, expr: Call, count: int) -> tuple[Expr, ...]:
        if expr.keywords:
            raise fail(expr.keywords[0].pos, f"{expr.name}() takes no keyword arguments")
        if len(expr.args) != count:
            raise fail(expr.pos, f"{expr.name}() takes {count} argument"
                                 f"{'s' if count > 1 else ''}, got {len(expr.args)}")
        return expr.args

    def literal(self, expr: Number) -> float:
        value = expr.value
        if not math.isfinite(value) or abs(value) > 1e300:
            raise fail(expr.pos, f"number {expr.text} is too large")
        return value

    def bars(self, expr: Number, minimum: int = 0) -> int:
        if not expr.is_integer:
            raise fail(expr.pos, f"a number of bars must be a whole number, got {expr.text}")
        value = int(expr.text)
        if not minimum <= value <= MAX_BARS:
            raise fail(expr.pos, f"a number of bars must be between {minimum} and "
                                 f"{MAX_BARS}, got {expr.text}")
        return value

    def remember(self, node: ir.Num, expr: Expr) -> ir.Num:
        self.named.setdefault(node, render(expr))
        return node


def _join(kind: type[ir.AllOf] | type[ir.AnyOf], left: ir.Cond, right: ir.Cond) -> ir.Cond:
    """Flatten nested and/or of the same kind into one n-ary node."""
    args: list[ir.Cond] = []
    for side in (left, right):
        args.extend(side.args if isinstance(side, kind) else (side,))
    return kind(tuple(args))


def _fold(op: str, a: float, b: float) -> float:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    return a / b if b != 0 else math.nan


def _suggest(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""
