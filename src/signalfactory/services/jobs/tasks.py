"""Built-in job kinds: data collection, job-table housekeeping and backtests.

The lead's services register scan, backtest and archive kinds the same way.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from signalfactory.domain.errors import BadInputError
from signalfactory.services.jobs.registry import JobCancelled, TaskContext, register_task


def _parse(model: type[BaseModel], payload: dict[str, Any], kind: str) -> Any:
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "payload"
        raise BadInputError(f"{kind} payload: {where}: {first['msg']}") from None


class CollectPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = Field(default="synthetic", pattern="^synthetic$",
                        description="Which source; network sources register their own kinds.")
    symbols: list[str] = Field(min_length=1, max_length=1000)
    timeframe: str = "1d"
    n_bars: int = Field(default=1000, ge=1, le=1_000_000)
    seed: int = 42
    page_size: int = Field(default=1000, ge=1, le=100_000)


def collect_task(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Fetch new bars from a source into the store, resuming from the stored cursors."""
    from signalfactory.adapters.sources.builtin import SyntheticSource
    from signalfactory.domain.timeframes import Timeframe
    from signalfactory.services.marketdata.collect import collect

    args = _parse(CollectPayload, payload, "collect")
    timeframe = Timeframe.parse(args.timeframe)
    source = SyntheticSource(list(args.symbols), n_bars=args.n_bars, seed=args.seed)
    total = args.n_bars * len(args.symbols)
    done = 0

    def on_page(rows: int) -> None:
        # Each page is committed with its cursor, so stopping between pages loses nothing.
        nonlocal done
        done += rows
        ctx.progress(done / total)
        if ctx.cancelled():
            raise JobCancelled

    report = collect(ctx.platform, source, timeframe, list(args.symbols),
                     page_size=args.page_size, progress=on_page)
    return {"source": report.source, "timeframe": report.timeframe, "pages": report.pages,
            "rows": report.rows, "symbols": report.symbols}


class PrunePayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    older_than_days: float = Field(default=30.0, gt=0)


def prune_jobs_task(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Delete finished jobs older than N days (dead jobs stay until a person acts)."""
    from signalfactory.adapters.storage import jobs as store

    args = _parse(PrunePayload, payload, "prune_jobs")
    cutoff = store.utcnow() - timedelta(days=args.older_than_days)
    with ctx.platform.engine.begin() as conn:
        deleted = store.prune(conn, cutoff)
    return {"deleted": deleted, "cutoff": cutoff.isoformat()}


register_task("collect", collect_task)
register_task("prune_jobs", prune_jobs_task, max_attempts=3)


def backtest_task(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
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
