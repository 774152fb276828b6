"""The backtest services on the in-memory platform: a stored backtest reads back exactly
(summary, trades, equity), belongs to its tenant, lists newest first, renders its report;
bad options are refused before anything is stored."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from signalfactory.domain.backtest.stored import (
    DataRange,
    EquityCurve,
    StoredBacktest,
    TradeRecord,
    backtest_id,
    json_scalars,
)
from signalfactory.domain.errors import BadInputError, NotFoundError
from signalfactory.domain.timestamps import datetime_to_ns
from signalfactory.services.backtests.options import BacktestRequest
from signalfactory.services.backtests.report import render_report
from signalfactory.services.backtests.run import (
    get_backtest,
    list_backtests,
    run_backtest,
    store_backtest,
)
from signalfactory.services.platform import Platform
from signalfactory.testing import InMemoryDatabase, memory_platform

TENANT, OTHER = 1, 2
DAY = 86_400 * 10**9
START = datetime_to_ns(datetime(2015, 1, 2, tzinfo=UTC))


def _memory(platform: Platform) -> InMemoryDatabase:
    if not isinstance(platform.database, InMemoryDatabase):
        raise TypeError("a memory platform was expected")
    return platform.database


def _backtest(tag: str, *, tenant_id: int = TENANT, mode: str = "single",
              created_at: datetime | None = None) -> tuple[StoredBacktest, list[TradeRecord],
                                                           list[EquityCurve]]:
    symbols = ("SAAA",) if mode == "single" else ("SAAA", "SAAB")
    ts = START + DAY * np.arange(5, dtype=np.int64)
    equity = np.array([10_000.0, 10_050.25, 9_990.5, 10_120.125, 10_200.0])
    trades = [TradeRecord("SAAA", int(ts[1]), int(ts[3]), 10.0, 100.5, 103.25, 27.5,
                          0.027363184079601, 0.1, "signal"),
              TradeRecord(symbols[-1], int(ts[3]), int(ts[4]), -4.0, 101.0, 99.0, 8.0,
                          0.0198, 0.0, "open")]
    curves = [EquityCurve(s, ts.copy(), equity.copy()) for s in symbols]
    if mode != "single":
        curves.append(EquityCurve("", ts.copy(), equity.copy()))
    metrics = json_scalars({"total_return": 0.02, "sharpe": float("nan"),
                            "profit_factor": math.inf, "n_trades": np.int64(2)})
    data = DataRange(timeframe="1d", universe=None, symbols=symbols, skipped=(),
                     start="2015-01-02T00:00:00+00:00", end="2015-01-06T00:00:00+00:00",
                     bars=5, history_bars=5, calendar="stock", bars_per_year=252.0,
                     sha256="ab" * 32)
    config = json_scalars({"direction": "long", "fill": "close", "cash": 10_000.0,
                           "fees": 0.001, "whole_units": True, "stop_loss": None})
    stored = StoredBacktest(
        id=backtest_id({"tag": tag, "tenant_id": tenant_id}), tenant_id=tenant_id, mode=mode,
        config=config, data_range=data, strategy_name="sma_cross", strategy_version=1,
        code_hash="cd" * 32, metrics=metrics,
        per_symbol=tuple({"symbol": s, **metrics} for s in symbols), final_equity=10_200.0,
        n_trades=len(trades), created_at=created_at or datetime(2024, 1, 2, tzinfo=UTC),
        duration_seconds=0.25)
    return stored, trades, curves


def test_a_stored_backtest_reads_back_exactly() -> None:
    platform = memory_platform()
    stored, trades, curves = _backtest("a", mode="universe")
    result = store_backtest(platform, stored, trades, curves)
    assert result.backtest == stored and list(result.trades) == trades and not result.reused
    got = get_backtest(platform, TENANT, stored.id)
    assert got.backtest == stored and list(got.trades) == trades
    # values JSON cannot hold were made null before storing, numpy numbers plain Python
    assert got.backtest.metrics["sharpe"] is None and got.backtest.metrics["profit_factor"] is None
    assert type(got.backtest.metrics["n_trades"]) is int
    with platform.database.read() as uow:
        for curve in curves:
            back = uow.backtests.equity_curve(stored.id, curve.symbol)
            assert back is not None and back == curve
            assert back.ts.dtype == np.int64 and back.equity.dtype == np.float64
        assert uow.backtests.equity_curve(stored.id, "NOPE") is None
        assert uow.backtests.trades(stored.id, symbol="SAAB") == [trades[1]]
    assert len(get_backtest(platform, TENANT, stored.id, trades_limit=1).trades) == 1
    assert get_backtest(platform, TENANT, stored.id, trades_limit=1).backtest.n_trades == 2
    body = got.to_json()
    assert body["trades"] == [t.to_json() for t in trades]
    assert body["data_range"] == stored.data_range.to_json()
    assert DataRange.from_json(stored.data_range.to_json()) == stored.data_range
    assert isinstance(body["trades"], list) and body["trades"][0] == {
        "symbol": "SAAA", "entry_ts": "2015-01-03T00:00:00+00:00",
        "exit_ts": "2015-01-05T00:00:00+00:00", "size": 10.0, "entry_price": 100.5,
        "exit_price": 103.25, "pnl": 27.5, "return": 0.027363184079601, "fees": 0.1,
        "exit_reason": "signal"}


def test_the_first_store_of_an_id_wins() -> None:
    platform = memory_platform()
    stored, trades, curves = _backtest("a")
    store_backtest(platform, stored, trades, curves)
    racing = replace(stored, final_equity=1.0, n_trades=0)
    assert store_backtest(platform, racing, [], []).backtest == stored
    assert list(get_backtest(platform, TENANT, stored.id).trades) == trades


def test_another_tenants_backtest_is_not_found() -> None:
    platform = memory_platform()
    stored, trades, curves = _backtest("a")
    store_backtest(platform, stored, trades, curves)
    with pytest.raises(NotFoundError):
        get_backtest(platform, OTHER, stored.id)
    with pytest.raises(NotFoundError):
        get_backtest(platform, TENANT, "0" * 64)
    with pytest.raises(NotFoundError):
        render_report(platform, OTHER, stored.id)
    assert list_backtests(platform, OTHER) == []
    with platform.database.read() as uow:
        assert uow.backtests.exists(TENANT, stored.id)
        assert not uow.backtests.exists(OTHER, stored.id)


def test_listing_is_newest_first_then_by_id_and_pages() -> None:
    platform = memory_platform()
    ids = {}
    for tag, day in (("old", 1), ("new", 3), ("mid-a", 2), ("mid-b", 2)):
        stored, trades, curves = _backtest(tag, created_at=datetime(2024, 1, day, tzinfo=UTC))
        store_backtest(platform, stored, trades, curves)
        ids[tag] = stored.id
    theirs, trades, curves = _backtest("theirs", tenant_id=OTHER)
    store_backtest(platform, theirs, trades, curves)
    listed = list_backtests(platform, TENANT)
    assert [i.id for i in listed] == [ids["new"], *sorted([ids["mid-a"], ids["mid-b"]]),
                                      ids["old"]]
    first = listed[0]
    assert (first.mode, first.strategy_name, first.strategy_version, first.timeframe,
            first.n_symbols, first.start, first.end, first.n_trades, first.total_return) == (
        "single", "sma_cross", 1, "1d", 1, "2015-01-02T00:00:00+00:00",
        "2015-01-06T00:00:00+00:00", 2, 0.02)
    assert [i.id for i in list_backtests(platform, TENANT, limit=2, offset=1)] == \
        [i.id for i in listed[1:3]]
    assert [i.id for i in list_backtests(platform, OTHER)] == [theirs.id]


BAD_OPTIONS = [({"size": "lots"}, "--size"), ({"fees": -0.001}, "negative"),
               ({"fill": "open"}, "next_open"), ({"cash": 0}, "--cash"),
               ({"start": "2016-01-01", "end": "2015-01-01"}, "swap"),
               ({"symbols": ()}, "--symbol"), ({"direction": "sideways"}, "long, short")]


@pytest.mark.parametrize(("change", "message"), BAD_OPTIONS, ids=[m for _c, m in BAD_OPTIONS])
def test_bad_options_are_refused_and_change_nothing(change: dict[str, Any],
                                                    message: str) -> None:
    platform = memory_platform()
    stored, trades, curves = _backtest("a")
    store_backtest(platform, stored, trades, curves)
    state = _memory(platform).state
    request = replace(BacktestRequest(tenant_id=TENANT, strategy="sma_cross",
                                      symbols=("SAAA",)), **change)
    with pytest.raises(BadInputError, match=message):
        run_backtest(platform, request)
    assert _memory(platform).state is state, "no transaction committed"
    assert [b.id for b in list_backtests(platform, TENANT)] == [stored.id]
    assert get_backtest(platform, TENANT, stored.id).backtest == stored


def test_a_portfolio_report_draws_the_stored_equity_and_trades() -> None:
    platform = memory_platform()
    stored, trades, curves = _backtest("p", mode="portfolio")
    store_backtest(platform, stored, trades, curves)
    page = render_report(platform, TENANT, stored.id)
    assert "sma_cross v1 on a portfolio of 2 symbols" in page
    assert "Trades (2)" in page and "LightweightCharts" in page
    assert f"backtest {stored.id[:12]}" in page


def test_a_backtest_without_its_curve_is_an_operational_error() -> None:
    from signalfactory.domain.errors import OperationalError

    platform = memory_platform()
    stored, trades, _curves = _backtest("p", mode="portfolio")
    store_backtest(platform, stored, trades, [])
    with pytest.raises(OperationalError, match="no equity curve"):
        render_report(platform, TENANT, stored.id)
