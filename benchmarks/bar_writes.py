"""What a live feed's bar writes cost the writer: one-bar writes of many symbols on SQLite.

    python benchmarks/bar_writes.py [--symbols 500] [--history 500] [--writes 40]

Stores ``--history`` daily bars of ``--symbols`` symbols, then times ``--writes`` writes
of the next day's bar for every symbol through ``write_bars`` (as the collector and the
stream benchmark do), and, separately, the compactions those writes ran (folding the
columnar store's segment files). Prints p50/p99/max per write and the compactions' cost.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from signalfactory.adapters.storage.bar_repository import SqlBarRepository
from signalfactory.bootstrap import build_platform
from signalfactory.domain.instruments import InstrumentSpec
from signalfactory.domain.timeframes import Timeframe
from signalfactory.services.marketdata.bars import SymbolBars, load_universe, write_bars
from signalfactory.services.marketdata.sample import store_sample
from signalfactory.settings import Settings

DAY = Timeframe.parse("1d")
DAY_NS = 86_400 * 1_000_000_000


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--history", type=int, default=500)
    parser.add_argument("--writes", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        platform = build_platform(Settings(home=home, log_level="WARNING"), migrate_db=True)
        store_sample(platform, symbols=args.symbols, bars=args.history, seed=7)
        universe = load_universe(platform, DAY)
        symbols, ts = list(universe.symbols), int(universe.ts.max())
        close = universe.close[universe.offsets[1:] - 1].copy()
        compactions: list[float] = []
        compact = SqlBarRepository.compact

        def timed_compact(repo: SqlBarRepository, timeframe: Timeframe) -> bool:
            t0 = time.perf_counter()
            folded = compact(repo, timeframe)
            if folded:
                compactions.append((time.perf_counter() - t0) * 1000)
            return folded

        SqlBarRepository.compact = timed_compact  # type: ignore[method-assign]
        platform.bar_subscribers.clear()  # the writer's own cost, not live evaluation's
        writes: list[float] = []
        for _ in range(args.writes):
            ts += DAY_NS
            close *= 1.001
            batches = [SymbolBars(InstrumentSpec(s), np.array([ts]), close[k:k + 1],
                                  close[k:k + 1] * 1.01, close[k:k + 1] * 0.99,
                                  close[k:k + 1], np.array([1e5]))
                       for k, s in enumerate(symbols)]
            t0 = time.perf_counter()
            write_bars(platform, DAY, batches, source="bar_writes benchmark")
            writes.append((time.perf_counter() - t0) * 1000)
        segments = len(list(Path(platform.settings.data_dir, "bars", DAY.name).glob("*.arrow")))
        platform.close()
    print(f"{args.writes} writes of one bar for {len(symbols)} symbols over "
          f"{args.history} bars each: the first {writes[0]:.2f} ms (caches filled), the "
          f"others p50 {pct(writes[1:], 50):.2f} ms, p99 {pct(writes[1:], 99):.2f} ms, "
          f"max {max(writes[1:], default=float('nan')):.2f} ms; all {sum(writes):.0f} ms")
    print(f"compactions: {len(compactions)}, each p50 {pct(compactions, 50):.2f} ms, "
          f"max {max(compactions, default=float('nan')):.2f} ms, "
          f"total {sum(compactions):.0f} ms; segment files left: {segments}")


if __name__ == "__main__":
    main()
