"""The outcome of evaluating a rule or strategy over bars: signals aligned to the bars."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from signalfactory.domain.bars import BarSeries, BarUniverse, FloatArray, IntArray
from signalfactory.domain.errors import BadInputError

BoolArray = npt.NDArray[np.bool_]
SIGNAL_LABELS = ("entry", "exit", "short_entry", "short_exit")


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Per-bar results in the universe's row order (``offsets`` delimit the instruments).

    - ``entry``/``exit``/``short_entry``/``short_exit``: where each condition holds (False
      where the rule has no such part, and wherever a value it needs is missing).
    - ``score``: the ``score:`` expression's value at every bar if the rule has one; else,
      at bars where an entry (long or short) fires, how robustly the entry condition holds,
      in [0, 1] (see ``signalfactory.domain.rules.scoring``), and NaN elsewhere.
    - ``values``: canonical text of each named sub-expression (indicator outputs, highest/
      lowest, look-backs) -> its values, "the indicator values that decided" a signal. If
      ``value_rows`` is None they are aligned to the bars (row k = bar row k); otherwise
      ``values[text][k]`` is the value at bar row ``value_rows[k]`` (sorted), which by
      default are the rows where any signal fires. ``values_at(row)`` reads either layout.
    - ``lookback``: warm-up bars per instrument.
    """

    symbols: tuple[str, ...]
    offsets: IntArray
    ts: IntArray
    close: FloatArray
    entry: BoolArray
    exit: BoolArray
    short_entry: BoolArray
    short_exit: BoolArray
    score: FloatArray
    values: Mapping[str, FloatArray]
    lookback: int = 0
    value_rows: IntArray | None = None

    @property
    def n_bars(self) -> int:
        return int(self.ts.shape[0])

    @property
    def n_instruments(self) -> int:
        return len(self.symbols)

    def rows(self, instrument: int) -> slice:
        """Row range of instrument ``instrument``."""
        return slice(int(self.offsets[instrument]), int(self.offsets[instrument + 1]))

    def values_at(self, row: int) -> dict[str, float]:
        """Named values at bar row ``row`` (empty if they were not kept for that row)."""
        if self.value_rows is None:
            return {text: float(arr[row]) for text, arr in self.values.items()}
        k = int(np.searchsorted(self.value_rows, row))
        if k >= self.value_rows.shape[0] or int(self.value_rows[k]) != row:
            return {}
        return {text: float(arr[k]) for text, arr in self.values.items()}

    def signal(self, label: str) -> BoolArray:
        if label not in SIGNAL_LABELS:
            raise KeyError(label)
        arr: BoolArray = getattr(self, label)
        return arr

    @classmethod
    def from_arrays(cls, bars: BarSeries | BarUniverse, *, entry: BoolArray,
                    exit: BoolArray | None = None, short_entry: BoolArray | None = None,
                    short_exit: BoolArray | None = None, score: FloatArray | None = None,
                    values: Mapping[str, FloatArray] | None = None,
                    lookback: int = 0) -> Evaluation:
        """Build an evaluation from arrays a Python strategy computed over ``bars``."""
        universe = as_universe(bars)
        n = universe.n_bars

        def flags(name: str, arr: BoolArray | None) -> BoolArray:
            if arr is None:
                return np.zeros(n, dtype=bool)
            out = np.asarray(arr)
            if out.shape != (n,):
                raise BadInputError(f"{name} has shape {out.shape}, the bars have {n} rows")
            return out.astype(bool, copy=False)

        def floats(name: str, arr: FloatArray) -> FloatArray:
            out = np.asarray(arr, dtype=np.float64)
            if out.shape != (n,):
                raise BadInputError(f"{name} has shape {out.shape}, the bars have {n} rows")
            return out

        return cls(
            symbols=universe.symbols, offsets=universe.offsets, ts=universe.ts,
            close=universe.close, entry=flags("entry", entry), exit=flags("exit", exit),
            short_entry=flags("short_entry", short_entry),
            short_exit=flags("short_exit", short_exit),
            score=floats("score", np.full(n, np.nan) if score is None else score),
            values={k: floats(k, v) for k, v in (values or {}).items()}, lookback=lookback)


def as_universe(bars: BarSeries | BarUniverse) -> BarUniverse:
    """A universe view of ``bars`` (a single series becomes a one-instrument universe)."""
    if isinstance(bars, BarUniverse):
        return bars
    return BarUniverse(symbols=(bars.symbol,),
                       offsets=np.array([0, len(bars)], dtype=np.int64), ts=bars.ts,
                       open=bars.open, high=bars.high, low=bars.low, close=bars.close,
                       volume=bars.volume)
