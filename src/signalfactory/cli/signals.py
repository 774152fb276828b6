"""Stored signals on the command line: list them, evaluate stored strategies into them."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from signalfactory.cli.common import (
    JsonOpt,
    handle_errors,
    out,
    parse_date,
    platform_with_builtins,
    print_json,
)
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.signals import StoredSignal
from signalfactory.domain.tenants import DEFAULT_TENANT_ID


def _signal_json(s: StoredSignal) -> dict[str, object]:
    return {"id": s.id, "bar_ts": s.bar_ts.isoformat(), "side": s.side, "score": s.score,
            "price": s.price, "values": dict(s.values), "timeframe": s.timeframe,
            "created_at": s.created_at.isoformat() if s.created_at else None,
            "symbol": s.symbol, "strategy": s.strategy,
            "strategy_version": s.strategy_version, "code_hash": s.code_hash}


@handle_errors
def signals(
    since: Annotated[str | None, typer.Option(help="Bars at or after this date")] = None,
    symbol: Annotated[str | None, typer.Option()] = None,
    strategy: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(help="At most this many")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """List stored signals."""
    from signalfactory.services.signals.evaluation import query_signals

    if not 1 <= limit <= 100_000:
        raise BadInputError("--limit must be between 1 and 100000")
    since_date = parse_date(since, "--since")
    from signalfactory.cli.common import build_platform

    platform = build_platform(migrate_db=True)
    with platform.database.read() as uow:
        rows = query_signals(uow, DEFAULT_TENANT_ID, since=since_date,
                             symbol=symbol, strategy=strategy, limit=limit)
    platform.close()
    if as_json:
        print_json([_signal_json(r) for r in rows])
        return
    table = Table("id", "bar", "symbol", "side", "strategy", "score", "price")
    for r in rows:
        table.add_row(str(r.id), r.bar_ts.isoformat()[:10], r.symbol, r.side,
                      f"{r.strategy} v{r.strategy_version}",
                      "" if r.score is None else f"{r.score:.3f}", f"{r.price:.4g}")
    out.print(table)


@handle_errors
def evaluate(
    strategy: Annotated[list[str] | None, typer.Option(help="Strategy name; repeatable; "
                                                       "default: all")] = None,
    universe: Annotated[str | None, typer.Option(help="Tag, e.g. sector=energy")] = None,
    since: Annotated[str | None, typer.Option(help="Only signals at or after this date")]
    = None,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate stored strategies over stored bars and store their signals (idempotent)."""
    from signalfactory.services.signals.evaluation import run_all

    since_date = parse_date(since, "--since")
    platform = platform_with_builtins()
    try:
        reports = run_all(platform, DEFAULT_TENANT_ID, strategy, universe_tag=universe,
                          since=since_date)
    finally:
        platform.close()
    if as_json:
        print_json([r.__dict__ for r in reports])
        return
    for r in reports:
        note = f" ({r.error})" if r.error else ""
        out.print(f"{r.strategy} v{r.version}: {r.status}, {r.signals_found} signals, "
                  f"{r.signals_written} new{note}", highlight=False)
    if any(r.status == "failed" for r in reports):
        raise typer.Exit(1)
