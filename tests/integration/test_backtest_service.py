"""The backtest service on both backends: deterministic ids and numbers, stored once and
reused, the three modes agreeing with each other, and bad input storing nothing."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from signalfactory.adapters.storage.checksums import store_fingerprint
from signalfactory.adapters.storage.tables import (
    DEFAULT_TENANT_ID,
    backtest_equity,
    backtest_trades,
    backtests,
)
from signalfactory.adapters.storage.unit_of_work import sql_database
from signalfactory.domain.backtest.curve_codec import decode_curve, encode_curve
from signalfactory.domain.backtest.stored import TRADE_COLUMNS
from signalfactory.domain.errors import BadInputError, NotFoundError
from signalfactory.services.backtests import run as backtest_service
from signalfactory.services.backtests.modes import Progress
from signalfactory.services.backtests.options import BacktestRequest, parse_size
from signalfactory.services.marketdata.sample import store_sample
from signalfactory.services.platform import Platform
from signalfactory.services.strategies.catalog import ensure_builtins
from tests.api_harness import BACKENDS, module_platform
from tests.helpers import engine_of

shared_platform = pytest.fixture(scope="module", params=BACKENDS)(module_platform)

ISSUE_METRICS = ("total_return", "cagr", "volatility", "sharpe", "sortino", "calmar",
                 "max_drawdown", "max_drawdown_bars", "var_95", "cvar_95", "win_rate",
                 "profit_factor", "expectancy", "exposure", "n_trades", "avg_holding_bars",
                 "buy_and_hold_return")
SMA = BacktestRequest(tenant_id=DEFAULT_TENANT_ID, strategy="sma_cross", symbols=("SAAA",))


@pytest.fixture(scope="module")
def loaded(shared_platform: Platform) -> Platform:
    store_sample(shared_platform, symbols=5, bars=300, seed=7)
    with shared_platform.database.write() as uow:
        ensure_builtins(uow)
    return shared_platform


def run_backtest(platform: Platform, request: BacktestRequest,
                 progress: Progress | None = None) -> dict[str, Any]:
    """The service's result in its JSON form (what the CLI prints)."""
    return backtest_service.run_backtest(platform, request, progress=progress).to_json()


def get_backtest(platform: Platform, tenant_id: int, backtest_id: str) -> dict[str, Any]:
    return backtest_service.get_backtest(platform, tenant_id, backtest_id).to_json()


def _fingerprint(platform: Platform) -> dict[str, Any]:
    with engine_of(platform).connect() as conn:
        return store_fingerprint(conn, sql_database(platform.database).bar_store)


def _runs() -> float:
    return REGISTRY.get_sample_value("backtest_duration_seconds_count") or 0.0


def _rows(platform: Platform, table: sa.Table) -> int:
    with engine_of(platform).connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def _without_reused(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k != "reused"}


def test_the_same_request_gives_the_same_id_and_numbers_without_recomputing(
        loaded: Platform) -> None:
    request = replace(SMA, fees=0.001, slippage=2.0, start="2015-03-02")
    first = run_backtest(loaded, request)
    assert not first["reused"] and len(first["id"]) == 64
    runs, stored = _runs(), _rows(loaded, backtest_trades)
    again = run_backtest(loaded, request)
    assert again["reused"] and again["id"] == first["id"]
    assert _without_reused(again) == _without_reused(first)
    assert _runs() == runs, "a stored result is returned, not computed again"
    assert _rows(loaded, backtest_trades) == stored
    # a bare --to date and the same date at its last instant name the same bars
    assert run_backtest(loaded, replace(request, end="2016-12-31"))["id"] == first["id"]
    # anything that changes the numbers changes the id
    for change in ({"fees": 0.002}, {"fill": "next_open"}, {"start": "2015-06-01"},
                   {"size": "0.5"}, {"direction": "both"}, {"parameters": {"fast": 5}}):
        assert run_backtest(loaded, replace(request, **change))["id"] != first["id"], change


def test_a_result_has_every_metric_and_trades_that_add_up(loaded: Platform) -> None:
    result = run_backtest(loaded, replace(SMA, fees=0.001, fee_fixed=1.0))
    metrics = result["metrics"]
    assert set(ISSUE_METRICS) <= set(metrics)
    assert metrics["n_trades"] == result["n_trades"] == len(result["trades"]) > 0
    cash = result["config"]["cash"]
    # open trades carry their mark-to-market pnl, so the trades explain the whole change
    assert result["final_equity"] == pytest.approx(
        cash + sum(t["pnl"] for t in result["trades"]), rel=1e-12)
    assert result["final_equity"] == pytest.approx(cash * (1 + metrics["total_return"]))
    assert all(t["fees"] > 1.0 for t in result["trades"])
    first = result["trades"][0]
    assert set(first) == set(TRADE_COLUMNS)
    assert first["entry_ts"] <= first["exit_ts"] and first["symbol"] == "SAAA"
    with loaded.database.read() as uow:
        curve = uow.backtests.equity_curve(result["id"], "SAAA")
    assert curve is not None
    ts, equity = curve.ts, curve.equity
    assert ts.shape == equity.shape == (result["data_range"]["bars"],)
    assert equity[-1] == result["final_equity"] and np.all(np.diff(ts) > 0)


def test_trading_starts_at_from_with_indicators_warmed_on_earlier_bars(
        loaded: Platform) -> None:
    full = run_backtest(loaded, SMA)
    late = run_backtest(loaded, replace(SMA, start="2015-06-01", end="2015-12-31"))
    assert late["data_range"]["from"] >= "2015-06-01" and late["data_range"]["to"] < "2016"
    assert late["data_range"]["bars"] < full["data_range"]["bars"]
    assert all(t["entry_ts"] >= "2015-06-01" for t in late["trades"])
    # the sma(30) is warm from the first bar of the window: a crossing inside the window
    # trades on the same day as in the full run
    full_entries = {t["entry_ts"] for t in full["trades"]
                    if "2015-06-01" <= t["entry_ts"] <= "2015-12-31"}
    assert full_entries and full_entries <= {t["entry_ts"] for t in late["trades"]}


def test_universe_symbols_match_single_runs_and_the_aggregate_is_their_average(
        loaded: Platform) -> None:
    universe = run_backtest(loaded, replace(SMA, symbols=(), universe="universe=sample"))
    assert universe["mode"] == "universe" and len(universe["per_symbol"]) == 5
    finals = []
    for item in universe["per_symbol"]:
        single = run_backtest(loaded, replace(SMA, symbols=(item["symbol"],)))
        assert single["mode"] == "single"
        for key in ISSUE_METRICS:
            a, b = item[key], single["metrics"][key]
            assert (a is None and b is None) or a == pytest.approx(b, rel=1e-9), key
        finals.append(single["final_equity"])
    assert universe["final_equity"] == pytest.approx(float(np.mean(finals)), rel=1e-12)
    assert universe["n_trades"] == sum(i["n_trades"] for i in universe["per_symbol"])
    with engine_of(loaded).connect() as conn:
        stored = conn.execute(sa.select(backtest_equity.c.symbol).where(
            backtest_equity.c.backtest_id == universe["id"])).scalars().all()
    assert sorted(stored) == ["", "SAAA", "SAAB", "SAAC", "SAAD", "SAAE"]


def test_a_universe_in_batches_gives_the_same_numbers(loaded: Platform,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from signalfactory.services.backtests import modes as backtest_modes

    request = replace(SMA, symbols=(), universe="universe=sample", tenant_id=_tenant(loaded))
    whole = run_backtest(loaded, request)
    with engine_of(loaded).begin() as conn:
        conn.execute(backtest_trades.delete().where(backtest_trades.c.backtest_id == whole["id"]))
        conn.execute(backtest_equity.delete().where(backtest_equity.c.backtest_id == whole["id"]))
        conn.execute(backtests.delete().where(backtests.c.id == whole["id"]))
    monkeypatch.setattr(backtest_modes, "BATCH_BARS", 350)  # one instrument per batch
    seen: list[tuple[int, int]] = []
    batched = run_backtest(loaded, request, progress=lambda d, t: seen.append((d, t)))
    assert not batched["reused"] and seen == [(i, 5) for i in range(6)]
    for key in ("id", "metrics", "final_equity", "trades", "per_symbol"):
        assert batched[key] == whole[key], key


def test_portfolio_shares_cash_and_respects_max_positions(loaded: Platform) -> None:
    request = replace(SMA, strategy=None, rule="entry: close > sma(close, 10)\n"
                      "exit: close < sma(close, 10)", symbols=(), universe="universe=sample",
                      max_positions=2, size="0.5")
    result = run_backtest(loaded, request)
    assert result["mode"] == "portfolio" and result["n_trades"] > 5
    assert result["final_equity"] == pytest.approx(
        10_000 + sum(t["pnl"] for t in result["trades"]), rel=1e-9)
    events = sorted([(t["entry_ts"], 1) for t in result["trades"]]
                    + [(t["exit_ts"], -1) for t in result["trades"]
                       if t["exit_reason"] != "open"], key=lambda e: (e[0], e[1]))
    held = peak = 0
    for _when, step in events:  # exits at a timestamp come before entries there
        held += step
        peak = max(peak, held)
    assert peak <= 2
    assert {s["symbol"] for s in result["per_symbol"]} == set(result["data_range"]["symbols"])


def test_short_side_of_a_long_only_rule_and_risk_sizing(loaded: Platform) -> None:
    both = run_backtest(loaded, replace(SMA, direction="both"))
    sides = {math.copysign(1, t["size"]) for t in both["trades"]}
    assert sides == {1.0, -1.0}, "a plain entry/exit rule trades both ways with --direction both"
    assert any(t["exit_reason"] == "reversed" for t in both["trades"])
    risk = run_backtest(loaded, replace(SMA, size="risk:1%", units="fractional",
                                        stop_loss=0.05))
    assert risk["config"]["sizing"] == "risk" and risk["config"]["size"] == 0.01
    assert risk["n_trades"] > 0


def _tenant(platform: Platform) -> int:
    import uuid

    from signalfactory.services.accounts.tenants import create_tenant

    with platform.database.write() as uow:
        return create_tenant(uow, f"bt-{uuid.uuid4().hex[:8]}", "free").id


def test_results_belong_to_their_tenant(loaded: Platform) -> None:
    mine = run_backtest(loaded, SMA)
    other = _tenant(loaded)
    theirs = run_backtest(loaded, replace(SMA, tenant_id=other))
    assert theirs["id"] != mine["id"] and theirs["metrics"] == mine["metrics"]
    with pytest.raises(NotFoundError):
        get_backtest(loaded, other, mine["id"])
    assert get_backtest(loaded, other, theirs["id"])["id"] == theirs["id"]


BAD = [
    ({"size": "lots"}, "--size"),
    ({"size": "cash:-5"}, "positive"),
    ({"size": "risk:2"}, "risk per trade"),
    ({"fees": -0.001}, "negative"),
    ({"slippage": -1}, "negative"),
    ({"cash": 0}, "--cash"),
    ({"fill": "open"}, "next_open"),
    ({"direction": "sideways"}, "long, short or both"),
    ({"units": "some"}, "whole or fractional"),
    ({"stop_loss": 1.5}, "fraction"),
    ({"start": "2016-01-01", "end": "2015-01-01"}, "swap"),
    ({"start": "yesterday"}, "not a date"),
    ({"start": "2030-01-01"}, "in the future"),
    ({"symbols": ("NOPE",)}, "unknown symbol"),
    ({"symbols": (), "universe": "sector=nothing"}, "no instruments are tagged"),
    ({"symbols": ()}, "--symbol"),
    ({"strategy": None, "rule": "entry: crosses_above(close)"}, "position"),
    ({"strategy": None, "rule": "entry: close > sma(close, 500)"}, "at least 500 bars"),
    ({"strategy": "no_such_strategy"}, "no strategy"),
    ({"timeframe": "7x"}, "timeframe"),
]


@pytest.mark.parametrize(("change", "message"), BAD, ids=[m for _c, m in BAD])
def test_bad_input_says_what_to_fix_and_stores_nothing(loaded: Platform, change: dict[str, Any],
                                                       message: str) -> None:
    run_backtest(loaded, SMA)  # builtins and one result stored: the store is not empty
    before = _fingerprint(loaded)
    with pytest.raises(BadInputError) as caught:
        run_backtest(loaded, replace(SMA, **change))
    assert message in str(caught.value)
    assert _fingerprint(loaded) == before


def test_size_syntax() -> None:
    assert parse_size("all") == ("fraction", 1.0)
    assert parse_size("0.25") == parse_size("25%") == ("fraction", 0.25)
    assert parse_size("cash:2500") == ("cash", 2500.0)
    assert parse_size("units:10") == ("units", 10.0)
    assert parse_size("risk:1%") == parse_size("risk:0.01") == ("risk", 0.01)
    for bad in ("", "cash:", "units:x", "half", "risk:-1%", "cash:inf"):
        with pytest.raises(BadInputError):
            parse_size(bad)


def test_equity_curves_round_trip_exactly() -> None:
    rng = np.random.default_rng(1)
    ts = np.cumsum(rng.integers(1, 10**12, 1000)).astype(np.int64)
    equity = 10_000 * np.cumprod(1 + rng.normal(0, 0.01, 1000))
    back_ts, back_eq = decode_curve(*encode_curve(ts, equity))
    assert np.array_equal(back_ts, ts) and np.array_equal(back_eq, equity)


def test_payload_round_trip_and_checks() -> None:
    request = replace(SMA, symbols=("A", "B"), parameters={"fast": 5}, stop_loss=0.1)
    assert BacktestRequest.from_payload(DEFAULT_TENANT_ID, request.to_payload()) == request
    with pytest.raises(BadInputError, match="unknown field"):
        BacktestRequest.from_payload(1, {"tenant_id": 2})
    with pytest.raises(BadInputError, match="fees"):
        BacktestRequest.from_payload(1, {"fees": "lots"})


def test_each_backend_with_its_default_bar_store(platform: Platform) -> None:
    """PostgreSQL keeps bars in its partitioned table by default, SQLite in columnar files."""
    store_sample(platform, symbols=2, bars=120, seed=3)
    with platform.database.write() as uow:
        ensure_builtins(uow)
    result = run_backtest(platform, replace(SMA, symbols=("SAAA", "SAAB"), fill="next_open"))
    assert result["mode"] == "universe" and result["data_range"]["bars"] == 240
    assert run_backtest(platform, replace(SMA, symbols=("SAAA", "SAAB"),
                                          fill="next_open"))["reused"]
