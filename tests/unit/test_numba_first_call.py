"""numba's first call: no SciPy, kernels loaded by the warm-up, scan paths without numba."""

from __future__ import annotations

import json
import subprocess
import sys


def _run(code: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=300)
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_warm_up_loads_the_backtest_kernels_without_scipy() -> None:
    result = _run(
        "import json, sys\n"
        "from signalfactory.domain.backtest import _core\n"
        "before = len(_core.simulate_nb.signatures)\n"
        "from signalfactory.domain.backtest.warmup import warm_kernels\n"
        "warm_kernels()\n"
        "print(json.dumps({'before': before, 'after': len(_core.simulate_nb.signatures),\n"
        "                  'scipy': 'scipy' in sys.modules}))")
    assert result == {"before": 0, "after": 1, "scipy": False}


def test_the_probe_sees_scipy_when_it_is_imported_first() -> None:
    """numba_setup leaves an already-imported SciPy alone (the probe above can fail)."""
    result = _run(
        "import json, sys, scipy.linalg\n"
        "from signalfactory.domain.backtest.warmup import warm_kernels\n"
        "warm_kernels()\n"
        "print(json.dumps({'scipy': 'scipy' in sys.modules}))")
    assert result == {"scipy": True}


def test_scipy_still_imports_after_numba_is_set_up() -> None:
    result = _run(
        "import json\n"
        "import signalfactory.domain.numba_setup\n"
        "import scipy.linalg\n"
        "print(json.dumps({'ok': scipy.linalg.norm([3.0, 4.0]) == 5.0}))")
    assert result == {"ok": True}


def test_rule_evaluation_and_config_do_not_load_numba() -> None:
    result = _run(
        "import json, sys\n"
        "import numpy as np\n"
        "from signalfactory.domain.backtest.config import BacktestConfig\n"
        "from signalfactory.domain.bars import BarUniverse\n"
        "from signalfactory.domain.rules import check_rule, evaluate\n"
        "n = 300\n"
        "close = 100 + np.cumsum(np.sin(np.arange(2 * n) / 7.0))\n"
        "u = BarUniverse(symbols=('A', 'B'), offsets=np.array([0, n, 2 * n]),\n"
        "    ts=np.tile(np.arange(n, dtype=np.int64) * 86_400_000_000_000, 2),\n"
        "    open=close, high=close + 1, low=close - 1, close=close, volume=np.ones(2 * n))\n"
        "rule = check_rule('entry: crosses_above(sma(close, 5), sma(close, 20)) and '\n"
        "                  'rsi(close, 14) < 90')\n"
        "evaluate(rule, u)\n"
        "BacktestConfig()\n"
        "print(json.dumps({'numba': 'numba' in sys.modules}))")
    assert result == {"numba": False}
