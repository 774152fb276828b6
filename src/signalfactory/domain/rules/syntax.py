"""Syntax tree of a rule text, as written (before names and types are checked).

Every node records ``pos``, the character offset where it starts in the rule text, so the
checker can point at the offending spot. ``pos`` takes no part in equality.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

#: part labels a rule text may hold, in evaluation order
PART_LABELS: Final = ("entry", "exit", "short_entry", "short_exit", "score")


@dataclass(frozen=True)
class Number:
    text: str
    pos: int = field(compare=False)

    @property
    def value(self) -> float:
        return float(self.text)

    @property
    def is_integer(self) -> bool:
        return not any(c in self.text for c in ".eE")


@dataclass(frozen=True)
class Name:
    name: str
    pos: int = field(compare=False)


@dataclass(frozen=True)
class Keyword:
    name: str
    value: Expr
    pos: int = field(compare=False)


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Expr, ...]
    keywords: tuple[Keyword, ...]
    output: str | None
    pos: int = field(compare=False)
    output_pos: int = field(compare=False, default=-1)


@dataclass(frozen=True)
class Index:
    """``operand[n]``: the value ``n`` bars back."""

    operand: Expr
    bars: Number
    pos: int = field(compare=False)


@dataclass(frozen=True)
class Unary:
    op: str  # "-" or "not"
    operand: Expr
    pos: int = field(compare=False)


@dataclass(frozen=True)
class Binary:
    op: str  # + - * / < <= > >= == != and or
    left: Expr
    right: Expr
    pos: int = field(compare=False)


Expr = Number | Name | Call | Index | Unary | Binary


@dataclass(frozen=True)
class Part:
    label: str
    expr: Expr
    pos: int = field(compare=False)


@dataclass(frozen=True)
class RuleText:
    """A parsed rule: its parts by label, and the text it came from."""

    parts: tuple[Part, ...]
    source: str = field(compare=False)

    def part(self, label: str) -> Part | None:
        return next((p for p in self.parts if p.label == label), None)


def render(node: Expr) -> str:
    """Canonical text of an expression: lower case, one space around binary operators."""
    if isinstance(node, Number):
        return node.text
    if isinstance(node, Name):
        return node.name
    if isinstance(node, Call):
        args = [render(a) for a in node.args]
        args += [f"{k.name}={render(k.value)}" for k in node.keywords]
        text = f"{node.name}({', '.join(args)})"
        return f"{text}.{node.output}" if node.output else text
    if isinstance(node, Index):
        return f"{_atom(node.operand)}[{node.bars.text}]"
    if isinstance(node, Unary):
        inner = _atom(node.operand)
        return f"-{inner}" if node.op == "-" else f"not {inner}"
    return f"{_atom(node.left)} {node.op} {_atom(node.right)}"


def render_rule(rule: RuleText) -> str:
    """Canonical text of a whole rule: one ``label: expr`` per line, in label order."""
    order = {label: i for i, label in enumerate(PART_LABELS)}
    parts = sorted(rule.parts, key=lambda p: order[p.label])
    return "\n".join(f"{p.label}: {render(p.expr)}" for p in parts)


def _atom(node: Expr) -> str:
    text = render(node)
    return f"({text})" if isinstance(node, Binary | Unary) else text
