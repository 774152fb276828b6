"""Vectorised evaluation of a checked rule over a ``BarSeries`` or a whole ``BarUniverse``.

The universe's rows (all instruments end to end) are cut into blocks of whole instruments of
about ``block_rows`` rows. Within a block every step of the compiled plan runs once over all
the block's rows: indicators per instrument slice (TA-Lib on each slice) into one block-wide
array, elementwise operators on the block-wide arrays, look-backs and crosses shifted within
instrument boundaries (the first n bars of each instrument become NaN / False).

Why blocks: the working set of a block stays in the CPU cache, and each step writes into a
buffer allocated once per evaluation and reused by every block, instead of allocating (and
page-faulting) fresh memory per operation. ``block_rows=None`` runs the universe as one
block. Named values are kept at signal bars only unless asked for at every bar, in which case
indicators write them straight into the result arrays.
"""

from __future__ import annotations

from typing import Final, Literal

import numpy as np

from signalfactory.domain.bars import BarSeries, BarUniverse, FloatArray, IntArray
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.indicators.slices import BoolArray
from signalfactory.domain.rules.block import Block, Value, Workspace
from signalfactory.domain.rules.plan import Plan, compile_plan
from signalfactory.domain.rules.result import SIGNAL_LABELS, Evaluation, as_universe
from signalfactory.domain.rules.ruleset import RuleSet, check_rule
from signalfactory.domain.rules.scoring import robustness_score
from signalfactory.domain.rules.steps import run_plan
from signalfactory.domain.rules.syntax import RuleText

DEFAULT_BLOCK_ROWS: Final = 1 << 16
ValuesMode = Literal["signals", "all", "none"]


def evaluate(rule: str | RuleText | RuleSet, bars: BarSeries | BarUniverse, *,
             values: ValuesMode = "signals",
             block_rows: int | None = DEFAULT_BLOCK_ROWS) -> Evaluation:
    """Evaluate ``rule`` over every bar of ``bars``; see ``Evaluation`` for the result.

    ``values`` says at which bars the named sub-expressions' values are kept: ``"signals"``
    (default) at the bars where any signal fires, which is what signal records need;
    ``"all"`` at every bar (one float64 array per name over the whole universe, which costs
    memory bandwidth and RAM: 100 MB per name for 12.6 M bars); ``"none"`` not at all.
    """
    if values not in ("signals", "all", "none"):
        raise BadInputError(f"values must be 'signals', 'all' or 'none', got {values!r}")
    ruleset = check_rule(rule)
    universe = as_universe(bars)
    plan = compile_plan(ruleset)
    collector = _Collector(plan, universe.n_bars, values)
    offsets = universe.offsets
    ranges = split_blocks(offsets, block_rows)
    # every block reuses the same buffers (threads would not help: the per-instrument TA-Lib
    # calls are too short to run in parallel under the GIL; measured, no speed-up)
    workspace = Workspace(max((int(offsets[b] - offsets[a]) for a, b in ranges), default=0))
    for first, last in ranges:
        start = int(offsets[first])
        collector.run(Block(universe, start, int(offsets[last]),
                            offsets[first:last + 1] - start, ruleset.registry, plan, workspace))
    value_rows, kept = collector.values()
    out = collector.flags
    return Evaluation(symbols=universe.symbols, offsets=universe.offsets, ts=universe.ts,
                      close=universe.close, entry=out["entry"], exit=out["exit"],
                      short_entry=out["short_entry"], short_exit=out["short_exit"],
                      score=collector.score, values=kept, value_rows=value_rows,
                      lookback=ruleset.lookback)


class _Collector:
    """Universe-wide results, filled block by block (each block owns its rows)."""

    def __init__(self, plan: Plan, n: int, mode: ValuesMode) -> None:
        self.plan = plan
        self.mode = mode
        self.flags = {label: np.zeros(n, dtype=bool) for label in SIGNAL_LABELS}
        self.signal_labels = [label for label, _ in plan.roots if label != "score"]
        self.has_score = len(self.signal_labels) < len(plan.roots)
        self.score = np.empty(n) if self.has_score else np.full(n, np.nan)
        self.full = {text: np.empty(n) for text, _ in plan.named} if mode == "all" else {}
        self.sink_slots = {slot: text for text, slot in plan.named} if mode == "all" else {}
        # values at signal rows, appended block by block; sized for the worst case (every
        # row) so they are big allocations (huge pages) of which only the used part is touched
        picking = mode == "signals" and bool(plan.named)
        self.picked_rows = np.empty(n if picking else 0, dtype=np.int64)
        self.picked = [np.empty(n) for _ in plan.named] if picking else []
        self.count = 0

    def run(self, block: Block) -> None:
        rows = slice(block.start, block.stop)
        # indicators write reported values straight into the result arrays
        block.sinks = {slot: self.full[text][rows] for slot, text in self.sink_slots.items()}
        slots = run_plan(self.plan, block)
        for label, slot in self.plan.roots:
            target = self.score if label == "score" else self.flags[label]
            target[rows] = slots[slot]
        if not self.has_score:
            robustness_score(self.plan, slots, list(self.plan.roots), self.score[rows])
        if self.mode == "all":
            for slot, text in self.sink_slots.items():
                if slots[slot] is not block.sinks[slot]:
                    self.full[text][rows] = slots[slot]
        elif self.picked:
            local = np.flatnonzero(_any_signal([self.flags[label][rows]
                                                for label in self.signal_labels]))
            end = self.count + local.shape[0]
            np.add(local, block.start, out=self.picked_rows[self.count:end])
            for dest, (_, slot) in zip(self.picked, self.plan.named, strict=True):
                _pick(slots[slot], local, dest[self.count:end])
            self.count = end

    def values(self) -> tuple[IntArray | None, dict[str, FloatArray]]:
        """(rows the values are at, or None for every row; text -> values)."""
        if self.mode == "all":
            return None, self.full
        rows = self.picked_rows[:self.count]
        return rows, {text: values[:self.count]
                      for (text, _), values in zip(self.plan.named, self.picked, strict=False)}


def _any_signal(flags: list[BoolArray]) -> BoolArray:
    fired = flags[0].copy()
    for more in flags[1:]:
        fired |= more
    return fired


def _pick(value: Value, local: IntArray, out: FloatArray) -> None:
    if isinstance(value, np.ndarray):
        np.take(value, local, out=out, mode="clip")  # "raise" would buffer the output
    else:
        out.fill(float(value))


def split_blocks(offsets: IntArray, block_rows: int | None) -> list[tuple[int, int]]:
    """Instrument ranges ``[first, last)`` of at most ``block_rows`` rows (at least one
    instrument each), covering every instrument in order."""
    n_inst = offsets.shape[0] - 1
    ranges = []
    first = 0
    while first < n_inst:
        last = n_inst
        if block_rows is not None:
            limit = int(offsets[first]) + block_rows
            last = int(np.searchsorted(offsets, limit, side="right")) - 1
            last = min(max(last, first + 1), n_inst)
        ranges.append((first, last))
        first = last
    return ranges
