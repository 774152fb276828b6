"""Memory: 10,000,000 bars of one symbol, and 5,000 symbols x 10 years of daily bars, each
backtest (with metrics) inside 2 GB. Measured as the peak RSS of a fresh subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

LIMIT_MB = 2048

SINGLE = """
import numpy as np, talib
from signalfactory.domain.backtest import BacktestConfig, Signals, run_backtest
n = 10_000_000
rng = np.random.default_rng(0)
close = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
high, low = close * 1.001, close * 0.999
sig = Signals.crossover(talib.SMA(close, 10), talib.SMA(close, 30))
config = BacktestConfig(fee_pct=0.001, stop_loss=0.05, whole_units=False)
result = run_backtest(close, high, low, close, sig, config, equity_dtype=np.float32)
metrics = result.metrics(close, 252)
summary = {"bars": result.n_bars, "trades": len(result.trades), "sharpe": metrics.sharpe}
"""

UNIVERSE = """
import numpy as np, talib
from signalfactory.domain.backtest import BacktestConfig, Signals, run_universe
from signalfactory.domain.bars import BarUniverse
n_inst, n_bars = 5_000, 2_520
total = n_inst * n_bars
rng = np.random.default_rng(0)
close = np.empty(total)
for i in range(n_inst):
    close[i * n_bars:(i + 1) * n_bars] = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, n_bars)))
ts = np.tile(np.arange(n_bars, dtype=np.int64) * 86_400 * 10**9, n_inst)
u = BarUniverse(tuple(f"S{i}" for i in range(n_inst)),
                np.arange(n_inst + 1, dtype=np.int64) * n_bars, ts, close, close * 1.01,
                close * 0.99, close, np.ones(total))

def signals(sub):
    up = np.empty(sub.n_bars, bool)
    down = np.empty(sub.n_bars, bool)
    for i in range(sub.n_instruments):
        a, b = sub.offsets[i], sub.offsets[i + 1]
        s = Signals.crossover(talib.SMA(sub.close[a:b], 10), talib.SMA(sub.close[a:b], 30))
        up[a:b], down[a:b] = s.long_entry, s.long_exit
    return Signals(up, down, down, up)

result = run_universe(u, signals, BacktestConfig(fee_pct=0.001, direction="both"))
summary = {"bars": int(u.n_bars), "trades": len(result.trades),
           "instruments": int(result.summary.shape[0])}
"""

FOOTER = """
import json, resource
summary["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(summary))
"""


def peak(script: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(script) + FOOTER],
                         capture_output=True, text=True, check=True, timeout=600)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.slow
def test_ten_million_bars_of_one_symbol_fit_in_two_gigabytes() -> None:
    result = peak(SINGLE)
    assert result["bars"] == 10_000_000 and result["trades"] > 1_000
    assert result["peak_mb"] < LIMIT_MB


@pytest.mark.slow
def test_five_thousand_symbols_of_ten_years_fit_in_two_gigabytes() -> None:
    result = peak(UNIVERSE)
    assert result["bars"] == 12_600_000 and result["instruments"] == 5_000
    assert result["peak_mb"] < LIMIT_MB
