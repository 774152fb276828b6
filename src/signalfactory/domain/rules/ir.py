"""Checked rule tree ("IR"): names resolved, types known, parameters bound, ready to run.

Two kinds of node: numeric series (``Num``) and conditions (``Cond``). Conditions are kept in
negation normal form: the checker pushes ``not`` down to the comparisons (``not a < b``
becomes ``a >= b``) and ``crosses_above(a, b)`` becomes ``a > b and (a <= b)[1]``. A
comparison involving a missing value (NaN, e.g. during warm-up) is *unknown*, and unknown is
never a signal, also under ``not``: because negation sits only on comparisons, evaluating
every comparison with "NaN compares False" gives exactly that (three-valued logic collapsed
at the leaves).

Nodes are frozen and compare by structure, so equal sub-expressions written twice (in entry
and exit, say) are one node, computed once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from signalfactory.domain.indicators.spec import ParamValue

PRICE_NAMES: tuple[str, ...] = ("open", "high", "low", "close", "volume", "hl2", "hlc3", "ohlc4")


@dataclass(frozen=True)
class Const:
    value: float


@dataclass(frozen=True)
class Price:
    field: str


@dataclass(frozen=True)
class Apply:
    """One indicator computation (all its outputs) on given inputs and parameters."""

    indicator: str
    inputs: tuple[Num, ...]
    params: tuple[ParamValue, ...]


@dataclass(frozen=True)
class Output:
    call: Apply
    index: int


@dataclass(frozen=True)
class Shift:
    operand: Num
    bars: int


@dataclass(frozen=True)
class Window:
    kind: Literal["highest", "lowest"]
    operand: Num
    bars: int


@dataclass(frozen=True)
class Arith:
    op: Literal["+", "-", "*", "/"]
    left: Num
    right: Num


@dataclass(frozen=True)
class Neg:
    operand: Num


@dataclass(frozen=True)
class Func:
    name: Literal["abs", "min", "max"]
    args: tuple[Num, ...]


@dataclass(frozen=True)
class Compare:
    op: Literal["<", "<=", ">", ">=", "==", "!="]
    left: Num
    right: Num


@dataclass(frozen=True)
class BoolShift:
    operand: Cond
    bars: int


@dataclass(frozen=True)
class AllOf:
    args: tuple[Cond, ...]


@dataclass(frozen=True)
class AnyOf:
    args: tuple[Cond, ...]


Num = Const | Price | Output | Shift | Window | Arith | Neg | Func
Cond = Compare | BoolShift | AllOf | AnyOf
Node = Num | Cond | Apply

NEGATED: dict[str, Literal["<", "<=", ">", ">=", "==", "!="]] = {
    "<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "!=": "=="}


def children(node: Node) -> tuple[Node, ...]:
    """Direct sub-nodes, in evaluation order."""
    if isinstance(node, Const | Price):
        return ()
    if isinstance(node, Apply):
        return node.inputs
    if isinstance(node, Output):
        return (node.call,)
    if isinstance(node, Shift | Window | Neg | BoolShift):
        return (node.operand,)
    if isinstance(node, Arith | Compare):
        return (node.left, node.right)
    return node.args
