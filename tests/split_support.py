"""Helpers for the split-backtest tests: a stored backtest as exact text, and the single-box
reference run on the same database."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import sqlalchemy as sa

from signalfactory.adapters.storage.tables import (
    backtest_chunk_equity,
    backtest_chunk_trades,
    backtest_equity,
    backtest_trades,
    backtests,
)
from signalfactory.domain.tenants import DEFAULT_TENANT_ID
from signalfactory.services.backtests import run as backtest_service
from signalfactory.services.backtests.options import BacktestRequest
from signalfactory.services.jobs import registry as job_service
from signalfactory.services.platform import Platform
from tests.helpers import engine_of

#: a universe backtest with fees, slippage and a stop, so trades close for several reasons
REQUEST = BacktestRequest(tenant_id=DEFAULT_TENANT_ID, strategy="sma_cross",
                          universe="universe=sample", fees=0.001, slippage=2.0,
                          stop_loss=0.05, direction="both", start="2015-06-01")


def snapshot(platform: Platform, backtest_id: str) -> str:
    """The stored backtest as text that differs when any number differs by one bit: the JSON
    result (floats printed round-trip exact) and every equity curve's bytes."""
    result = backtest_service.get_backtest(platform, DEFAULT_TENANT_ID, backtest_id).to_json()
    for volatile in ("created_at", "duration_seconds", "reused"):
        result.pop(volatile, None)
    curves = {}
    with platform.database.read(primary=True) as uow:
        for symbol in ["", *result["data_range"]["symbols"]]:  # type: ignore[index]
            curve = uow.backtests.equity_curve(backtest_id, symbol)
            assert curve is not None, symbol
            curves[symbol] = [curve.ts.tobytes().hex(), curve.equity.tobytes().hex()]
    return json.dumps({"result": result, "curves": curves}, sort_keys=True)


def held_rows(platform: Platform) -> tuple[int, int]:
    """(trades, curves) the chunks of split backtests hold (not yet copied into one)."""
    with engine_of(platform).connect() as conn:
        trades, curves = (conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                          for t in (backtest_chunk_trades, backtest_chunk_equity))
    return int(trades), int(curves)


def forget(platform: Platform, backtest_id: str) -> None:
    """Delete a stored backtest, so the next run computes it again under the same id."""
    with engine_of(platform).begin() as conn:
        for table in (backtest_trades, backtest_equity):
            conn.execute(sa.delete(table).where(table.c.backtest_id == backtest_id))
        conn.execute(sa.delete(backtests).where(backtests.c.id == backtest_id))


def single_box(platform: Platform, request: BacktestRequest = REQUEST) -> tuple[str, str]:
    """(backtest id, snapshot) of the run in this process, unsplit; then forgotten."""
    whole = dataclasses.replace(platform, settings=platform.settings.model_copy(
        update={"split": "never"}))
    result = backtest_service.run_backtest(whole, request)
    assert not result.reused and result.backtest.mode == "universe"
    text = snapshot(platform, result.id)
    forget(platform, result.id)
    return result.id, text


def submit(platform: Platform, request: BacktestRequest = REQUEST) -> str:
    return job_service.submit(platform, "backtest", request.to_payload()).id


def finished(platform: Platform, job_id: str, timeout: float, *,
             between: Any = None) -> Any:
    """Wait (bounded) for the job to end; ``between()`` runs each poll (a runner's turn)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if between is not None:
            between()
        job = job_service.get_job(platform, job_id)
        if job.terminal:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s: "
                         f"{job_service.get_job(platform, job_id)}")
