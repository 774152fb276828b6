"""The backtest kernels give bit-identical results interpreted (small inputs, numba not yet
loaded) and compiled: simulation, metrics, crossings and the summary row, on every path.

One fresh process runs every case before numba is imported (so each call is interpreted),
then imports numba and runs them again compiled; the two fingerprints (float bits, not
rounded values) must be equal, and the first pass must really not have loaded numba.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

CASES = textwrap.dedent(r"""
    import hashlib, json, sys
    import numpy as np
    from signalfactory.domain.backtest import _core, metrics as m
    from signalfactory.domain.backtest.config import BacktestConfig
    from signalfactory.domain.backtest.engine import run_backtest
    from signalfactory.domain.backtest.signals import Signals, crossings

    def series(seed, n, drift):
        rng = np.random.default_rng(seed)
        close = 100.0 * np.exp(np.cumsum(rng.normal(drift, 0.02, n)))
        open_ = close * np.exp(rng.normal(0, 0.005, n))
        high = np.maximum(open_, close) * (1 + rng.random(n) * 0.02)
        low = np.minimum(open_, close) * (1 - rng.random(n) * 0.02)
        return open_, high, low, close, rng

    CONFIGS = [
        {}, {"fee_pct": 0.001, "slippage_bps": 5.0}, {"fee_fixed": 2.5, "fill": "next_open"},
        {"direction": "short"}, {"direction": "both", "fee_pct": 0.0005},
        {"direction": "both", "fill": "next_open", "whole_units": False},
        {"sizing": "cash", "size_value": 2500.0}, {"sizing": "units", "size_value": 7.0},
        {"sizing": "risk", "size_value": 0.01, "atr_multiple": 2.0},
        {"stop_loss": 0.03, "take_profit": 0.05}, {"trailing_stop": 0.04, "fee_pct": 0.001},
        {"stop_loss": 0.02, "trailing_stop": 0.03, "direction": "both", "fill": "next_open"},
        {"close_at_end": True}, {"sizing": "fraction", "size_value": 0.5},
    ]

    def run_all():
        digest = hashlib.sha256()
        for seed, (n, drift) in enumerate([(2520, 0.0003), (300, -0.004), (64, 0.01)]):
            o, h, lo, c, rng = series(seed, n, drift)
            ts = np.arange(n, dtype=np.int64) * 86_400_000_000_000
            up, down = crossings(c, np.convolve(c, np.ones(10) / 10, mode="same"))
            digest.update(up.tobytes() + down.tobytes())
            atr = np.abs(h - lo)
            for extra in CONFIGS:
                config = BacktestConfig(**extra)
                sig = Signals.build(n, long_entry=up | (rng.random(n) < 0.02), long_exit=down,
                                    short_entry=down, short_exit=up)
                result = run_backtest(o, h, lo, c, sig, config,
                                      atr=atr if config.needs_atr else None)
                digest.update(result.equity.tobytes())
                digest.update(float(result.final_equity).hex().encode())
                for row in result.trades.as_rows():
                    digest.update(json.dumps(row, sort_keys=True).encode())
                for key, value in sorted(result.metrics(c, 252.0, ts).as_dict().items()):
                    digest.update(f"{key}={float(value).hex()}".encode())
                rec = np.column_stack([result.trades.entry_idx, result.trades.exit_idx,
                                       result.trades.entry_price, result.trades.exit_price,
                                       result.trades.size, result.trades.pnl,
                                       result.trades.ret, result.trades.fees,
                                       result.trades.reason]).astype(np.float64)
                out = np.empty(m.N_SUMMARY)
                m.summary_nb(np.ascontiguousarray(result.equity), rec, 10_000.0, 252.0, out)
                digest.update(out.tobytes())
        # a short squeeze: the position is liquidated and trading halts
        c = np.linspace(100.0, 400.0, 200)
        sig = Signals.build(200, short_entry=np.arange(200) == 3)
        result = run_backtest(c, c * 1.01, c * 0.99, c, sig, BacktestConfig(direction="short"))
        digest.update(result.equity.tobytes() + float(result.final_equity).hex().encode())
        digest.update(json.dumps(result.trades.as_rows()).encode())
        return digest.hexdigest()

    interpreted = run_all()
    numba_before = "numba" in sys.modules
    # plain floats raise where numba's error model gives inf: that call is redone compiled
    from signalfactory.domain.kernels import Kernel
    def share(a, b):
        return a / b
    share = Kernel(share, {"error_model": "numpy"})
    fell_back = share(1.0, 0.0) == np.inf and len(share.signatures) == 1
    import signalfactory.domain.numba_setup  # from here on every kernel call is compiled
    compiled = run_all()
    print(json.dumps({"interpreted": interpreted, "compiled": compiled,
                      "numba_before": numba_before, "fell_back": fell_back,
                      "compiled_signatures": len(_core.simulate_nb.signatures)}))
""")


@pytest.mark.timeout(240)
def test_interpreted_and_compiled_kernels_agree_to_the_bit() -> None:
    done = subprocess.run([sys.executable, "-c", CASES], capture_output=True, text=True,
                          check=False, timeout=230)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["numba_before"] is False  # the first pass really was interpreted
    assert result["fell_back"] is True
    assert result["compiled_signatures"] >= 1  # and the second really compiled
    assert result["interpreted"] == result["compiled"]
