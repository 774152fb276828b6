"""Syntax tree of a rule text, as written (before names and types are checked).

Every node records ``pos``, the character offset where it starts in the rule text, so the
checker can point at the offending spot. ``pos`` takes no part in equality.

Every node also knows its ``height`` (1 for a leaf), computed when it is made, and no node may
be higher than ``MAX_HEIGHT``: each stage after parsing (checker, canonical text, plan, default
score, even hashing the checked tree) walks the tree recursively, so bounding the height here
bounds the stack of all of them. A long left-associative chain (``close + close + ...``) is as
high as it is long; grouping it with parentheses makes it shallow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from signalfactory.domain.errors import BadInputError

#: highest tree a rule may have (levels of operators, calls and look-backs)
MAX_HEIGHT: Final = 100
#: the rule id of every "too deep" refusal (tree height here, nesting in the parser)
TOO_DEEP_RULE: Final = "expression-too-deep"
#: part labels a rule text may hold, in evaluation order
PART_LABELS: Final = ("entry", "exit", "short_entry", "short_exit", "score")


def too_deep(pos: int, message: str) -> BadInputError:
    return BadInputError(f"position {pos}: {message}", rule=TOO_DEEP_RULE, position=pos)


def _grown(node: Call | Index | Unary | Binary, *children: Expr) -> None:
    """Set ``node.height`` from its children's; refuse it if that is too high."""
    height = 1 + max((c.height for c in children), default=0)
    if height > MAX_HEIGHT:
        raise too_deep(node.pos, f"expression is deeper than {MAX_HEIGHT} levels (every "
                                 "operator, call or look-back in a chain adds one); group a "
                                 "long chain with parentheses, e.g. '(a + b) + (c + d)' "
                                 "instead of 'a + b + c + d', and write 'x[3]' rather than "
                                 "'x[1][1][1]'")
    object.__setattr__(node, "height", height)


@dataclass(frozen=True)
class Number:
    text: str
    pos: int = field(compare=False)
    height: int = field(default=1, init=False, compare=False, repr=False)

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
    height: int = field(default=1, init=False, compare=False, repr=False)


@dataclass(frozen=True)
class Keyword:
    name: str
    value: Expr
    pos: int = field(compare=False)
    height: int = field(default=1, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "height", self.value.height)


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Expr, ...]
    keywords: tuple[Keyword, ...]
    output: str | None
    pos: int = field(compare=False)
    output_pos: int = field(compare=False, default=-1)
    height: int = field(default=1, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        _grown(self, *self.args, *(k.value for k in self.keywords))


@dataclass(frozen=True)
class Index:
    """``operand[n]``: the value ``n`` bars back."""

    operand: Expr
    bars: Number
    pos: int = field(compare=False)
    height: int = field(default=1, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        _grown(self, self.operand)


@dataclass(frozen=True)
class Unary:
    op: str  # "-" or "not"
    operand: Expr
    pos: int = field(compare=False)
    height: int = field(default=1, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        _grown(self, self.operand)


@dataclass(frozen=True)
class Binary:
    op: str  # + - * / < <= > >= == != and or
    left: Expr
    right: Expr
    pos: int = field(compare=False)
    height: int = field(default=1, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        _grown(self, self.left, self.right)


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
