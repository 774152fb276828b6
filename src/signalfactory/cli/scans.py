"""Scans on the command line: rank a universe by today's signals; the scan is stored."""

from __future__ import annotations

from typing import Annotated

import typer

from signalfactory.cli.common import (
    JsonOpt,
    handle_errors,
    out,
    parse_date,
    platform_with_builtins,
    print_json,
)
from signalfactory.domain.scans import StoredScan
from signalfactory.domain.tenants import DEFAULT_TENANT_ID


def scan_json(scan: StoredScan) -> dict[str, object]:
    """The scan as ``--json`` prints it (the API's ScanOut fields)."""
    return {"id": scan.id, "strategy_version_id": scan.strategy_version_id,
            "rule_text": scan.rule_text, "universe": scan.universe,
            "timeframe": scan.timeframe,
            "as_of": scan.as_of.isoformat() if scan.as_of else None, "top": scan.top,
            "status": scan.status, "error": scan.error, "instruments": scan.instruments,
            "matches": scan.matches,
            "created_at": scan.created_at.isoformat() if scan.created_at else None,
            "finished_at": scan.finished_at.isoformat() if scan.finished_at else None,
            "results": [{"rank": r.rank, "symbol": r.symbol, "side": r.side,
                         "score": r.score, "price": r.price, "bar_ts": r.bar_ts.isoformat(),
                         "values": dict(r.values)} for r in scan.results]}


@handle_errors
def scan(
    strategy: Annotated[str | None, typer.Option(help="Stored strategy name")] = None,
    rule: Annotated[str | None, typer.Option(help="Ad-hoc rule text")] = None,
    universe: Annotated[str | None, typer.Option(help="Tag, e.g. sector=energy")] = None,
    as_of: Annotated[str | None, typer.Option(help="Date of the recommendations")] = None,
    top: Annotated[int | None, typer.Option(help="Keep the best N")] = None,
    timeframe: Annotated[str | None, typer.Option()] = None,
    as_json: JsonOpt = False,
) -> None:
    """Rank the universe by today's signals of a strategy or rule; the scan is stored."""
    from signalfactory.cli.talib_import import import_talib_without_pandas

    import_talib_without_pandas()
    from signalfactory.services.scans.scan import ScanRequest, check_request, run_scan

    request = ScanRequest(tenant_id=DEFAULT_TENANT_ID, strategy=strategy, rule=rule,
                          universe=universe, as_of=parse_date(as_of, "--as-of"), top=top,
                          timeframe=timeframe)
    check_request(request)  # bad input is refused before the database is opened
    platform = platform_with_builtins()
    try:
        result = run_scan(platform, request)
    finally:
        platform.close()
    if as_json:
        print_json(scan_json(result))
        return
    from rich.table import Table

    out.print(f"scan {result.id}: {result.matches} signal(s) over "
              f"{result.instruments} instruments ({result.status})", highlight=False)
    table = Table("rank", "symbol", "side", "score", "price", "bar")
    for r in result.results:
        table.add_row(str(r.rank), r.symbol, r.side,
                      "" if r.score is None else f"{r.score:.3f}", f"{r.price:.4g}",
                      r.bar_ts.isoformat()[:10])
    out.print(table)
