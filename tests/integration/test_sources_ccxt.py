"""The ccxt source: the real ccxt binance client against the local Binance simulator
(``signalfactory.testing.exchange_simulator``), end to end into the store.

Covers: paging past the exchange's page limit, incremental and idempotent runs, the open
candle left out, no-trade gaps recorded as such, the faults (429 with Retry-After, 5xx,
timeouts, bodies cut short, bad values) each with its documented outcome and nothing partial
stored, the dead letter and the circuit breaker shared through the database.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from signalfactory.domain.jobs import DEAD, SUCCEEDED
from signalfactory.domain.timeframes import Timeframe
from signalfactory.services.jobs.execution import execute_by_id
from signalfactory.services.jobs.registry import get_job
from signalfactory.services.marketdata.bars import load_universe
from signalfactory.services.sources import records
from signalfactory.services.sources.run import RunSkipped, run_source
from signalfactory.settings import Settings
from signalfactory.testing.clock import FixedClock
from signalfactory.testing.exchange_simulator import (
    Bars,
    ExchangeSimulator,
    SymbolSpec,
    synthetic_bars,
)
from tests.collector_servers import CuttingProxy

M1 = Timeframe.parse("1m")
MINUTE_MS = 60_000
#: 2024-03-01 12:00:30 UTC: the 12:00 candle is open
NOW_MS = 1_709_294_430_000
OPEN_MS = NOW_MS // MINUTE_MS * MINUTE_MS
FAST = {"retry_initial_seconds": 0.01, "retry_max_seconds": 0.05, "rate_limit_ms": 0}
SPOT = {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False}


#: the simulator's bars run ten minutes past "now" (it shows none opening later than now)
AHEAD = 10


def _bars(count: int, seed: int, *, drop: slice | None = None) -> Bars:
    bars = synthetic_bars(count, end_ms=NOW_MS + AHEAD * MINUTE_MS, seed=seed)
    if drop is None:
        return bars
    keep = np.ones(len(bars), dtype=bool)
    keep[drop] = False
    return Bars(bars.interval, bars.open_ms[keep], bars.open[keep], bars.high[keep],
                bars.low[keep], bars.close[keep], bars.volume[keep])


def _platform(tmp_path: Path, database_url: str | None = None) -> Any:
    from signalfactory.bootstrap import build_platform

    platform = build_platform(Settings(home=tmp_path / "home", database_url=database_url,
                                       bar_store="columnar" if database_url is None
                                       else "auto"),
                              migrate_db=True,
                              clock=FixedClock(datetime.fromtimestamp(NOW_MS / 1000, UTC)))
    platform.bar_subscribers.clear()  # no strategies here; evaluation has its own tests
    return platform


def _add(platform: Any, url: str, symbols: list[str], **params: Any) -> None:
    records.add_source(platform, "sim", "ccxt", {
        "exchange": "binance", "base_url": url, "options": SPOT, "lookback_bars": 2400,
        **FAST, **params}, symbols, "1m")


def _fingerprint(platform: Any) -> dict[str, Any]:
    from signalfactory.adapters.storage.checksums import store_fingerprint
    from signalfactory.adapters.storage.unit_of_work import sql_database

    database = sql_database(platform.database)
    with database.engine.connect() as conn:
        found = store_fingerprint(conn, database.bar_store)
    # the run bookkeeping (journal, last run, jobs, the columnar store's segment files) moves
    # on every run; the data must not
    tables = {k: v for k, v in found["tables"].items()
              if k not in ("ingests", "sources", "jobs", "bar_segments")}
    return {"tables": tables, "bars": found["bars"]}


def _run_job(platform: Any) -> Any:
    job = records.submit_run(platform, "sim")
    execute_by_id(platform, job.id)
    return get_job(platform, job.id)


@pytest.fixture
def sim() -> Iterator[ExchangeSimulator]:
    specs = [SymbolSpec("BTC", "USDT", bars=_bars(2600, 1)),
             SymbolSpec("ETH", "USDT", bars=_bars(2600, 2))]
    with ExchangeSimulator(specs, clock_ms=NOW_MS) as simulator:
        yield simulator


def test_pages_past_the_limit_incrementally_and_idempotently(
        sim: ExchangeSimulator, tmp_path: Path, database_url: str) -> None:
    platform = _platform(tmp_path, database_url)
    try:
        _add(platform, sim.url, ["BTC/USDT", "ETH/USDT"])
        report = run_source(platform, "sim")
        # 2,400 closed candles each: three pages of at most 1,000 (Binance's limit)
        assert report.rows == 4800 and report.requests == 6
        uni = load_universe(platform, M1)
        for i, series in enumerate(uni):
            assert np.all(np.diff(series.ts) == M1.nanoseconds)
            assert int(series.ts[-1]) == (OPEN_MS - MINUTE_MS) * 1_000_000  # open one left
            source = sim.symbol_spec(["BTCUSDT", "ETHUSDT"][i]).bars
            assert source is not None
            closed = slice(-(AHEAD + 1 + 2400), -(AHEAD + 1))
            np.testing.assert_allclose(series.close, source.close[closed], rtol=1e-9)
        before = _fingerprint(platform)
        again = run_source(platform, "sim")
        assert again.rows == 0 and _fingerprint(platform) == before  # identical rows
        # three minutes later: exactly the three candles that closed meanwhile
        sim.advance(180)
        platform.clock.advance(180)
        assert run_source(platform, "sim").rows == 6
        after = load_universe(platform, M1)
        assert after.n_bars == 4806 and np.all(np.diff(after.offsets) == 2403)
        assert records.get_source(platform, "sim").run.last_outcome == "succeeded"
    finally:
        platform.close()


def test_a_period_without_trades_is_recorded_not_an_error(tmp_path: Path) -> None:
    # ten minutes without trades, 100 minutes before now: Binance sends no candles for them
    quiet = SymbolSpec("DOGE", "USDT", bars=_bars(2600, 3, drop=slice(2500, 2510)))
    platform = _platform(tmp_path)
    try:
        with ExchangeSimulator([quiet], clock_ms=NOW_MS) as sim:
            _add(platform, sim.url, ["DOGE/USDT"])
            report = run_source(platform, "sim")
            gaps = records.source_gaps(platform, "sim")
            assert report.no_trade_gaps == 1 and report.backfilled == 0
            bars = quiet.bars
            assert bars is not None
            assert len(gaps) == 1 and gaps[0].kind == "no-trades"
            assert gaps[0].start_ns == (int(bars.open_ms[2499]) + MINUTE_MS) * 1_000_000
            assert gaps[0].end_ns == (int(bars.open_ms[2500]) - MINUTE_MS) * 1_000_000
            # the hole was asked for again before it was called a no-trade period
            assert report.requests == 4
            assert load_universe(platform, M1).n_bars == 2390
            assert run_source(platform, "sim").no_trade_gaps == 0
            assert len(records.source_gaps(platform, "sim")) == 1
    finally:
        platform.close()


def test_faults_are_retried_and_leave_exactly_the_clean_data(
        sim: ExchangeSimulator, tmp_path: Path) -> None:
    clean = _platform(tmp_path / "clean")
    faulty = _platform(tmp_path / "faulty")
    try:
        _add(clean, sim.url, ["BTC/USDT", "ETH/USDT"])
        run_source(clean, "sim")
        with CuttingProxy(sim.url) as proxy:
            _add(faulty, proxy.url, ["BTC/USDT", "ETH/USDT"], timeout_ms=400, concurrency=1)
            sim.rate_limit_next(1, retry_after=1, path="/api/v3/klines")
            sim.server_error_next(1, status=503, path="/api/v3/klines")
            sim.server_error_next(1, status=502, path="/api/v3/klines")
            sim.timeout_next(1, seconds=2, path="/api/v3/klines")
            started = time.monotonic()
            run_source(faulty, "sim")  # the market list first: the cut hits a kline page
            proxy.cut_next(1)
            faulty.clock.advance(60)
            sim.advance(60)
            report = run_source(faulty, "sim")
            assert time.monotonic() - started >= 1.0  # the Retry-After was waited out
        assert report.retries == 1  # the cut answer
        assert faulty_retries(faulty) >= 5
        clean.clock.advance(60)
        run_source(clean, "sim")
        assert _fingerprint(faulty)["bars"] == _fingerprint(clean)["bars"]
    finally:
        clean.close()
        faulty.close()


def faulty_retries(platform: Any) -> int:
    from signalfactory.observability.metrics import COLLECTOR_RETRIES

    return int(COLLECTOR_RETRIES.labels("sim")._value.get())


def test_exhausted_attempts_dead_letter_then_the_breaker_opens_and_probes(
        sim: ExchangeSimulator, tmp_path: Path) -> None:
    platform = _platform(tmp_path)
    try:
        _add(platform, sim.url, ["BTC/USDT"], breaker_failures=2, breaker_reset_seconds=0.5)
        before = _fingerprint(platform)
        sim.server_error_next(100, status=500, path="/api/v3/klines")
        first = _run_job(platform)
        assert first.status == DEAD and "gave up after 5 attempts" in (first.error or "")
        assert sim.request_count("/api/v3/klines") == 5
        second = _run_job(platform)
        assert second.status == DEAD and _fingerprint(platform) == before  # nothing partial
        state = records.get_source(platform, "sim")
        assert state.breaker.state == "open" and state.run.last_outcome == "failed"
        # open: the next run makes no request at all
        third = _run_job(platform)
        assert third.status == SUCCEEDED and (third.result or {})["outcome"] == "skipped"
        assert sim.request_count("/api/v3/klines") == 10
        with pytest.raises(RunSkipped):
            run_source(platform, "sim")
        # after the reset timeout one probe run goes through; it succeeds: closed again
        sim.clear_faults()
        time.sleep(0.6)
        probe = _run_job(platform)
        assert probe.status == SUCCEEDED and (probe.result or {})["rows"] == 2400
        assert records.get_source(platform, "sim").breaker.state == "closed"
    finally:
        platform.close()


def test_bad_values_store_nothing_and_dead_letter(tmp_path: Path) -> None:
    bad = _bars(2600, 4)
    high = bad.high.copy()
    high[2550] = bad.low[2550] * 0.5  # high below low
    broken = replace(bad, high=high)
    specs = [SymbolSpec("BTC", "USDT", bars=_bars(2600, 1)),
             SymbolSpec("BAD", "USDT", bars=broken)]
    platform = _platform(tmp_path)
    try:
        with ExchangeSimulator(specs, clock_ms=NOW_MS) as sim:
            _add(platform, sim.url, ["BTC/USDT", "BAD/USDT"])
            before = _fingerprint(platform)
            job = _run_job(platform)
            assert job.status == DEAD
            assert "[high-below-low]" in (job.error or "") and "BAD/USDT" in (job.error or "")
            assert _fingerprint(platform) == before  # no bar of either symbol
    finally:
        platform.close()


def test_symbols_are_fetched_side_by_side_at_one_clients_pace(tmp_path: Path) -> None:
    """Each request in flight borrows a ccxt client of its own (ccxt's sync client is not
    thread-safe), so slow answers overlap; the clients load the markets once and start their
    requests no faster together than ccxt's rate limit lets one client start them."""
    symbols = ["BTC", "ETH", "SOL", "XRP"]
    specs = [SymbolSpec(s, "USDT", bars=_bars(2600, i + 1)) for i, s in enumerate(symbols)]
    pairs = [f"{s}/USDT" for s in symbols]
    with ExchangeSimulator(specs, clock_ms=NOW_MS) as simulator:
        simulator.faults.set_latency(0.15, "/api/v3/klines")
        platform = _platform(tmp_path / "overlap")
        _add(platform, simulator.url, pairs, concurrency=4)
        # the platform makes its sources on first use: their imports (ccxt's among them) are
        # not the overlap measured here
        importlib.import_module("ccxt")
        importlib.import_module("signalfactory.adapters.sources.ccxt_ohlcv")
        started = time.monotonic()
        report = run_source(platform, "sim")
        overlapped = time.monotonic() - started
        klines = simulator.request_count("/api/v3/klines")
        # one after the other, the answers alone would take klines x 0.15 s
        assert report.rows == 4 * 2400 and overlapped < 0.6 * klines * 0.15, (overlapped, klines)
        assert simulator.request_count("/api/v3/exchangeInfo") == 1
        platform.close()

        simulator.faults.set_latency(0.0, "/api/v3/klines")
        paced: dict[int, float] = {}
        for concurrency in (1, 4):  # ccxt's pause (times each request's cost) between starts
            store = _platform(tmp_path / f"paced-{concurrency}")
            _add(store, simulator.url, pairs, concurrency=concurrency, rate_limit_ms=100)
            started = time.monotonic()
            run_source(store, "sim")
            paced[concurrency] = time.monotonic() - started
            store.close()
        # four clients at once start their requests no faster than one client does
        assert paced[4] >= 0.8 * paced[1] and paced[1] > 0.5, paced
