"""Turn an evaluation into signal records: one per instrument, bar and side that fired."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from signalfactory.domain.bars import IntArray
from signalfactory.domain.rules.result import BoolArray, Evaluation

Side = Literal["long", "short", "exit"]


@dataclass(frozen=True)
class SignalRecord:
    """One signal. ``bar`` counts from the instrument's first bar; ``row`` is the universe row.

    ``score`` is the bar's score (shared by every record of that bar), None where it is
    undefined (NaN; with the default score, bars without an entry). ``values`` holds the
    finite values of the rule's named sub-expressions at that bar (what decided it), when
    they were kept.
    """

    instrument: int
    symbol: str
    bar: int
    row: int
    ts: int
    side: Side
    score: float | None
    price: float
    values: Mapping[str, float]


def signal_records(evaluation: Evaluation, *, since_ts: int | None = None,
                   last_bar_only: bool = False) -> list[SignalRecord]:
    """Signals in row order, sides in the order long, short, exit.

    ``exit`` stands for the long exit and the short exit (one record if both fire).
    ``since_ts`` keeps bars at or after that timestamp (ns); ``last_bar_only`` keeps only
    each instrument's last bar ("today's recommendations" when the data ends at a date).
    """
    n = evaluation.n_bars
    keep = np.ones(n, dtype=bool)
    if since_ts is not None:
        keep &= evaluation.ts >= since_ts
    if last_bar_only:
        last = np.zeros(n, dtype=bool)
        ends = evaluation.offsets[1:]
        last[ends[ends > evaluation.offsets[:-1]] - 1] = True
        keep &= last
    sides: list[tuple[Side, BoolArray]] = [
        ("long", evaluation.entry), ("short", evaluation.short_entry),
        ("exit", evaluation.exit | evaluation.short_exit)]
    found: list[tuple[int, int, Side]] = []
    for order, (side, fired) in enumerate(sides):
        found.extend((int(row), order, side) for row in np.flatnonzero(fired & keep))
    found.sort()
    if not found:
        return []
    rows: IntArray = np.array([row for row, _, _ in found], dtype=np.int64)
    instruments = np.searchsorted(evaluation.offsets, rows, side="right") - 1
    # Gather every column at the signal rows at once (a record per row in Python costs
    # enough already): scores, bar times, prices, starts, and each named value.
    scores = evaluation.score[rows].tolist()
    times = evaluation.ts[rows].tolist()
    prices = evaluation.close[rows].tolist()
    bars = (rows - evaluation.offsets[instruments]).tolist()
    columns = _values_at(evaluation, rows)
    records = []
    isfinite = math.isfinite
    for j, ((row, _, side), inst) in enumerate(zip(found, instruments.tolist(), strict=True)):
        score = scores[j]
        values = {k: col[j] for k, col in columns.items() if isfinite(col[j])}
        records.append(SignalRecord(
            instrument=inst, symbol=evaluation.symbols[inst], bar=bars[j], row=row,
            ts=times[j], side=side, score=score if isfinite(score) else None,
            price=prices[j], values=values))
    return records


def _values_at(evaluation: Evaluation, rows: IntArray) -> dict[str, list[float]]:
    """Each named value at ``rows`` (NaN where it was not kept), as ``values_at`` reads them."""
    if not evaluation.values:
        return {}
    if evaluation.value_rows is None:
        return {k: np.asarray(v, dtype=np.float64)[rows].tolist()
                for k, v in evaluation.values.items()}
    kept = evaluation.value_rows
    at = np.searchsorted(kept, rows)
    hit = at < kept.shape[0]
    hit[hit] = kept[at[hit]] == rows[hit]
    at = np.where(hit, at, 0)
    out = {}
    for k, v in evaluation.values.items():
        picked = np.asarray(v, dtype=np.float64)[at] if kept.shape[0] else np.zeros(rows.shape)
        out[k] = np.where(hit, picked, np.nan).tolist()
    return out
