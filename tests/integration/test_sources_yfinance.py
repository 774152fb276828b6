"""The yfinance source: the real ``yfinance`` library against Yahoo's chart API answered from
recorded responses on a local server (its base URL pointed there; any other host is refused
through a dead proxy, so nothing leaves the machine)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from signalfactory.domain.timeframes import Timeframe
from signalfactory.services.marketdata.bars import load_universe
from signalfactory.services.sources import records
from signalfactory.services.sources.run import run_source
from signalfactory.settings import Settings
from signalfactory.testing.clock import FixedClock
from tests.collector_servers import RecordedYahoo

D1, M5 = Timeframe.parse("1d"), Timeframe.parse("5m")
FAST = {"retry_initial_seconds": 0.01, "retry_max_seconds": 0.05}


@pytest.fixture
def yahoo(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordedYahoo]:
    import yfinance.base
    import yfinance.scrapers.history

    with RecordedYahoo() as server:
        monkeypatch.setattr(yfinance.scrapers.history, "_BASE_URL_", server.url)
        monkeypatch.setattr(yfinance.base, "_BASE_URL_", server.url)
        # yfinance also asks Yahoo's other hosts for a cookie and a crumb: a proxy nobody
        # listens on refuses them at once (the chart API needs neither).
        monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        yfinance.base.YfData().cache_get.cache_clear()  # answers of past ranges are cached
        yield server


def _platform(tmp_path: Path, when: datetime) -> Any:
    from signalfactory.bootstrap import build_platform

    return build_platform(Settings(home=tmp_path / "home"), migrate_db=True,
                          clock=FixedClock(when))


def test_daily_bars_through_yfinance(yahoo: RecordedYahoo, tmp_path: Path) -> None:
    # 2024-01-12 15:00 UTC: the session of the 12th is open, its bar must wait
    platform = _platform(tmp_path, datetime(2024, 1, 12, 15, 0, tzinfo=UTC))
    try:
        records.add_source(platform, "yahoo-daily", "yfinance",
                           {"start": "2024-01-01T00:00:00Z", **FAST}, ["AAPL"], "1d")
        report = run_source(platform, "yahoo-daily")
        uni = load_universe(platform, D1)
        assert report.rows == uni.n_bars == 8  # Jan 2..11 (8 sessions); the 12th is open
        closes = uni.close.tolist()
        assert closes[0] == pytest.approx(185.639999) and closes[-1] == pytest.approx(185.59)
        # stamped at New York midnight, as yfinance returns daily bars
        assert np.datetime_as_string(uni.ts[:1].view("datetime64[ns]"))[0].startswith(
            "2024-01-02T05:00")
        assert all(p.startswith("/v8/finance/chart/AAPL") for p in yahoo.requests)
        platform.clock.advance(days=1)  # the 12th has closed
        assert run_source(platform, "yahoo-daily").rows == 1
        assert load_universe(platform, D1).n_bars == 9
        assert run_source(platform, "yahoo-daily").rows == 0
    finally:
        platform.close()


def test_intraday_bars_skip_nulls_and_sessions(yahoo: RecordedYahoo, tmp_path: Path) -> None:
    platform = _platform(tmp_path, datetime(2024, 1, 13, tzinfo=UTC))
    try:
        records.add_source(platform, "yahoo-5m", "yfinance",
                           {"start": "2024-01-11T00:00:00Z", **FAST}, ["AAPL"], "5m")
        report = run_source(platform, "yahoo-5m")
        uni = load_universe(platform, M5)
        # two sessions of 78 bars, one interval without trades (nulls) dropped; the night
        # between the sessions is no gap (a market with sessions is not continuous)
        assert report.rows == uni.n_bars == 155
        assert report.no_trade_gaps == 0
        assert np.all(np.diff(uni.ts) % M5.nanoseconds == 0)
    finally:
        platform.close()


def test_rate_limit_and_server_errors_are_retried(yahoo: RecordedYahoo,
                                                  tmp_path: Path) -> None:
    platform = _platform(tmp_path, datetime(2024, 1, 13, tzinfo=UTC))
    try:
        records.add_source(platform, "yahoo-daily", "yfinance",
                           {"start": "2024-01-01T00:00:00Z", **FAST}, ["AAPL"], "1d")
        # yfinance asks twice per failed answer (a second cookie strategy): 2 attempts fail
        yahoo.fail_next(429, count=2, retry_after="0")
        yahoo.fail_next(503, count=2)
        report = run_source(platform, "yahoo-daily")
        assert report.retries >= 2 and report.rows == 8
    finally:
        platform.close()


def test_unknown_symbol_dead_letters_without_retrying(yahoo: RecordedYahoo,
                                                      tmp_path: Path) -> None:
    from signalfactory.domain.errors import OperationalError

    platform = _platform(tmp_path, datetime(2024, 1, 13, tzinfo=UTC))
    try:
        records.add_source(platform, "yahoo-daily", "yfinance",
                           {"start": "2024-01-01T00:00:00Z", **FAST}, ["NOPE"], "1d")
        with pytest.raises(OperationalError, match="NOPE"):
            run_source(platform, "yahoo-daily")
        assert records.get_source(platform, "yahoo-daily").run.last_outcome == "failed"
    finally:
        platform.close()
