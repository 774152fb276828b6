"""The HTTP source: CSV and JSON bars from a local server through httpx, with a column
mapping and paging; faults lead to retries or to the dead letter, never to partial data."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from signalfactory.domain.errors import OperationalError
from signalfactory.domain.timeframes import Timeframe
from signalfactory.services.marketdata.bars import load_universe
from signalfactory.services.sources import records
from signalfactory.services.sources.run import run_source
from signalfactory.settings import Settings
from signalfactory.testing.clock import FixedClock
from tests.collector_servers import BarServer

H1 = Timeframe.parse("1h")
HOUR_MS = 3_600_000
START_MS = 1_704_067_200_000  # 2024-01-01 00:00 UTC
FAST = {"retry_initial_seconds": 0.01, "retry_max_seconds": 0.05, "start":
        "2024-01-01T00:00:00Z"}


@pytest.fixture
def server() -> Iterator[BarServer]:
    with BarServer() as bars:
        ts = START_MS + HOUR_MS * np.arange(300)
        bars.put("AAA", ts, 100 + np.sin(np.arange(300) / 7))
        bars.put("BBB", ts, 50 + np.cos(np.arange(300) / 5))
        yield bars


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Any]:
    from signalfactory.bootstrap import build_platform

    # 250 hours after the start: bars 0..248 have closed, 249 is open
    p = build_platform(Settings(home=tmp_path / "home"), migrate_db=True,
                       clock=FixedClock(datetime(2024, 1, 11, 10, 30, tzinfo=UTC)))
    p.bar_subscribers.clear()
    try:
        yield p
    finally:
        p.close()


def _fingerprint(platform: Any) -> Any:
    with platform.database.read() as uow:
        return uow.bars.read_columns(H1)


def test_csv_with_paging_and_the_open_bar_left_out(server: BarServer, platform: Any) -> None:
    records.add_source(platform, "csv", "http", {
        "url": server.url + "/bars/{symbol}.csv?since_ms={since_ms}&until_ms={until_ms}"
                            "&limit=100", "page_limit": 100, **FAST}, ["AAA", "BBB"], "1h")
    report = run_source(platform, "csv")
    uni = load_universe(platform, H1)
    assert report.rows == uni.n_bars == 2 * 250  # hours 0..249 closed at 10:30 on day 11
    assert report.requests == 2 * 3  # 100 + 100 + 50 per symbol
    assert all(np.all(np.diff(s.ts) == H1.nanoseconds) for s in uni)
    assert run_source(platform, "csv").rows == 0


def test_json_with_a_column_mapping(server: BarServer, platform: Any) -> None:
    records.add_source(platform, "json", "http", {
        "url": server.url + "/bars/{symbol}.json", "records": "data.bars",
        "columns": {"ts": "t", "open": "o", "high": "h", "low": "l", "close": "c",
                    "volume": "v"}, "time_unit": "ms", **FAST}, ["AAA"], "1h")
    assert run_source(platform, "json").rows == 250
    closes = load_universe(platform, H1).close
    assert closes[0] == pytest.approx(100.0)


def test_rate_limit_cut_body_timeout_and_5xx_are_retried(server: BarServer,
                                                        platform: Any) -> None:
    records.add_source(platform, "csv", "http", {
        "url": server.url + "/bars/{symbol}.csv", "timeout_seconds": 0.5, **FAST},
        ["AAA"], "1h")
    server.fail_next(429, retry_after="1")
    server.cut_next()
    server.hang_next(1.0)
    server.fail_next(502)
    report = run_source(platform, "csv")
    assert report.retries == 4 and report.rows == 250


def test_out_of_order_bars_store_nothing(server: BarServer, platform: Any) -> None:
    rows = server.bars["AAA"]
    rows[10], rows[11] = rows[11], rows[10]
    records.add_source(platform, "csv", "http", {"url": server.url + "/bars/{symbol}.csv",
                                                 **FAST}, ["BBB", "AAA"], "1h")
    before = _fingerprint(platform)
    with pytest.raises(OperationalError, match=r"unsorted-timestamps"):
        run_source(platform, "csv")
    after = _fingerprint(platform)
    assert len(after) == len(before) == 0  # BBB was fetched first: not stored either


def test_bad_value_stores_nothing(server: BarServer, platform: Any) -> None:
    ts, o, h, lo, c, _volume = server.bars["AAA"][42]
    server.bars["AAA"][42] = (ts, o, h, lo, c, -5.0)
    records.add_source(platform, "csv", "http", {"url": server.url + "/bars/{symbol}.csv",
                                                 **FAST}, ["AAA"], "1h")
    with pytest.raises(OperationalError, match=r"row 43 \[negative-volume\]"):
        run_source(platform, "csv")
    assert len(_fingerprint(platform)) == 0
    assert "negative-volume" in (records.get_source(platform, "csv").run.last_error or "")


def test_a_server_that_keeps_failing_dead_letters_after_five_attempts(
        server: BarServer, platform: Any) -> None:
    records.add_source(platform, "csv", "http", {"url": server.url + "/bars/{symbol}.csv",
                                                 **FAST}, ["AAA"], "1h")
    server.fail_next(503, count=10)
    with pytest.raises(OperationalError, match="gave up after 5 attempts"):
        run_source(platform, "csv")
    assert len(server.requests) == 5 and len(_fingerprint(platform)) == 0


def test_unknown_symbol_is_refused_at_once(server: BarServer, platform: Any) -> None:
    records.add_source(platform, "csv", "http", {"url": server.url + "/bars/{symbol}.csv",
                                                 **FAST}, ["ZZZ"], "1h")
    with pytest.raises(OperationalError, match="HTTP 404"):
        run_source(platform, "csv")
    assert len(server.requests) == 1


def test_freshness_is_exported_per_source_with_its_schedule(server: BarServer,
                                                            platform: Any) -> None:
    from signalfactory.observability.metrics import (
        MARKET_DATA_LAST_BAR,
        MARKET_DATA_MAX_STALENESS,
    )
    from signalfactory.ops.freshness import refresh_freshness

    records.add_source(platform, "every6h", "http", {"url": server.url + "/bars/{symbol}.csv",
                                                     **FAST}, ["AAA"], "1h",
                       cron="0 */6 * * *")
    run_source(platform, "every6h")
    refresh_freshness(platform)
    newest = MARKET_DATA_LAST_BAR.labels("every6h", "1h")._value.get()
    assert newest == START_MS / 1000 + 249 * 3600  # the newest closed bar
    # two schedule intervals (12 h), more than three 1h bars
    assert MARKET_DATA_MAX_STALENESS.labels("every6h", "1h")._value.get() == 12 * 3600
