"""A collector process killed with SIGKILL in the middle of a run: the rerun resumes from the
cursors with no gap and no duplicate, and the store ends exactly as one clean run leaves it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from signalfactory.bootstrap import build_platform
from signalfactory.domain.timeframes import Timeframe
from signalfactory.services.marketdata.bars import load_universe
from signalfactory.services.sources import records
from signalfactory.services.sources.run import run_source
from signalfactory.settings import Settings
from signalfactory.testing.exchange_simulator import ExchangeSimulator, SymbolSpec, synthetic_bars

M1 = Timeframe.parse("1m")
SYMBOLS = [f"K{i:02d}" for i in range(12)]
BARS = 1500


def _cursors(home: Path) -> int:
    platform = build_platform(Settings(home=home))
    try:
        with platform.database.read(primary=True) as uow:
            return sum(uow.bars.cursor("sim", f"{s}/USDT", M1) is not None for s in SYMBOLS)
    finally:
        platform.close()


def test_a_killed_run_resumes_with_no_gap_and_no_duplicate(tmp_path: Path) -> None:
    home = tmp_path / "home"
    now_ms = int(time.time() * 1000)
    specs = [SymbolSpec(s, "USDT", bars=synthetic_bars(BARS + 200, end_ms=now_ms + 600_000,
                                                        seed=i))
             for i, s in enumerate(SYMBOLS)]
    platform = build_platform(Settings(home=home), migrate_db=True)
    with ExchangeSimulator(specs) as sim:
        records.add_source(platform, "sim", "ccxt", {
            "exchange": "binance", "base_url": sim.url, "rate_limit_ms": 0,
            "options": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False},
            "lookback_bars": BARS, "concurrency": 1, "batch_bars": 1}, [f"{s}/USDT" for s in
                                                                        SYMBOLS], "1m")
        platform.close()
        sim.set_latency(0.04, "/api/v3/klines")  # a run of ~1.5 s: time to kill it midway
        env = {**os.environ, "SIGNALFACTORY_HOME": str(home), "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).resolve().parents[2] / "src"), os.environ.get("PYTHONPATH", "")])}
        proc = subprocess.Popen([sys.executable, "-m", "signalfactory", "sources", "run", "sim"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        try:
            # kill once some symbols (one per transaction) are stored and others are not
            while _cursors(home) < 3:
                assert proc.poll() is None, "the run ended before it could be killed"
                assert time.monotonic() < deadline
                time.sleep(0.05)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(timeout=10)
        stored_at_kill = _cursors(home)
        assert 3 <= stored_at_kill < len(SYMBOLS), stored_at_kill
        sim.set_latency(0)
        platform = build_platform(Settings(home=home))
        try:
            rerun = run_source(platform, "sim")
            assert rerun.symbols == len(SYMBOLS)
            uni = load_universe(platform, M1)
        finally:
            platform.close()
    # every symbol: the closed bars of its window, each once, none missing, as the exchange
    # has them
    assert len(uni.symbols) == len(SYMBOLS)
    for series, spec in zip(uni, specs, strict=True):
        assert np.all(np.diff(series.ts) == M1.nanoseconds), series.symbol
        bars = spec.bars
        assert bars is not None
        first = int(np.searchsorted(bars.open_ms * 1_000_000, int(series.ts[0])))
        expected = bars.close[first:first + len(series)]
        np.testing.assert_allclose(series.close, expected, rtol=1e-9)
        assert len(series) >= BARS
