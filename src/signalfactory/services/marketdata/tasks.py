"""Job kinds of market data: ``collect`` fetches new bars from a source into the store."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from signalfactory.domain.jobs import JsonObject
from signalfactory.services.jobs.payloads import parse_payload
from signalfactory.services.jobs.registry import JobCancelled, TaskContext, register_task


class CollectPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = Field(default="synthetic", pattern="^synthetic$",
                        description="Which source; network sources register their own kinds.")
    symbols: list[str] = Field(min_length=1, max_length=1000)
    timeframe: str = "1d"
    n_bars: int = Field(default=1000, ge=1, le=1_000_000)
    seed: int = 42
    page_size: int = Field(default=1000, ge=1, le=100_000)


def collect_task(ctx: TaskContext, payload: JsonObject) -> JsonObject:
    """Fetch new bars from a source into the store, resuming from the stored cursors."""
    from signalfactory.adapters.sources.builtin import SyntheticSource
    from signalfactory.domain.timeframes import Timeframe
    from signalfactory.services.marketdata.collect import collect

    args = parse_payload(CollectPayload, payload, "collect")
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


register_task("collect", collect_task)
