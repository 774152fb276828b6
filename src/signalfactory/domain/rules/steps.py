"""How each kind of IR step runs over a block: vectorised, into the block's buffers."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from signalfactory.domain.indicators.slices import rolling_max, rolling_min, shift, shift_bool
from signalfactory.domain.rules import ir
from signalfactory.domain.rules.block import Block, Value
from signalfactory.domain.rules.plan import Plan, Step


def run_plan(plan: Plan, block: Block) -> list[Value]:
    """Run every step over ``block``; returns the value of each slot."""
    slots: list[Value] = []
    with np.errstate(all="ignore"):  # NaN and inf are values here, not errors
        for step in plan.steps:
            slots.append(_RUNNERS[type(step.node)](step, slots, block))
    return slots


def _const(step: Step, slots: list[Value], block: Block) -> Value:
    if not isinstance(step.node, ir.Const):
        raise TypeError(f"expected ir.Const, got {type(step.node).__name__}")
    return step.node.value


def _price(step: Step, slots: list[Value], block: Block) -> Value:
    if not isinstance(step.node, ir.Price):
        raise TypeError(f"expected ir.Price, got {type(step.node).__name__}")
    return block.price(step.node.field)


def _apply(step: Step, slots: list[Value], block: Block) -> Value:
    node = step.node
    if not isinstance(node, ir.Apply):
        raise TypeError(f"expected ir.Apply, got {type(node).__name__}")
    indicator = block.registry[node.indicator]
    series = iter(step.args)
    inputs = []
    for k, inp in enumerate(indicator.inputs):
        if inp.field is not None:
            inputs.append(block.price(inp.field))
        else:
            inputs.append(block.series(slots[next(series)], (step.slot, "input", k)))
    reported = block.plan.output_slots.get(step.slot, ())
    out = []
    for k in range(len(indicator.outputs)):
        sink = block.sinks.get(reported[k]) if reported else None
        out.append(sink if sink is not None else block.workspace.get(step.slot, block.size,
                                                                     np.float64, k))
    return indicator.compute_block(inputs, block.offsets, node.params, out)


def _output(step: Step, slots: list[Value], block: Block) -> Value:
    if not isinstance(step.node, ir.Output):
        raise TypeError(f"expected ir.Output, got {type(step.node).__name__}")
    return slots[step.args[0]][step.node.index]


def _shift(step: Step, slots: list[Value], block: Block) -> Value:
    if not isinstance(step.node, ir.Shift):
        raise TypeError(f"expected ir.Shift, got {type(step.node).__name__}")
    # a constant too is undefined before the look-back: the first bars have no past
    x = block.series(slots[step.args[0]], (step.slot, "input", 0))
    return shift(x, block.offsets, step.node.bars, out=block.buffer(step))


def _window(step: Step, slots: list[Value], block: Block) -> Value:
    node = step.node
    if not isinstance(node, ir.Window):
        raise TypeError(f"expected ir.Window, got {type(node).__name__}")
    x = block.series(slots[step.args[0]], (step.slot, "input", 0))
    fn = rolling_max if node.kind == "highest" else rolling_min
    return fn(x, block.offsets, node.bars, out=block.buffer(step))


_ARITH: dict[str, np.ufunc] = {"+": np.add, "-": np.subtract, "*": np.multiply,
                               "/": np.divide}


def _arith(step: Step, slots: list[Value], block: Block) -> Value:
    node = step.node
    if not isinstance(node, ir.Arith):
        raise TypeError(f"expected ir.Arith, got {type(node).__name__}")
    a, b = slots[step.args[0]], slots[step.args[1]]
    out = block.buffer(step)
    _ARITH[node.op](a, b, out=out)
    if node.op == "/":
        out[np.broadcast_to(np.equal(b, 0.0), out.shape)] = np.nan  # x / 0 is undefined
    return out


def _neg(step: Step, slots: list[Value], block: Block) -> Value:
    return np.negative(slots[step.args[0]], out=block.buffer(step))


def _func(step: Step, slots: list[Value], block: Block) -> Value:
    node = step.node
    if not isinstance(node, ir.Func):
        raise TypeError(f"expected ir.Func, got {type(node).__name__}")
    out = block.buffer(step)
    if node.name == "abs":
        return np.abs(slots[step.args[0]], out=out)
    combine = np.minimum if node.name == "min" else np.maximum
    combine(slots[step.args[0]], slots[step.args[1]], out=out)
    for arg in step.args[2:]:
        combine(out, slots[arg], out=out)
    return out


_COMPARE: dict[str, np.ufunc] = {"<": np.less, "<=": np.less_equal, ">": np.greater,
                                 ">=": np.greater_equal, "==": np.equal}


def _compare(step: Step, slots: list[Value], block: Block) -> Value:
    node = step.node
    if not isinstance(node, ir.Compare):
        raise TypeError(f"expected ir.Compare, got {type(node).__name__}")
    a, b = slots[step.args[0]], slots[step.args[1]]
    out = block.buffer(step, np.bool_)
    if node.op == "!=":
        # NaN != x would be True; a comparison with a missing value is unknown: False
        np.less(a, b, out=out)
        out |= np.greater(a, b)
    else:
        _COMPARE[node.op](a, b, out=out)
    return out


def _bool_shift(step: Step, slots: list[Value], block: Block) -> Value:
    if not isinstance(step.node, ir.BoolShift):
        raise TypeError(f"expected ir.BoolShift, got {type(step.node).__name__}")
    x = slots[step.args[0]]
    if not isinstance(x, np.ndarray):
        x = np.full(block.size, bool(x))
    return shift_bool(x, block.offsets, step.node.bars, out=block.buffer(step, np.bool_))


def _all_of(step: Step, slots: list[Value], block: Block) -> Value:
    return _reduce(np.logical_and, [slots[a] for a in step.args], block.buffer(step, np.bool_))


def _any_of(step: Step, slots: list[Value], block: Block) -> Value:
    return _reduce(np.logical_or, [slots[a] for a in step.args], block.buffer(step, np.bool_))


def _reduce(op: np.ufunc, args: list[Value], out: npt.NDArray[np.bool_]) -> Value:
    op(args[0], args[1], out=out)
    for arg in args[2:]:
        op(out, arg, out=out)
    return out


_RUNNERS: dict[type, Callable[[Step, list[Value], Block], Value]] = {
    ir.Const: _const, ir.Price: _price, ir.Apply: _apply, ir.Output: _output,
    ir.Shift: _shift, ir.Window: _window, ir.Arith: _arith, ir.Neg: _neg, ir.Func: _func,
    ir.Compare: _compare, ir.BoolShift: _bool_shift, ir.AllOf: _all_of, ir.AnyOf: _any_of,
}
