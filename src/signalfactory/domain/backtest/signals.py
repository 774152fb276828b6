"""Entry/exit signal arrays, and the crossover helper strategies and sweeps use.

A crossover at bar *t* uses bars *t - 1* and *t* only: ``a`` crosses above ``b`` when
``a[t-1] < b[t-1]`` and ``a[t] > b[t]`` (backtesting.py's ``crossover``); NaN (indicator
warm-up) never crosses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from signalfactory.domain.errors import BadInputError
from signalfactory.domain.kernels import kernel

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]


@kernel(cache=True, nogil=True)
def crossings_into_nb(a: np.ndarray, b: np.ndarray, up: np.ndarray, down: np.ndarray) -> None:
    """Write ``a`` crossing above / below ``b`` into ``up`` / ``down`` (same length)."""
    n = a.shape[0]
    if n == 0:
        return
    up[0] = False
    down[0] = False
    pa = a[0]
    pb = b[0]
    for t in range(1, n):
        ca = a[t]
        cb = b[t]
        up[t] = pa < pb and ca > cb
        down[t] = pa > pb and ca < cb
        pa = ca
        pb = cb


def crossings(a: FloatArray, b: FloatArray) -> tuple[BoolArray, BoolArray]:
    """(a crosses above b, a crosses below b) per bar."""
    if a.shape != b.shape or a.ndim != 1:
        raise BadInputError("crossings need two 1-D arrays of the same length")
    up = np.empty(a.shape[0], dtype=np.bool_)
    down = np.empty(a.shape[0], dtype=np.bool_)
    crossings_into_nb(np.ascontiguousarray(a, dtype=np.float64),
                      np.ascontiguousarray(b, dtype=np.float64), up, down)
    return up, down


def mask_instrument_starts(line: FloatArray, offsets: npt.NDArray[np.int64],
                           warmup: int) -> FloatArray:
    """Set the first ``warmup`` values of every instrument of a universe-wide line to NaN.

    A fixed-lookback indicator (SMA, WMA, rolling max...) applied once to a universe's
    concatenated columns is right everywhere except where its window straddles two
    instruments: the first ``lookback - 1`` bars of each instrument. Masking those makes one
    TA-Lib call serve the whole universe (``warmup`` = lookback - 1; at least 1 so that a
    crossover never compares bars of two instruments). Recursive indicators (EMA, RSI) carry
    state across the boundary and must be computed per instrument instead. In place; returns
    ``line``.
    """
    starts = offsets[:-1]
    lengths = np.diff(offsets)
    width = max(int(warmup), 1)
    for k in range(width):
        rows = starts[lengths > k] + k
        line[rows] = np.nan
    return line


@dataclass(frozen=True)
class Signals:
    """Boolean arrays, one value per bar, computed from data up to and including that bar."""

    long_entry: BoolArray
    long_exit: BoolArray
    short_entry: BoolArray
    short_exit: BoolArray

    @classmethod
    def build(cls, n: int, *, long_entry: BoolArray | None = None,
              long_exit: BoolArray | None = None, short_entry: BoolArray | None = None,
              short_exit: BoolArray | None = None) -> Signals:
        """Signals for ``n`` bars; a missing array means "never"."""
        def arr(x: BoolArray | None, name: str) -> BoolArray:
            if x is None:
                return np.zeros(n, dtype=np.bool_)
            out = np.ascontiguousarray(x, dtype=np.bool_)
            if out.shape != (n,):
                raise BadInputError(f"signal {name} has shape {out.shape}, expected ({n},)")
            return out

        return cls(arr(long_entry, "long_entry"), arr(long_exit, "long_exit"),
                   arr(short_entry, "short_entry"), arr(short_exit, "short_exit"))

    @classmethod
    def crossover(cls, fast: FloatArray, slow: FloatArray) -> Signals:
        """Classic two-line cross: up-cross enters long / exits short, down-cross the reverse.

        With direction ``both`` an opposite cross flips the position; with ``long`` the
        short-side arrays are ignored (and vice versa).
        """
        up, down = crossings(fast, slow)
        return cls(up, down, down, up)

    def __len__(self) -> int:
        return int(self.long_entry.shape[0])

    def entry_count(self) -> int:
        return int(np.count_nonzero(self.long_entry)) + int(np.count_nonzero(self.short_entry))
