"""Load the backtest kernels before the first request needs them.

A kernel's first call in a process loads its machine code from numba's cache and sets up
numba's registries (about 0.2 s, more on a busy machine); a worker or API process does that
at start instead of making its first user wait. ``warm_kernels`` runs the single-instrument
path a backtest request takes (simulation and metrics) on a few synthetic bars, compiled:
it loads numba first, so the kernels do not take their interpreted path for small inputs
(`signalfactory.domain.kernels`), which would warm nothing.
"""

from __future__ import annotations

import time

import numpy as np

from signalfactory.domain.backtest.config import BacktestConfig
from signalfactory.domain.backtest.engine import run_backtest
from signalfactory.domain.backtest.signals import Signals

_BARS = 64


def warm_kernels() -> float:
    """Run the backtest kernels once on synthetic bars; returns the seconds it took."""
    start = time.perf_counter()
    import signalfactory.domain.numba_setup  # noqa: F401 - from now on kernels run compiled

    close = 100.0 + np.sin(np.arange(_BARS, dtype=np.float64) / 4.0)
    entries = np.zeros(_BARS, dtype=bool)
    exits = np.zeros(_BARS, dtype=bool)
    entries[::8], exits[4::8] = True, True
    signals = Signals.build(_BARS, long_entry=entries, long_exit=exits)
    ts = np.arange(_BARS, dtype=np.int64) * 86_400_000_000_000
    result = run_backtest(close, close + 1.0, close - 1.0, close, signals, BacktestConfig())
    result.metrics(close, 252.0, ts)
    return time.perf_counter() - start
