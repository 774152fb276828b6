"""Every walk over a rule's tree is bounded: a rule under the size cap can never exhaust the
stack, however it is shaped. Too deep a tree is refused as bad input with a rule id and the
position where it becomes too deep; a tree at the bound goes through every stage (parse,
check, canonical text, plan, evaluation, default score) within a fixed stack budget."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pytest

from signalfactory.domain.bars import BarSeries
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.rules import check_rule, evaluate, parse_rule
from signalfactory.domain.rules.parser import MAX_DEPTH
from signalfactory.domain.rules.plan import compile_plan
from signalfactory.domain.rules.syntax import MAX_HEIGHT, Binary, Name, RuleText, render
from signalfactory.domain.rules.tokens import MAX_RULE_LENGTH
from tests.helpers import cli

#: frames any stage may use on top of its caller's; far below Python's default limit (1000),
#: so a rule is safe in a worker thread, a Celery task or under a deep web stack alike
STACK_BUDGET = 450


def chain(op: str, terms: int, term: str = "close") -> str:
    return (op if op in "+-*/" else f" {op} ").join([term] * terms)


# rules under the size cap whose trees are thousands of levels deep
TOO_DEEP = {
    "sum": "entry: " + chain("+", 3000) + " > 0",
    "product": "entry: " + chain("*", 3000) + " > 0",
    "and": "entry: " + chain("and", 1500, "low>1"),
    "or": "entry: " + "or".join(["(close>1)"] * 1500),
    "look-back": "entry: close" + "[1]" * 3000 + " > 0",
    "condition look-back": "entry: (close > 1)" + "[1]" * 3000,
    "score": "entry: close > 1\nscore: " + chain("-", 3000),
}


@pytest.mark.parametrize("text", TOO_DEEP.values(), ids=TOO_DEEP.keys())
def test_a_deep_tree_under_the_size_cap_is_refused_with_rule_and_position(text: str) -> None:
    assert len(text) <= MAX_RULE_LENGTH
    with pytest.raises(BadInputError) as info:
        check_rule(text)
    err = info.value
    assert err.rule == "expression-too-deep"
    assert err.position is not None and 0 < err.position < len(text)
    assert f"deeper than {MAX_HEIGHT} levels" in err.detail
    assert "parentheses" in err.detail  # what to do about it


def test_the_position_is_where_the_tree_becomes_too_deep() -> None:
    text = "entry: " + chain("+", MAX_HEIGHT + 5) + " > 0"
    with pytest.raises(BadInputError) as info:
        parse_rule(text)
    # the first operator whose sub-tree is one level too many
    plus_positions = [i for i, ch in enumerate(text) if ch == "+"]
    assert info.value.position == plus_positions[MAX_HEIGHT - 1]


def test_grouping_a_long_chain_with_parentheses_keeps_it_shallow() -> None:
    # the same 1024 terms, grouped pairwise: 10 levels instead of 1023
    terms = ["close"] * 1024
    while len(terms) > 1:
        terms = [f"({a} + {b})" for a, b in zip(terms[::2], terms[1::2], strict=True)]
    rule = check_rule(f"entry: {terms[0]} > 0")
    assert rule.lookback == 0


def test_a_tree_built_in_code_is_bounded_too() -> None:
    node: Binary | Name = Name("close", 0)
    with pytest.raises(BadInputError) as info:
        for i in range(MAX_HEIGHT + 1):
            node = Binary("+", node, Name("close", 0), i)
    assert info.value.rule == "expression-too-deep"
    assert info.value.position == MAX_HEIGHT - 1


# rules at the bound, each a different shape of the deepest tree the parser accepts
def _nested(depth: int, open_: str, close: str, inner: str) -> str:
    return open_ * depth + inner + close * depth


AT_THE_BOUND = {
    "sum": "entry: " + chain("+", MAX_HEIGHT - 1) + " > 0",
    "and": "entry: " + " and ".join(["close > 1"] * (MAX_HEIGHT - 2)),
    "or of crosses": "entry: " + " or ".join(
        ["crosses_above(sma(close, 3), close)"] * (MAX_HEIGHT - 4)),
    "nested indicators": "entry: " + _nested(MAX_DEPTH - 1, "sma(", ", 2)", "close") + " > 0",
    "nested crosses inside": "entry: crosses_above(" + _nested(MAX_DEPTH - 2, "ema(", ", 2)",
                                                               "close") + ", close)",
    "look-back chain": "entry: (close" + "[1]" * (MAX_HEIGHT - 3) + " > 1)",
    "negations": "entry: close > " + "-" * (MAX_DEPTH - 1) + "1",
    "nots": "entry: " + "not " * (MAX_DEPTH - 1) + "close > 1",
    "nested parentheses": "entry: " + _nested(MAX_DEPTH - 1, "(", ")", "close > 1"),
    "mixed": "entry: " + chain("+", 40, "sma(close, 2)[1]") + " > " + chain(
        "*", 40, "highest(high, 3)") + "\nscore: " + chain("-", MAX_HEIGHT - 1),
}


@contextmanager
def stack_budget(frames: int) -> Iterator[None]:
    """Run with at most ``frames`` more frames than the caller has."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack(0)) + frames)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def _bars(n: int = 300) -> BarSeries:
    rng = np.random.default_rng(3)
    close = 100 + np.cumsum(rng.normal(0, 1, n))
    ts = np.arange(n, dtype=np.int64) * 86_400_000_000_000
    return BarSeries(symbol="X", ts=ts, open=close, high=close + 1,
                     low=close - 1, close=close, volume=np.full(n, 1000.0))


@pytest.mark.parametrize("text", AT_THE_BOUND.values(), ids=AT_THE_BOUND.keys())
def test_every_stage_runs_a_tree_at_the_bound_within_a_fixed_stack(text: str) -> None:
    assert parse_rule(text).parts  # within the bound: accepted
    stages: list[Callable[[], object]] = [
        lambda: parse_rule(text),
        lambda: check_rule(text),
        lambda: check_rule(text).canonical_text,
        lambda: [render(p.expr) for p in parse_rule(text).parts],
        lambda: compile_plan(check_rule(text)),
        lambda: hash(check_rule(text).parts),
        lambda: evaluate(text, _bars()),
    ]
    for stage in stages:
        with stack_budget(STACK_BUDGET):
            stage()


def test_nesting_beyond_the_parser_bound_is_refused_with_the_same_rule_id() -> None:
    for text in ("entry: " + _nested(MAX_DEPTH, "sma(", ", 2)", "close") + " > 0",
                 "entry: " + "not " * MAX_DEPTH + "close > 1",
                 "entry: " + _nested(MAX_DEPTH, "(", ")", "close > 1")):
        with pytest.raises(BadInputError) as info:
            parse_rule(text)
        assert info.value.rule == "expression-too-deep", text
        assert info.value.position is not None


def test_the_programmatic_rule_text_is_checked_like_parsed_text() -> None:
    parsed = parse_rule("entry: " + chain("+", MAX_HEIGHT - 1) + " > 0")
    again = RuleText(parts=parsed.parts, source=parsed.source)
    assert check_rule(again).lookback == 0


def test_the_cli_refuses_a_too_deep_rule_with_exit_2_not_a_traceback() -> None:
    result = cli("strategies", "validate", "--rule", TOO_DEEP["sum"])
    assert result.exit_code == 2, result.output
    assert "expression-too-deep" in result.stderr
    assert "Traceback" not in result.output + result.stderr
