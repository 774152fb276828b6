"""Job kinds of backtests: ``backtest`` runs (or finds) a backtest and stores it, split into
``backtest.chunk`` jobs when splitting is on (services/backtests/split.py)."""

from __future__ import annotations

from signalfactory.domain.jobs import JsonObject
from signalfactory.services.jobs.registry import JobCancelled, TaskContext, register_task


def backtest_task(ctx: TaskContext, payload: JsonObject) -> JsonObject:
    """Run (or find) a backtest and store it; the result names the stored backtest."""
    from signalfactory.services.backtests.options import BacktestRequest
    from signalfactory.services.backtests.run import run_backtest
    from signalfactory.services.backtests.split import Splitter, split_wanted, wait_for_chunks

    request = BacktestRequest.from_payload(ctx.tenant_id, payload)

    def progress(done: int, total: int) -> None:
        ctx.progress(done / total if total else 1.0)
        if ctx.cancelled():
            raise JobCancelled

    splitter = None
    if split_wanted(ctx.platform.settings):
        wait_for_chunks(ctx)  # while chunks run, each look costs a read, not a bar load
        splitter = Splitter(ctx, request)
    # the job's result names the backtest: reading its trades back would be wasted
    result = run_backtest(ctx.platform, request, progress=progress, compute=splitter,
                          trades_limit=0,
                          resume=splitter.resume if splitter is not None else None)
    stored = result.backtest
    return {"backtest_id": stored.id, "url": f"/api/v1/backtests/{stored.id}",
            "mode": stored.mode, "reused": result.reused,
            "final_equity": stored.final_equity, "n_trades": stored.n_trades,
            "total_return": stored.metrics.get("total_return")}


register_task("backtest", backtest_task)


def backtest_chunk_task(ctx: TaskContext, payload: JsonObject) -> JsonObject:
    """One chunk of a split universe backtest (its instruments' parts, counted once)."""
    from signalfactory.services.backtests.split import chunk_task

    return chunk_task(ctx, payload)


register_task("backtest.chunk", backtest_chunk_task)
