"""Job kinds of backtests: ``backtest`` runs (or finds) a backtest and stores it."""

from __future__ import annotations

from signalfactory.domain.jobs import JsonObject
from signalfactory.services.jobs.registry import JobCancelled, TaskContext, register_task


def backtest_task(ctx: TaskContext, payload: JsonObject) -> JsonObject:
    """Run (or find) a backtest and store it; the result names the stored backtest."""
    from signalfactory.services.backtests.options import BacktestRequest
    from signalfactory.services.backtests.run import run_backtest

    request = BacktestRequest.from_payload(ctx.tenant_id, payload)

    def progress(done: int, total: int) -> None:
        ctx.progress(done / total if total else 1.0)
        if ctx.cancelled():
            raise JobCancelled

    result = run_backtest(ctx.platform, request, progress=progress)
    stored = result.backtest
    return {"backtest_id": stored.id, "url": f"/api/v1/backtests/{stored.id}",
            "mode": stored.mode, "reused": result.reused,
            "final_equity": stored.final_equity, "n_trades": stored.n_trades,
            "total_return": stored.metrics.get("total_return")}


register_task("backtest", backtest_task)
