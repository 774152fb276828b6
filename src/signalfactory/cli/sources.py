"""``signalfactory sources ...``: market-data sources the collectors keep fresh.

    signalfactory sources add binance-1m --kind ccxt --symbols BTC/USDT,ETH/USDT \\
        --timeframe 1m --cron '*/5 * * * *' --param exchange=binance
    signalfactory sources list
    signalfactory sources run binance-1m          # now, in this process, with a progress bar
    signalfactory sources pause binance-1m        # the scheduler skips it; run still works
    signalfactory sources resume binance-1m

``--param key=value`` sets one parameter (the value is read as JSON when it parses, else as
text); ``--params '{...}'`` sets many at once. Parameters are the adapter's (see
``adapters/sources``) and the collector's (``services/sources/options.py``).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from signalfactory.cli.common import err, handle_errors, out, print_json, progress_bar
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.jobs import DEAD, FAILED, Job
from signalfactory.domain.sources import Source
from signalfactory.domain.streaming import iso_utc
from signalfactory.services.platform import Platform
from signalfactory.services.sources import records

sources_app = typer.Typer(help="Market-data sources: collectors on a schedule.",
                          no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON")]
NameArg = Annotated[str, typer.Argument(help="Source name (see sources list)")]


@contextmanager
def _platform() -> Iterator[Platform]:
    from signalfactory.cli.common import build_platform

    logging.getLogger("alembic").setLevel(logging.WARNING)  # stdout carries --json output
    platform = build_platform(migrate_db=True)
    try:
        yield platform
    finally:
        platform.close()


def source_data(source: Source) -> dict[str, Any]:
    return {
        "name": source.name, "kind": source.kind, "params": source.params,
        "symbols": list(source.symbols), "timeframe": source.timeframe, "cron": source.cron,
        "paused": source.paused, "created_at": iso_utc(source.created_at),
        "updated_at": iso_utc(source.updated_at),
        "last_run": {"at": iso_utc(source.run.last_run_at),
                     "outcome": source.run.last_outcome, "error": source.run.last_error,
                     "job_id": source.run.last_job_id, "rows": source.run.last_rows,
                     "last_success_at": iso_utc(source.run.last_success_at)},
        "breaker": {"state": source.breaker.state, "failures": source.breaker.failures,
                    "opened_at": iso_utc(source.breaker.opened_at)},
    }


def parse_params(pairs: list[str], params_json: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if params_json:
        try:
            loaded = json.loads(params_json)
        except json.JSONDecodeError as exc:
            raise BadInputError(f"--params is not valid JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise BadInputError("--params must be a JSON object, e.g. '{\"exchange\": "
                                "\"binance\"}'")
        params.update(loaded)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise BadInputError(f"--param {pair!r} must be key=value, e.g. exchange=binance")
        try:
            params[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            params[key.strip()] = value
    return params


@sources_app.command("add")
@handle_errors
def sources_add(
    name: Annotated[str, typer.Argument(help="A unique name: 1..32 of a-z 0-9 _ . -")],
    kind: Annotated[str, typer.Option(help="ccxt, yfinance, http or synthetic")],
    symbols: Annotated[str, typer.Option(help="Comma-separated, e.g. BTC/USDT,ETH/USDT")],
    timeframe: Annotated[str, typer.Option(help="Bar length: 1m, 5m, 1h, 1d, ...")] = "1d",
    cron: Annotated[str | None, typer.Option(
        help="When to collect (5-field cron, in SIGNALFACTORY_SCHEDULE_TIMEZONE); none: "
             "only on `sources run`")] = None,
    param: Annotated[list[str] | None, typer.Option(
        "--param", help="key=value (repeatable); JSON values are parsed")] = None,
    params: Annotated[str | None, typer.Option("--params", help="All parameters as a JSON "
                                                                "object")] = None,
    paused: Annotated[bool, typer.Option(help="Store it paused")] = False,
    as_json: JsonOption = False,
) -> None:
    """Add a source; everything is checked before anything is stored."""
    values = parse_params(param or [], params)
    names = [s.strip() for s in symbols.split(",") if s.strip()]
    with _platform() as platform:
        source = records.add_source(platform, name, kind, values, names, timeframe, cron,
                                    paused=paused)
    if as_json:
        print_json(source_data(source))
    else:
        out.print(f"source {escape(source.name)!r} added: {source.kind}, "
                  f"{len(source.symbols)} symbols, {source.timeframe}, "
                  f"cron {source.cron or 'none'}{' (paused)' if source.paused else ''}",
                  highlight=False, soft_wrap=True)


@sources_app.command("list")
@handle_errors
def sources_list(as_json: JsonOption = False) -> None:
    """Every source with its schedule, last run and breaker."""
    with _platform() as platform:
        found = records.list_sources(platform)
    if as_json:
        print_json([source_data(s) for s in found])
        return
    if not found:
        out.print("no sources; add one with `signalfactory sources add`")
        return
    table = Table("name", "kind", "symbols", "tf", "cron", "state", "last run", "breaker")
    for s in found:
        last = (f"{s.run.last_outcome} {iso_utc(s.run.last_run_at)}" if s.run.last_run_at
                else "never")
        table.add_row(escape(s.name), s.kind, str(len(s.symbols)), s.timeframe,
                      s.cron or "-", "paused" if s.paused else "active", last,
                      f"{s.breaker.state} ({s.breaker.failures} failures)")
    out.print(table)


@sources_app.command("show")
@handle_errors
def sources_show(name: NameArg) -> None:
    """One source as JSON, with its recorded no-trade gaps."""
    with _platform() as platform:
        source = records.get_source(platform, name)
        gaps = records.source_gaps(platform, name)
    data = source_data(source)
    data["no_trade_gaps"] = [{"symbol": g.symbol, "timeframe": g.timeframe,
                              "start_ns": g.start_ns, "end_ns": g.end_ns} for g in gaps]
    print_json(data)


def _set_paused(name: str, paused: bool, as_json: bool) -> None:
    with _platform() as platform:
        source = records.set_paused(platform, name, paused)
    if as_json:
        print_json(source_data(source))
    else:
        out.print(f"source {escape(name)!r} {'paused' if paused else 'resumed'}",
                  highlight=False)


@sources_app.command("pause")
@handle_errors
def sources_pause(name: NameArg, as_json: JsonOption = False) -> None:
    """Stop scheduled runs of a source (``run`` still works)."""
    _set_paused(name, True, as_json)


@sources_app.command("resume")
@handle_errors
def sources_resume(name: NameArg, as_json: JsonOption = False) -> None:
    """Schedule a paused source again."""
    _set_paused(name, False, as_json)


@sources_app.command("remove")
@handle_errors
def sources_remove(name: NameArg) -> None:
    """Forget a source (the bars it collected stay)."""
    with _platform() as platform:
        records.remove_source(platform, name)
    out.print(f"source {escape(name)!r} removed", highlight=False)


def _run_here(platform: Platform, job: Job) -> Job:
    """Run the job in this process (no worker needed) while a progress bar follows it."""
    from signalfactory.services.jobs.execution import execute_by_id, new_owner
    from signalfactory.services.jobs.registry import get_job, wait_for

    failure: list[BaseException] = []

    def work() -> None:
        try:
            execute_by_id(platform, job.id, new_owner("cli"))
        except BaseException as exc:  # re-raised in the main thread
            failure.append(exc)

    thread = threading.Thread(target=work, name="sources-run", daemon=True)
    thread.start()
    with progress_bar(f"collect {job.payload.get('source')}", 100) as advance:
        shown = 0
        while thread.is_alive():
            thread.join(timeout=0.25)
            current = get_job(platform, job.id)
            now = int(current.progress * 100)
            if now > shown:
                advance(now - shown)
                shown = now
    if failure:
        raise failure[0]
    final = get_job(platform, job.id)
    if not final.terminal:  # a worker holds it, or it waits out a retry: follow it
        final = wait_for(platform, job.id, timeout=3600)
    return final


@sources_app.command("run")
@handle_errors
def sources_run(
    name: NameArg,
    detach: Annotated[bool, typer.Option(help="Only queue the job; a worker runs it")] = False,
    as_json: JsonOption = False,
) -> None:
    """Collect a source now. Exit 1 when the run ended in the dead letter."""
    from signalfactory.domain.tenants import DEFAULT_TENANT_ID
    from signalfactory.services.jobs.registry import submit

    with _platform() as platform:
        records.get_source(platform, name)
        if detach:
            job = records.submit_run(platform, name)
        else:
            with platform.database.write() as uow:  # not announced: this process runs it
                job = submit(platform, records.COLLECT_SOURCE, {"source": name},
                             tenant_id=DEFAULT_TENANT_ID, uow=uow)
            job = _run_here(platform, job)
    if as_json:
        print_json({"job_id": job.id, "status": job.status, "result": job.result,
                    "error": job.error})
    elif detach:
        out.print(f"job {job.id} queued", highlight=False)
    elif job.status in (DEAD, FAILED):
        err.print(f"[bold red]run {job.status}:[/] {escape(job.error or '')}",
                  highlight=False, soft_wrap=True)
    else:
        result = job.result or {}
        if result.get("outcome") == "skipped":
            out.print(f"skipped: {escape(str(result.get('reason')))}", highlight=False,
                      soft_wrap=True)
        else:
            out.print(f"collected {result.get('rows', 0)} bars of {result.get('symbols')} "
                      f"symbols in {result.get('seconds')} s ({result.get('requests')} "
                      f"requests, {result.get('retries')} retries, {result.get('backfilled')} "
                      f"backfilled, {result.get('no_trade_gaps')} no-trade gaps)",
                      highlight=False)
    if job.status in (DEAD, FAILED):
        raise typer.Exit(1)
