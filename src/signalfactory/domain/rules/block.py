"""A block of bars being evaluated, and the reusable buffers its steps write into."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from signalfactory.domain.bars import BarUniverse, FloatArray, IntArray
from signalfactory.domain.indicators.registry import IndicatorRegistry
from signalfactory.domain.rules.plan import Plan, Step

Value = Any  # float | FloatArray | BoolArray | tuple[FloatArray, ...]


@dataclass
class Workspace:
    """Buffers reused by every block of one evaluation: one per plan slot and output."""

    capacity: int
    _buffers: dict[tuple[object, int], np.ndarray[Any, Any]] = field(default_factory=dict)

    def get(self, key: object, size: int, dtype: type = np.float64,
            index: int = 0) -> np.ndarray[Any, Any]:
        buf = self._buffers.get((key, index))
        if buf is None or buf.dtype != dtype:
            buf = np.empty(self.capacity, dtype=dtype)
            self._buffers[(key, index)] = buf
        return buf[:size]


@dataclass
class Block:
    """A run of whole instruments: rows ``start:stop`` of the universe, local offsets."""

    universe: BarUniverse
    start: int
    stop: int
    offsets: IntArray
    registry: IndicatorRegistry
    plan: Plan
    workspace: Workspace
    #: slot -> this block's rows of the result array its values go into
    sinks: dict[int, FloatArray] = field(default_factory=dict)
    _prices: dict[str, FloatArray] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return self.stop - self.start

    def buffer(self, step: Step, dtype: type = np.float64,
               index: int = 0) -> npt.NDArray[Any]:
        """Where ``step`` writes its value: its result array if reported, else a buffer."""
        sink = self.sinks.get(step.slot) if index == 0 else None
        if sink is not None:
            return sink
        return self.workspace.get(step.slot, self.size, dtype, index)

    def price(self, name: str) -> FloatArray:
        found = self._prices.get(name)
        if found is None:
            found = self._price(name)
            self._prices[name] = found
        return found

    def _price(self, name: str) -> FloatArray:
        if name in ("hl2", "hlc3", "ohlc4"):
            fields = {"hl2": ("high", "low"), "hlc3": ("high", "low", "close"),
                      "ohlc4": ("open", "high", "low", "close")}[name]
            out: FloatArray = self.workspace.get(name, self.size)
            np.add(self.price(fields[0]), self.price(fields[1]), out=out)
            for extra in fields[2:]:
                np.add(out, self.price(extra), out=out)
            np.divide(out, float(len(fields)), out=out)
            return out
        column: FloatArray = self.universe.column(name)[self.start:self.stop]
        return column

    def series(self, value: Value, key: object) -> FloatArray:
        """``value`` as a block-wide float array (a constant is broadcast)."""
        if isinstance(value, np.ndarray):
            return value
        out: FloatArray = self.workspace.get(key, self.size)
        out.fill(float(value))
        return out
