"""Operations over a block of instruments in CSR layout that never cross an instrument boundary.

A block is one or more instruments' rows end to end; ``offsets`` (local to the block, starting
at 0) delimit them. Everything here treats each instrument's slice independently.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import numpy as np
import numpy.typing as npt
import talib

from signalfactory.domain.indicators.spec import FloatArray, IntArray

BoolArray = npt.NDArray[np.bool_]
F = TypeVar("F", bound=Callable[..., Any])


def njit_cached(fn: F) -> F:
    """numba-compile ``fn`` on its first call, caching the machine code on disk when a cache
    dir is writable. Lazy because importing numba and setting up its first dispatcher costs
    about a second in a fresh process, and most rules never call these kernels (they run
    from Python, never from other kernels)."""
    compiled: Any = None

    @functools.wraps(fn)
    def first_call_compiles(*args: Any) -> Any:  # noqa: ANN401 - the kernel's own values
        nonlocal compiled
        if compiled is None:
            import signalfactory.domain.numba_setup as numba

            try:
                compiled = numba.njit(cache=True)(fn)
            except RuntimeError:  # no writable cache location (read-only install)
                compiled = numba.njit(fn)
        return compiled(*args)

    return cast(F, first_call_compiles)


def each_slice(func: Callable[..., Any], inputs: Sequence[FloatArray], offsets: IntArray,
               *params: object, out: FloatArray | None = None) -> FloatArray:
    """Run a one-output TA-Lib-style function on each instrument's slice, concatenated."""
    func = getattr(func, "__wrapped__", func)  # skip TA-Lib's pandas/polars adapter
    if out is None:
        out = np.empty(int(offsets[-1]))
    bounds: list[int] = offsets.tolist()
    for a, b in itertools.pairwise(bounds):
        out[a:b] = func(*[x[a:b] for x in inputs], *params)
    return out


def rolling_max(x: FloatArray, offsets: IntArray, n: int,
                out: FloatArray | None = None) -> FloatArray:
    """Highest of the last ``n`` rows, current row included (TA-Lib MAX); NaN if one is NaN."""
    if n == 1:
        return _copy(x, out)
    return _undefined_if_gap(x, offsets, n, each_slice(talib.MAX, [x], offsets, n, out=out))


def rolling_min(x: FloatArray, offsets: IntArray, n: int,
                out: FloatArray | None = None) -> FloatArray:
    """Lowest of the last ``n`` rows, current row included (TA-Lib MIN); NaN if one is NaN."""
    if n == 1:
        return _copy(x, out)
    return _undefined_if_gap(x, offsets, n, each_slice(talib.MIN, [x], offsets, n, out=out))


def _undefined_if_gap(x: FloatArray, offsets: IntArray, n: int, out: FloatArray) -> FloatArray:
    """NaN wherever the window holds a NaN (TA-Lib only skips leading NaN)."""
    missing = np.isnan(x)
    if not missing.any():
        return out
    count = np.cumsum(missing, dtype=np.int64)
    in_window = count.copy()
    in_window[n:] -= count[:-n]
    # rows less than n - 1 into an instrument are warm-up (NaN) anyway, so windows that
    # would reach into the previous instrument do not matter
    out[in_window > 0] = np.nan
    return out


def first_rows(offsets: IntArray, n: int) -> IntArray:
    """Row numbers of the first ``n`` rows of every instrument (fewer if it is shorter)."""
    starts, ends = offsets[:-1], offsets[1:]
    if n == 1:
        return starts[starts < ends]
    rows = starts[:, None] + np.arange(n, dtype=np.int64)[None, :]
    result: IntArray = rows[rows < ends[:, None]]
    return result


def shift(x: FloatArray, offsets: IntArray, n: int,
          out: FloatArray | None = None) -> FloatArray:
    """Value ``n`` rows back within the same instrument; NaN for its first ``n`` rows."""
    if n == 0:
        return x
    if out is None:
        out = np.empty_like(x)
    if n < len(x):
        out[n:] = x[:-n]
    out[:n] = np.nan
    out[first_rows(offsets, n)] = np.nan
    return out


def shift_bool(x: BoolArray, offsets: IntArray, n: int,
               out: BoolArray | None = None) -> BoolArray:
    """Condition ``n`` rows back within the same instrument; False for its first ``n`` rows."""
    if n == 0:
        return x
    if out is None:
        out = np.empty_like(x)
    if n < len(x):
        out[n:] = x[:-n]
    out[:n] = False
    out[first_rows(offsets, n)] = False
    return out


def _copy(x: FloatArray, out: FloatArray | None) -> FloatArray:
    if out is None:
        return x.copy()
    out[...] = x
    return out
