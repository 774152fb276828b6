"""Tokenizer and parser of the rule language: structure, canonical text and syntax errors."""

from __future__ import annotations

import pytest

from signalfactory.domain.errors import BadInputError
from signalfactory.domain.rules import parse_rule, render_rule
from signalfactory.domain.rules.syntax import Binary, Call, Index, Name, Number, Unary, render
from signalfactory.domain.rules.tokens import tokenize

SPEC_RULE = """entry: crosses_above(sma(close, 10), sma(close, 30)) and rsi(close, 14) < 70
exit: crosses_below(sma(close, 10), sma(close, 30)) or close < lowest(low, 20)[1]"""


def error(text: str) -> BadInputError:
    with pytest.raises(BadInputError) as info:
        parse_rule(text)
    assert info.value.position is not None
    assert info.value.detail.startswith(f"position {info.value.position}: ")
    return info.value


def test_the_example_rule_parses_into_the_expected_tree() -> None:
    rule = parse_rule(SPEC_RULE)
    assert [p.label for p in rule.parts] == ["entry", "exit"]
    entry = rule.parts[0].expr
    assert isinstance(entry, Binary) and entry.op == "and"
    cross = entry.left
    assert isinstance(cross, Call) and cross.name == "crosses_above"
    assert cross.args[0] == Call("sma", (Name("close", 0), Number("10", 0)), (), None, 0)
    assert isinstance(entry.right, Binary) and entry.right.op == "<"
    exit_ = rule.parts[1].expr
    assert isinstance(exit_, Binary) and exit_.op == "or"
    look = exit_.right.right  # type: ignore[union-attr]
    assert isinstance(look, Index) and look.bars.text == "1"


def test_precedence_and_associativity() -> None:
    expr = parse_rule("entry: not a + b * c > -d - e and f or g < h").parts[0].expr
    assert render(expr) == "((not ((a + (b * c)) > ((-d) - e))) and f) or (g < h)"
    expr = parse_rule("entry: a - b - c > a / b / c").parts[0].expr
    assert render(expr) == "((a - b) - c) > ((a / b) / c)"


def test_separators_comments_and_continuation_lines() -> None:
    text = ("# a comment line\n"
            "entry: close > open   # trailing comment\n"
            "   and volume > 0\n"
            "\n"
            "exit: close < open; score: close - open\n")
    rule = parse_rule(text)
    assert [p.label for p in rule.parts] == ["entry", "exit", "score"]
    assert render(rule.parts[0].expr) == "(close > open) and (volume > 0)"
    multi = parse_rule("entry: crosses_above(\n  sma(close, 10),\n  sma(close, 30)\n)")
    assert render(multi.parts[0].expr) == "crosses_above(sma(close, 10), sma(close, 30))"


def test_canonical_text_ignores_layout_case_and_part_order() -> None:
    a = parse_rule("EXIT: Close<Open\nentry:   CLOSE >  open # why not")
    b = parse_rule("entry: close > open; exit: close < open")
    assert render_rule(a) == render_rule(b) == "entry: close > open\nexit: close < open"


def test_keywords_outputs_and_numbers() -> None:
    expr = parse_rule("entry: bbands(close, 20, nbdevup=2.5).upper[2] > 1e3").parts[0].expr
    assert isinstance(expr, Binary)
    look = expr.left
    assert isinstance(look, Index)
    call = look.operand
    assert isinstance(call, Call) and call.output == "upper"
    assert call.keywords[0].name == "nbdevup" and render(call.keywords[0].value) == "2.5"
    assert isinstance(expr.right, Number) and expr.right.value == 1000.0
    assert not expr.right.is_integer
    assert parse_rule("entry: close > .5").parts[0].expr.right == Number(".5", 0)  # type: ignore[union-attr]


def test_positions_are_character_offsets() -> None:
    toks = tokenize("entry: rsi(close,14)<30")
    assert [(t.text, t.pos) for t in toks[:6]] == [
        ("entry", 0), (":", 5), ("rsi", 7), ("(", 10), ("close", 11), (",", 16)]


@pytest.mark.parametrize(("text", "position", "fragment"), [
    ("entry: sma(close, 10 20) > 1", 21, "expected ',' or ')' after argument 2 of sma(), "
                                         "found number 20"),
    ("entry: sma(close,, 10) > 1", 17, "expected an expression after ',', found ','"),
    ("entry: (close > 1", 17, "expected ')' to close '(' at position 7, found end of rule"),
    ("entry: close >", 14, "expected an expression after '>', found end of rule"),
    ("entry: close > 1 and", 20, "expected an expression after 'and'"),
    ("entry: 1 < close < 2", 17, "comparisons cannot be chained"),
    ("entry: close = 1", 13, "use '==' to test equality"),
    ("entry: close > 1 && open > 1", 17, "use 'and'"),
    ("entry: close $ 1", 13, "unexpected character '$'"),
    ("entry: close[1.5] > 1", 13, "whole number of bars"),
    ("entry: close[x] > 1", 13, "whole number of bars inside '[ ]'"),
    ("entry: close[1 > 1", 15, "expected ']' after the look-back"),
    ("entry: macd(close)[1].signal > 0", 21, "'.output' must directly follow"),
    ("entry: macd(close).3 > 0", 18, "found number .3"),
    ("entry: macd(close). > 0", 20, "expected an output name after 'macd(...).', found '>'"),
    ("entry: 12abc > 1", 9, "unexpected 'a' after number 12"),
    ("entry: close > 1 exit: close < 1", 17, "expected an operator or the end of the 'entry' part"),
    ("entry close > 1", 6, "expected ':' after 'entry'"),
    ("buy: close > 1", 0, "expected a part label"),
    ("entry:", 6, "expected an expression after 'entry:'"),
    ("entry: close > 1; entry: close < 1", 18, "part 'entry:' appears twice"),
    ("exit: close > 1", 0, "'exit:' needs an 'entry:' part"),
    ("score: close", 0, "a rule needs an 'entry:' part"),
    ("", 0, "a rule needs an 'entry:' part"),
    ("entry: sma(x=close, 5) > 1", 20, "positional argument after keyword argument"),
    ("entry: f(a=1, a=2) > 1", 14, "keyword 'a' given twice"),
    ("entry: and > 1", 7, "found keyword 'and'"),
    ("entry: close > ()", 16, "expected an expression inside '( )'"),
])
def test_syntax_errors_say_what_was_expected_and_where(text: str, position: int,
                                                       fragment: str) -> None:
    err = error(text)
    assert err.position == position, err.detail
    assert fragment in err.detail


def test_deep_nesting_is_refused_not_a_crash() -> None:
    err = error("entry: " + "(" * 500 + "close" + ")" * 500 + " > 1")
    assert "nested more than" in err.detail
    err = error("entry: " + "not " * 500 + "close > 1")
    assert "nested more than" in err.detail
    err = error("entry: close > " + "-" * 500 + "1")
    assert "nested more than" in err.detail


def test_overlong_text_is_refused() -> None:
    err = error("entry: close > 1" + " " * 30_000)
    assert "longer than" in err.detail


def test_unary_not_and_minus() -> None:
    expr = parse_rule("entry: not not close > -open").parts[0].expr
    assert isinstance(expr, Unary) and expr.op == "not"
    assert isinstance(expr.operand, Unary) and expr.operand.op == "not"
    assert render(expr) == "not (not (close > (-open)))"
