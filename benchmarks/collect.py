"""Collector throughput: N symbols x 1 day of 1-minute bars from the local Binance simulator,
end to end into the store (ccxt client over loopback HTTP, validation, gap check, the
ingest path's write with cursors), on the embedded setup (SQLite + columnar store).

Side by side in the same run, with the same simulator and bars:

- ``ccxt fetch only``: the same requests through ccxt (``fetch_ohlcv`` pages), nothing stored:
  what the exchange client alone costs;
- ``ingest from memory``: the same bars, already in numpy, through ``write_bars`` (the
  validated all-or-nothing ingest path), no network: what storing alone costs;
- ``collector``: a stored ``ccxt`` source run by ``run_source`` (what a scheduled job does).

Ratios are printed against the goal of 200,000 bars/s end to end; the CPU seconds of this
process and of the simulator's process beside each timed path say which side of the wire
the time goes to.

    .venv/bin/python benchmarks/collect.py [--symbols 500] [--bars 1440] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import multiprocessing
import multiprocessing.connection
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import ccxt
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, timed

from signalfactory.bootstrap import build_platform
from signalfactory.domain.instruments import InstrumentSpec
from signalfactory.domain.timeframes import Timeframe
from signalfactory.services.marketdata.bars import SymbolBars, load_universe, write_bars
from signalfactory.services.sources import records
from signalfactory.services.sources.collector import RunReport
from signalfactory.services.sources.run import run_source
from signalfactory.settings import Settings
from signalfactory.testing.clock import FixedClock
from signalfactory.testing.exchange_simulator import ExchangeSimulator, SymbolSpec, synthetic_bars

M1 = Timeframe.parse("1m")
GOAL_BARS_PER_SECOND = 200_000


def make_specs(n_symbols: int, n_bars: int, now_ms: int) -> list[SymbolSpec]:
    # one extra bar: the candle open "now", which the collector must leave out
    return [SymbolSpec(f"S{i:03d}", "USDT", bars=synthetic_bars(n_bars + 1, end_ms=now_ms, seed=i))
            for i in range(n_symbols)]


def serve(conn: multiprocessing.connection.Connection, n_symbols: int, n_bars: int,
          now_ms: int) -> None:
    """The simulator in a process of its own, as an exchange is: its Python does not share
    the collector's interpreter lock."""
    # the clock frozen 30 s into the newest candle: the run never straddles a minute
    with ExchangeSimulator(make_specs(n_symbols, n_bars, now_ms),
                           clock_ms=now_ms + 30_000) as sim:
        conn.send(sim.url)
        while conn.recv() == "cpu":  # until the parent is done
            conn.send(_cpu_seconds())


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cpu_split(conn: multiprocessing.connection.Connection,
               work: Callable[[], object]) -> tuple[float, object, float, float]:
    """``work``'s wall time and result, with the CPU seconds this process and the
    simulator's process spent meanwhile: which side of the wire the time goes to."""
    conn.send("cpu")
    sim_before, ours_before = conn.recv(), _cpu_seconds()
    seconds, result = timed(work)
    conn.send("cpu")
    sim_cpu, ours_cpu = conn.recv() - sim_before, _cpu_seconds() - ours_before
    return seconds, result, ours_cpu, sim_cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--bars", type=int, default=1440)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()

    now_ms = int(time.time() * 1000) // 60_000 * 60_000
    specs = make_specs(args.symbols, args.bars, now_ms)
    symbols = [f"S{i:03d}/USDT" for i in range(args.symbols)]
    expected = args.symbols * args.bars
    since_ms = now_ms - args.bars * 60_000
    print(f"{args.symbols} symbols x {args.bars} 1m bars = {expected:,} bars; "
          f"{args.concurrency} symbols fetched at once")

    parent, child = multiprocessing.Pipe()
    server = multiprocessing.get_context("fork").Process(
        target=serve, args=(child, args.symbols, args.bars, now_ms), daemon=True)
    server.start()
    sim = ExchangeSimulator()  # only for its ccxt_config(); the server runs in the child
    sim_url = parent.recv()
    sim.ccxt_urls = lambda: {"public": f"{sim_url}/api/v3", "private": f"{sim_url}/api/v3",
                             "v1": f"{sim_url}/api/v1"}
    try:
        # -- reference 1: the exchange client alone -----------------------------------
        def ccxt_only() -> int:
            def one(symbol: str) -> int:
                client = ccxt.binance(sim.ccxt_config(public_only=True, rate_limit_ms=0))
                client.markets = shared.markets
                client.markets_by_id = shared.markets_by_id
                client.symbols = shared.symbols
                rows, since = 0, since_ms
                while True:
                    page = client.fetch_ohlcv(symbol, "1m", since=since, limit=1000,
                                              params={"until": now_ms - 1})
                    rows += len(page)
                    if len(page) < 1000:
                        return rows
                    since = page[-1][0] + 60_000

            with ThreadPoolExecutor(args.concurrency) as pool:
                return sum(pool.map(one, symbols))

        shared = ccxt.binance(sim.ccxt_config(public_only=True))
        shared.load_markets()
        header("ccxt fetch only (no store)")
        fetch_s, fetched, ours_cpu, sim_cpu = _cpu_split(parent, ccxt_only)
        assert fetched == expected, (fetched, expected)
        print(f"{fetch_s:.2f} s, {int(fetched) / fetch_s:,.0f} bars/s (CPU: this process "
              f"{ours_cpu:.2f} s, the simulator {sim_cpu:.2f} s)")

        # -- reference 2: the ingest path alone, from memory --------------------------
        with tempfile.TemporaryDirectory() as tmp:
            platform = build_platform(Settings(home=Path(tmp)), migrate_db=True)
            platform.bar_subscribers.clear()  # no strategies: keep evaluation out of it
            batches = []
            for spec, symbol in zip(specs, symbols, strict=True):
                b = spec.bars
                assert b is not None
                keep = slice(0, args.bars)
                batches.append(SymbolBars(InstrumentSpec(symbol), b.open_ms[keep] * 1_000_000,
                                          b.open[keep], b.high[keep], b.low[keep],
                                          b.close[keep], b.volume[keep]))
            header("ingest path from memory (write_bars, no network)")
            ingest_s, _ = timed(lambda: write_bars(platform, M1, batches, source="bench"))
            print(f"{ingest_s:.2f} s, {expected / ingest_s:,.0f} bars/s")
            platform.close()

        # -- the collector, end to end -------------------------------------------------
        with tempfile.TemporaryDirectory() as tmp:
            platform = build_platform(Settings(home=Path(tmp)), migrate_db=True,
                                      clock=FixedClock(datetime.fromtimestamp(
                                          (now_ms + 30_000) / 1000, UTC)))
            platform.bar_subscribers.clear()
            records.add_source(platform, "bench", "ccxt", {
                "exchange": "binance", "base_url": sim_url, "rate_limit_ms": 0,
                "options": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False},
                "lookback_bars": args.bars, "concurrency": args.concurrency,
                "batch_bars": 250_000}, symbols, "1m")
            header("collector: ccxt source -> validation -> store (run_source)")
            collect_s, outcome, ours_cpu, sim_cpu = _cpu_split(
                parent, lambda: run_source(platform, "bench"))
            report = cast(RunReport, outcome)
            stored = load_universe(platform, M1)
            assert report.rows == expected == stored.n_bars, (report.rows, stored.n_bars)
            assert int(stored.ts.max()) == (now_ms - 60_000) * 1_000_000  # open candle left out
            assert np.all(np.diff(stored.offsets) == args.bars)
            rate = expected / collect_s
            print(f"{collect_s:.2f} s, {rate:,.0f} bars/s ({report.requests} requests, "
                  f"{report.batches} write batches; CPU: this process {ours_cpu:.2f} s, "
                  f"the simulator {sim_cpu:.2f} s)")
            again_s, again = timed(lambda: run_source(platform, "bench"))
            print(f"second run (nothing new): {again_s:.2f} s, {again.rows} bars")
            platform.close()
    finally:
        parent.send("stop")
        server.join(timeout=10)

    header("ratios")
    print(f"collector / goal ({GOAL_BARS_PER_SECOND:,} bars/s): "
          f"{rate / GOAL_BARS_PER_SECOND:.2f}x")
    print(f"collector time / ccxt fetch-only time: {collect_s / fetch_s:.2f}x")
    print(f"collector time / ingest-from-memory time: {collect_s / ingest_s:.2f}x")
    print(f"collector time - fetch time = {collect_s - fetch_s:.2f} s of checking and storing")


if __name__ == "__main__":
    main()
