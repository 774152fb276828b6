"""Recursive-descent parser: rule text -> ``RuleText`` syntax tree.

Grammar (lowest precedence first)::

    rule       := part ((";" | line break) part)*
    part       := LABEL ":" expr            LABEL: entry exit short_entry short_exit score
    expr       := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | comparison
    comparison := sum (("<" | "<=" | ">" | ">=" | "==" | "!=") sum)?
    sum        := product (("+" | "-") product)*
    product    := unary (("*" | "/") unary)*
    unary      := "-" unary | postfix
    postfix    := primary ("[" INTEGER "]")*
    primary    := NUMBER | NAME | NAME "(" args? ")" ("." NAME)? | "(" expr ")"
    args       := arg ("," arg)*          arg := NAME "=" expr | expr
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from signalfactory.domain.errors import BadInputError
from signalfactory.domain.rules.syntax import (
    PART_LABELS,
    Binary,
    Call,
    Expr,
    Index,
    Keyword,
    Name,
    Number,
    Part,
    RuleText,
    Unary,
    too_deep,
)
from signalfactory.domain.rules.tokens import Token, tokenize

#: deepest nesting of parentheses, calls, 'not' and unary '-': each level costs the parser
#: about a dozen stack frames; the tree's height is bounded separately (``MAX_HEIGHT``)
MAX_DEPTH: Final = 32
_COMPARISONS: Final = ("<", "<=", ">", ">=", "==", "!=")
_KEYWORDS: Final = ("and", "or", "not")


def fail(pos: int, message: str) -> BadInputError:
    return BadInputError(f"position {pos}: {message}", position=pos)


def parse_rule(text: str) -> RuleText:
    """Parse a rule text; BadInputError (with ``position``) on a syntax error."""
    return _Parser(text).rule()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    # -- token helpers ---------------------------------------------------------------------
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def at(self, kind: str, text: str | None = None) -> bool:
        tok = self.tok
        return tok.kind == kind and (text is None or tok.text == text)

    def at_op(self, *ops: str) -> bool:
        return self.tok.kind == "op" and self.tok.text in ops

    def at_word(self, word: str) -> bool:
        return self.tok.kind == "name" and self.tok.text == word

    def advance(self) -> Token:
        tok = self.tok
        self.i += 1
        return tok

    def expect_op(self, op: str, context: str) -> Token:
        if not self.at_op(op):
            raise fail(self.tok.pos, f"expected '{op}' {context}, found {self.tok.describe()}")
        return self.advance()

    # -- rule and parts --------------------------------------------------------------------
    def rule(self) -> RuleText:
        parts: list[Part] = []
        while True:
            while self.at("sep"):
                self.advance()
            if self.at("end"):
                break
            part = self.part()
            if any(p.label == part.label for p in parts):
                raise fail(part.pos, f"part '{part.label}:' appears twice")
            parts.append(part)
            if not (self.at("sep") or self.at("end")):
                raise fail(self.tok.pos, f"expected an operator or the end of the "
                                         f"'{part.label}' part, found {self.tok.describe()}")
        labels = {p.label for p in parts}
        for exit_label, entry_label in (("exit", "entry"), ("short_exit", "short_entry")):
            part_ = next((p for p in parts if p.label == exit_label), None)
            if part_ is not None and entry_label not in labels:
                raise fail(part_.pos, f"'{exit_label}:' needs an '{entry_label}:' part")
        if not labels & {"entry", "short_entry"}:
            raise fail(0 if not parts else parts[0].pos,
                       "a rule needs an 'entry:' part (or 'short_entry:'), "
                       "e.g. 'entry: rsi(close, 14) < 30'")
        return RuleText(parts=tuple(parts), source=self.text)

    def part(self) -> Part:
        tok = self.tok
        labels = ", ".join(f"'{label}:'" for label in PART_LABELS)
        if tok.kind != "name" or tok.text not in PART_LABELS:
            raise fail(tok.pos, f"expected a part label ({labels}), found {tok.describe()}")
        self.advance()
        self.expect_op(":", f"after '{tok.text}'")
        if self.at("sep") or self.at("end"):
            raise fail(self.tok.pos, f"expected an expression after '{tok.text}:', "
                                     f"found {self.tok.describe()}")
        return Part(tok.text, self.expr(), tok.pos)

    # -- expressions -----------------------------------------------------------------------
    def nested_too_deep(self, pos: int) -> BadInputError:
        return too_deep(pos, f"expression nested more than {MAX_DEPTH} levels deep "
                             "(parentheses, calls, 'not' or '-'); write it flatter")

    def expr(self) -> Expr:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.nested_too_deep(self.tok.pos)
        try:
            node = self.and_expr()
            while self.at_word("or"):
                op = self.advance()
                node = Binary("or", node, self.operand(self.and_expr, op), op.pos)
            return node
        finally:
            self.depth -= 1

    def and_expr(self) -> Expr:
        node = self.not_expr()
        while self.at_word("and"):
            op = self.advance()
            node = Binary("and", node, self.operand(self.not_expr, op), op.pos)
        return node

    def not_expr(self) -> Expr:
        if self.at_word("not"):
            op = self.advance()
            self.depth += 1
            try:
                if self.depth > MAX_DEPTH:
                    raise self.nested_too_deep(op.pos)
                return Unary("not", self.operand(self.not_expr, op), op.pos)
            finally:
                self.depth -= 1
        return self.comparison()

    def comparison(self) -> Expr:
        node = self.sum()
        if self.at_op(*_COMPARISONS):
            op = self.advance()
            node = Binary(op.text, node, self.operand(self.sum, op), op.pos)
            if self.at_op(*_COMPARISONS):
                raise fail(self.tok.pos, "comparisons cannot be chained; "
                                         "join them with 'and', e.g. 'a < b and b < c'")
        elif self.at_op("="):
            raise fail(self.tok.pos, "'=' is not a comparison; use '==' to test equality")
        return node

    def sum(self) -> Expr:
        node = self.product()
        while self.at_op("+", "-"):
            op = self.advance()
            node = Binary(op.text, node, self.operand(self.product, op), op.pos)
        return node

    def product(self) -> Expr:
        node = self.unary()
        while self.at_op("*", "/"):
            op = self.advance()
            node = Binary(op.text, node, self.operand(self.unary, op), op.pos)
        return node

    def unary(self) -> Expr:
        if self.at_op("-"):
            op = self.advance()
            self.depth += 1
            try:
                if self.depth > MAX_DEPTH:
                    raise self.nested_too_deep(op.pos)
                return Unary("-", self.operand(self.unary, op), op.pos)
            finally:
                self.depth -= 1
        return self.postfix()

    def operand(self, parse: Callable[[], Expr], op: Token) -> Expr:
        """Parse the operand after ``op``, naming ``op`` if it is missing."""
        if self.at("sep") or self.at("end") or self.at_op(")", "]", ","):
            raise fail(self.tok.pos, f"expected an expression after '{op.text}', "
                                     f"found {self.tok.describe()}")
        return parse()

    def postfix(self) -> Expr:
        node = self.primary()
        while self.at_op("["):
            bracket = self.advance()
            if not self.at("number"):
                raise fail(self.tok.pos, "expected a whole number of bars inside '[ ]', "
                                         f"found {self.tok.describe()}")
            bars = Number(self.advance().text, self.tokens[self.i - 1].pos)
            if not bars.is_integer:
                raise fail(bars.pos, f"look-back must be a whole number of bars, got {bars.text}")
            self.expect_op("]", "after the look-back")
            node = Index(node, bars, bracket.pos)
        if self.at_op("."):
            raise fail(self.tok.pos, "'.output' must directly follow an indicator call, "
                                     "e.g. bbands(close, 20).upper[1]")
        return node

    def primary(self) -> Expr:
        tok = self.tok
        if tok.kind == "number":
            self.advance()
            return Number(tok.text, tok.pos)
        if tok.kind == "name":
            if tok.text in _KEYWORDS:
                raise fail(tok.pos, f"expected an expression, found keyword '{tok.text}'")
            self.advance()
            if self.at_op("("):
                return self.call(tok)
            return Name(tok.text, tok.pos)
        if self.at_op("("):
            self.advance()
            if self.at_op(")"):
                raise fail(self.tok.pos, "expected an expression inside '( )', found ')'")
            node = self.expr()
            self.expect_op(")", "to close '(' at position " + str(tok.pos))
            return node
        raise fail(tok.pos, f"expected a number, a name or '(', found {tok.describe()}")

    def call(self, name: Token) -> Call:
        self.advance()  # "("
        args: list[Expr] = []
        keywords: list[Keyword] = []
        if not self.at_op(")"):
            while True:
                if self.at("name") and self.tokens[self.i + 1].kind == "op" \
                        and self.tokens[self.i + 1].text == "=":
                    kw = self.advance()
                    self.advance()
                    if any(k.name == kw.text for k in keywords):
                        raise fail(kw.pos, f"keyword '{kw.text}' given twice")
                    keywords.append(Keyword(kw.text, self.operand(self.expr, kw), kw.pos))
                else:
                    if keywords:
                        raise fail(self.tok.pos, "positional argument after keyword argument")
                    args.append(self.operand(self.expr, self.tokens[self.i - 1]))
                if self.at_op(","):
                    self.advance()
                    continue
                if self.at_op(")"):
                    break
                count = len(args) + len(keywords)
                raise fail(self.tok.pos, f"expected ',' or ')' after argument {count} of "
                                         f"{name.text}(), found {self.tok.describe()}")
        self.advance()  # ")"
        output, output_pos = None, -1
        if self.at_op("."):
            self.advance()
            if not self.at("name"):
                raise fail(self.tok.pos, f"expected an output name after '{name.text}(...).', "
                                         f"found {self.tok.describe()}")
            out = self.advance()
            output, output_pos = out.text, out.pos
        return Call(name.text, tuple(args), tuple(keywords), output, name.pos, output_pos)
