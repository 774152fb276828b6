"""Default score of a signal when the rule has no ``score:`` part: robustness.

The score says how clearly the entry condition holds, as a number in [0, 1] at the bars
where an entry (long or short) fires, NaN elsewhere (exits are not ranked: an exit is acted
on whatever its strength). It is computed from the values that decided it:

- a comparison ``l > r`` (or ``>=``) scores (l - r) / (|l| + |r|); ``l < r`` (``<=``) scores
  (r - l) / (|l| + |r|); ``==`` scores -|l - r| / (|l| + |r|) and ``!=`` the opposite; 0 when
  both sides are 0;
- ``and`` scores the minimum of its parts, ``or`` the maximum;
- a look-back ``cond[n]`` (and the "before" half of a cross) scores as ``cond`` n bars earlier.

This is the "robustness" of signal temporal logic made scale-free: it is >= 0 exactly when
the condition holds, does not depend on the price level, and is deterministic. E.g. for
``rsi(close, 14) < 30`` an RSI of 20 scores 0.2 and an RSI of 29 scores 0.017; for a cross
it is the smaller of how far apart the two lines are now and were one bar before.

When both entries fire on the same bar the score is the long entry's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from signalfactory.domain.bars import FloatArray, IntArray
from signalfactory.domain.indicators.slices import BoolArray
from signalfactory.domain.rules import ir
from signalfactory.domain.rules.plan import Plan

_PRIORITY = ("entry", "short_entry")


def robustness_score(plan: Plan, slots: list[Any], roots: list[tuple[str, int]],
                     out: FloatArray) -> None:
    """Write the robustness of the firing entry into ``out`` at every row where one fires."""
    by_label = dict(roots)
    taken: BoolArray | None = None
    for label in _PRIORITY:
        slot = by_label.get(label)
        if slot is None:
            continue
        fired = np.broadcast_to(np.asarray(slots[slot], dtype=bool), out.shape)
        if taken is not None:
            fired = fired & ~taken
        rows = np.flatnonzero(fired)
        if rows.size:
            with np.errstate(all="ignore"):
                out[rows] = _robustness(plan, slots, slot, rows)
        taken = fired if taken is None else taken | fired


def _robustness(plan: Plan, slots: list[Any], slot: int, rows: IntArray) -> FloatArray:
    """Robustness of condition ``slot`` at ``rows``, all of which are rows where it holds.

    Only holding parts need scoring: under ``and`` all parts hold; under ``or`` the maximum
    comes from a part that holds (a part that does not hold scores <= 0). And a look-back
    that holds at a row points at an earlier row of the same instrument.
    """
    step = plan.steps[slot]
    node = step.node
    if isinstance(node, ir.Compare):
        return _margin_at(_as_array(slots[step.args[0]]), _as_array(slots[step.args[1]]), rows,
                          _OP_CODES[node.op])
    if isinstance(node, ir.BoolShift):
        return _robustness(plan, slots, step.args[0], rows - node.bars)
    if isinstance(node, ir.AllOf):
        acc = _robustness(plan, slots, step.args[0], rows)
        for arg in step.args[1:]:
            np.minimum(acc, _robustness(plan, slots, arg, rows), out=acc)
        return acc
    if not isinstance(node, ir.AnyOf):
        raise TypeError(f"expected ir.AnyOf, got {type(node).__name__}")
    acc = np.full(rows.shape[0], -np.inf)
    for arg in step.args:
        value = slots[arg]
        holds: BoolArray = (value[rows] if isinstance(value, np.ndarray)
                            else np.full(rows.shape[0], bool(value)))
        if holds.any():
            acc[holds] = np.maximum(acc[holds], _robustness(plan, slots, arg, rows[holds]))
    return acc


_OP_CODES = {">": 0, ">=": 0, "<": 1, "<=": 1, "==": 2, "!=": 3}


def _as_array(value: object) -> FloatArray:
    """A slot value as an array; a constant becomes a one-element array."""
    if isinstance(value, np.ndarray):
        return value
    return np.full(1, float(value))  # type: ignore[arg-type]  # a constant slot: a number


def _margin_at(left: FloatArray, right: FloatArray, rows: IntArray, op: int) -> FloatArray:
    """Relative margin of a comparison at ``rows``, where it holds (so it is >= 0 there).

    op 0: left - right (> and >=), 1: right - left (< and <=), 2: == (always 0), 3: !=.
    A one-element array stands for a constant. Both sides 0 (0 / 0) gives 0, and so does
    inf / inf or a NaN. Plain numpy over the firing rows only (a few per instrument): a numba
    kernel here cost every fresh process ~0.5 s of numba's first-call set-up per scan.
    """
    if op == 2:
        return np.zeros(rows.shape[0])
    a = left[np.zeros_like(rows)] if left.shape[0] == 1 else left[rows]
    b = right[np.zeros_like(rows)] if right.shape[0] == 1 else right[rows]
    diff = a - b if op == 0 else b - a
    if op == 3:
        diff = np.abs(diff)
    scale = np.abs(a) + np.abs(b)
    with np.errstate(all="ignore"):
        margin = diff / scale
    result: FloatArray = np.where((scale > 0.0) & (margin > 0.0), margin, 0.0)
    return result
