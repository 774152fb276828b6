"""An ingest killed with SIGKILL leaves the store as before or fully updated, never between."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tests.helpers import cli, fingerprint


def _big_csv(path: Path, n_symbols: int, n_bars: int) -> None:
    rng = np.random.default_rng(0)
    dates = pd.bdate_range("2000-01-03", periods=n_bars)
    frames = []
    for i in range(n_symbols):
        close = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, n_bars)))
        frames.append(pd.DataFrame({"symbol": f"K{i:04d}", "date": dates, "open": close,
                                    "high": close * 1.01, "low": close * 0.99, "close": close,
                                    "volume": 100.0}))
    pd.concat(frames).to_csv(path, index=False)


def test_killed_ingest_is_all_or_nothing(sf_env: dict[str, str], tmp_path: Path) -> None:
    assert cli("sample", "--symbols", "3", "--bars", "40").exit_code == 0
    before = fingerprint()
    path = tmp_path / "big.csv"
    _big_csv(path, 200, 2520)
    outcomes = set()
    for delay in (0.3, 0.9, 1.6):
        proc = subprocess.Popen([sys.executable, "-m", "signalfactory", "ingest", str(path)],
                                env={**os.environ, **sf_env}, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        now = fingerprint()
        if now == before:
            outcomes.add("before")
            continue
        outcomes.add("after")
        # Complete: all 200 new symbols with all their bars, nothing partial.
        assert now["tables"]["instruments"][0] == 203
        assert now["bars"]["1d"][0] == 3 * 40 + 200 * 2520
        before = now
    # Whatever happened, the store still reads and a clean ingest completes on top of it.
    result = cli("ingest", str(path), "--json")
    assert result.exit_code == 0, result.output
    final = fingerprint()
    assert final["bars"]["1d"][0] == 3 * 40 + 200 * 2520
    assert outcomes
