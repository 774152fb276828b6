"""Indicators, strategies, signals and scans on the command line."""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from signalfactory.adapters.storage.tables import DEFAULT_TENANT_ID
from signalfactory.bootstrap import build_platform
from signalfactory.cli.common import handle_errors, out, print_json
from signalfactory.domain.errors import BadInputError
from signalfactory.services.platform import Platform

strategies_app = typer.Typer(help="Stored strategies: list, show, add, validate.",
                             no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON")]


def _platform() -> Platform:
    from signalfactory.services.strategies.catalog import ensure_builtins

    platform = build_platform(migrate_db=True)
    with platform.engine.begin() as conn:
        ensure_builtins(conn)
    return platform


def _parse_date(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise BadInputError(f"{option} {value!r} is not a date; use YYYY-MM-DD or an ISO "
                            "timestamp") from None


def _rule_from(rule: str | None, file: Path | None) -> str:
    if (rule is None) == (file is None):
        raise BadInputError("give exactly one of --rule TEXT or --file PATH")
    if file is not None:
        try:
            return file.read_text(encoding="utf-8")
        except OSError as exc:
            raise BadInputError(f"cannot read {file}: {exc.strerror}") from exc
    assert rule is not None
    return rule


@handle_errors
def indicators(
    symbol: Annotated[str, typer.Argument(help="Instrument symbol")],
    expr: Annotated[list[str], typer.Option("--expr", help="Expression of the rule language, "
                                            "e.g. 'rsi(close, 14)'; repeatable")],
    timeframe: Annotated[str, typer.Option(help="Bar timeframe")] = "1d",
    tail: Annotated[int, typer.Option(help="Show the last N bars")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """Print the values of expressions over one symbol's bars."""
    from signalfactory.domain.rules import check_rule, evaluate
    from signalfactory.domain.timeframes import Timeframe
    from signalfactory.services.marketdata.bars import load_universe

    if tail < 1:
        raise BadInputError("--tail must be at least 1")
    platform = build_platform(migrate_db=True)
    try:
        bars = load_universe(platform, Timeframe.parse(timeframe), symbols=[symbol])
    finally:
        platform.close()
    if bars.n_bars == 0:
        raise BadInputError(f"{symbol} has no {timeframe} bars")
    columns: dict[str, np.ndarray] = {}
    for text in expr:
        # An expression is evaluated as the score of a rule whose entry never fires; the
        # checker then reports errors with positions inside the expression itself.
        prefix = "entry: close < 0; score: "
        try:
            rule = check_rule(prefix + text)
        except BadInputError as exc:
            position = (exc.position - len(prefix)) if exc.position is not None else None
            raise BadInputError(str(exc.detail).replace(f"position {exc.position}",
                                                        f"position {position}"),
                                position=position) from None
        columns[text] = evaluate(rule, bars).score
    rows = range(max(0, bars.n_bars - tail), bars.n_bars)
    dates = bars.ts.view("datetime64[ns]")
    if as_json:
        print_json([{"ts": str(dates[i]), **{k: None if math.isnan(v[i]) else float(v[i])
                                              for k, v in columns.items()}} for i in rows])
        return
    table = Table("time", *columns)
    for i in rows:
        table.add_row(str(dates[i])[:19], *(f"{v[i]:.6g}" for v in columns.values()))
    out.print(table)


@strategies_app.command("list")
@handle_errors
def strategies_list(as_json: JsonOpt = False) -> None:
    """List strategies (built-ins and your own) at their newest version."""
    from signalfactory.services.strategies.catalog import list_strategies

    platform = _platform()
    with platform.engine.connect() as conn:
        items = list_strategies(conn, DEFAULT_TENANT_ID)
    platform.close()
    if as_json:
        print_json([s.as_dict() for s in items])
        return
    table = Table("name", "kind", "version", "timeframe", "built-in", "description")
    for s in items:
        table.add_row(s.name, s.kind, str(s.version), s.timeframe, "yes" if s.builtin else "",
                      s.description or (s.rule_text or s.class_path or "").replace("\n", "; "))
    out.print(table)


@strategies_app.command("show")
@handle_errors
def strategies_show(name: str, version: Annotated[int | None, typer.Option()] = None,
                    as_json: JsonOpt = False) -> None:
    """Show one strategy and its versions."""
    from signalfactory.services.strategies.catalog import get_strategy, list_versions

    platform = _platform()
    with platform.engine.connect() as conn:
        item = get_strategy(conn, DEFAULT_TENANT_ID, name, version)
        history = list_versions(conn, DEFAULT_TENANT_ID, name)
    platform.close()
    data = item.as_dict() | {"history": [{"version": v.version, "code_hash": v.code_hash,
                                          "created_by": v.created_by,
                                          "created_at": str(v.created_at)} for v in history]}
    if as_json:
        print_json(data)
        return
    for key, value in data.items():
        if key != "history":
            out.print(f"[bold]{key}[/]: {value}", highlight=False)
    out.print("versions: " + ", ".join(f"v{v['version']} {v['code_hash'][:10]}"
                                       for v in data["history"]))


@strategies_app.command("add")
@handle_errors
def strategies_add(
    name: str,
    rule: Annotated[str | None, typer.Option(help="Rule text")] = None,
    file: Annotated[Path | None, typer.Option(help="File holding the rule text")] = None,
    python: Annotated[str | None, typer.Option(
        "--class", help="Python strategy: entry point name or path/to/file.py:Class")] = None,
    params: Annotated[str | None, typer.Option(help="JSON parameters (Python strategies)")]
    = None,
    timeframe: Annotated[str, typer.Option(help="Timeframe it runs on")] = "1d",
    as_json: JsonOpt = False,
) -> None:
    """Add a strategy, or a new version if its code changed."""
    from signalfactory.services.strategies.catalog import add_strategy

    parameters: dict[str, Any] | None = None
    if params is not None:
        try:
            parameters = json.loads(params)
        except json.JSONDecodeError as exc:
            raise BadInputError(f"--params is not valid JSON: {exc.msg} at {exc.pos}") from exc
    text = None if python is not None and rule is None and file is None else _rule_from(rule,
                                                                                        file)
    platform = _platform()
    try:
        with platform.engine.begin() as conn:
            item, created = add_strategy(conn, DEFAULT_TENANT_ID, name, rule_text=text,
                                         class_path=python, parameters=parameters,
                                         timeframe=timeframe, created_by="cli")
        # A serving process sharing a Redis cache shows the new version at once.

        platform.cache.invalidate("strategies")
    finally:
        platform.close()
    if as_json:
        print_json(item.as_dict() | {"created": created})
    else:
        out.print(f"{item.name} v{item.version} " + ("stored" if created else
                                                      "unchanged (same code as the newest "
                                                      "version)"))


@strategies_app.command("validate")
@handle_errors
def strategies_validate(
    rule: Annotated[str | None, typer.Option(help="Rule text")] = None,
    file: Annotated[Path | None, typer.Option(help="File holding the rule text")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check a rule without storing anything; errors point at the position of the mistake."""
    from signalfactory.domain.rules import check_rule

    text = _rule_from(rule, file)
    checked = check_rule(text)
    info = {"valid": True, "canonical": checked.canonical_text, "lookback": checked.lookback}
    if as_json:
        print_json(info)
    else:
        out.print(f"valid; needs {checked.lookback} bars of warm-up\n{checked.canonical_text}")


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
    platform = build_platform(migrate_db=True)
    with platform.reader.connect() as conn:
        rows = query_signals(conn, DEFAULT_TENANT_ID, since=_parse_date(since, "--since"),
                             symbol=symbol, strategy=strategy, limit=limit)
    platform.close()
    if as_json:
        print_json(rows)
        return
    table = Table("id", "bar", "symbol", "side", "strategy", "score", "price")
    for r in rows:
        table.add_row(str(r["id"]), r["bar_ts"][:10], r["symbol"], r["side"],
                      f"{r['strategy']} v{r['strategy_version']}",
                      "" if r["score"] is None else f"{r['score']:.3f}", f"{r['price']:.4g}")
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

    platform = _platform()
    try:
        reports = run_all(platform, DEFAULT_TENANT_ID, strategy, universe_tag=universe,
                          since=_parse_date(since, "--since"))
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
    from signalfactory.services.scans.scan import ScanRequest, run_scan

    request = ScanRequest(tenant_id=DEFAULT_TENANT_ID, strategy=strategy, rule=rule,
                          universe=universe, as_of=_parse_date(as_of, "--as-of"), top=top,
                          timeframe=timeframe)
    platform = _platform()
    try:
        result = run_scan(platform, request)
    finally:
        platform.close()
    if as_json:
        print_json(result)
        return
    out.print(f"scan {result['id']}: {result['matches']} signal(s) over "
              f"{result['instruments']} instruments ({result['status']})", highlight=False)
    table = Table("rank", "symbol", "side", "score", "price", "bar")
    for r in result["results"]:
        table.add_row(str(r["rank"]), r["symbol"], r["side"],
                      "" if r["score"] is None else f"{r['score']:.3f}", f"{r['price']:.4g}",
                      r["bar_ts"][:10])
    out.print(table)
