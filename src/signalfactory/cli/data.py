"""Database, ingest, sample data and instrument commands."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from signalfactory.adapters.storage import migrate
from signalfactory.adapters.storage.unit_of_work import sql_database
from signalfactory.cli.common import build_platform, handle_errors, out, print_json, progress_bar
from signalfactory.domain.errors import BadInputError

db_app = typer.Typer(help="Database schema: upgrade, downgrade, current revision.",
                     no_args_is_help=True)


@handle_errors
def init() -> None:
    """Create the database (SQLite file by default) and migrate it to the newest schema."""
    platform = build_platform(migrate_db=True)
    engine = sql_database(platform.database).engine
    out.print(f"database ready at revision {migrate.current_revision(engine)} "
              f"({engine.url.render_as_string(hide_password=True)})")
    platform.close()


@db_app.command("upgrade")
@handle_errors
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision")] = "head") -> None:
    """Apply migrations up to REVISION (default: head)."""
    platform = build_platform()
    engine = sql_database(platform.database).engine
    migrate.upgrade(engine, revision)
    out.print(f"at revision {migrate.current_revision(engine)}")
    platform.close()


@db_app.command("downgrade")
@handle_errors
def db_downgrade(revision: Annotated[str, typer.Argument(
        help="Target revision, e.g. -1 or base")]) -> None:
    """Revert migrations down to REVISION."""
    platform = build_platform()
    engine = sql_database(platform.database).engine
    migrate.downgrade(engine, revision)
    out.print(f"at revision {migrate.current_revision(engine) or 'base'}")
    platform.close()


@db_app.command("current")
@handle_errors
def db_current() -> None:
    """Print the database's revision and the newest one available."""
    platform = build_platform()
    current = migrate.current_revision(sql_database(platform.database).engine)
    head = migrate.head_revision()
    out.print(f"current: {current or 'none'}  head: {head}"
              + ("" if current == head else "  (run `signalfactory db upgrade`)"))
    platform.close()


@handle_errors
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="CSV or Parquet files")],
    symbol: Annotated[str | None, typer.Option(help="Symbol for single-symbol files "
                                               "(default: a symbol column or the file name)")]
    = None,
    timeframe: Annotated[str | None, typer.Option(help="1m, 5m, 15m, 1h, 4h, 1d, 1w "
                                                  "(default: inferred)")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="csv or parquet "
                                            "(default: by extension)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON")] = False,
) -> None:
    """Validate and store bar files; all or nothing, re-ingesting is idempotent."""
    from signalfactory.services.marketdata.bars import write_bars
    from signalfactory.services.marketdata.ingest import prepare_files, source_label

    if symbol is not None and len(paths) > 1:
        raise BadInputError("--symbol applies to one file; give one file or drop --symbol")
    # every file is read and checked before the database is opened (or created)
    with progress_bar("ingest (rows)", None) as advance:
        tf, batches = prepare_files(paths, symbol=symbol, timeframe=timeframe, fmt=fmt,
                                    progress=advance)
    platform = build_platform(migrate_db=True)
    try:
        report = write_bars(platform, tf, batches, source=source_label(paths))
    finally:
        platform.close()
    if as_json:
        print_json(dataclasses.asdict(report))
    else:
        out.print(f"stored {report.rows} bars of {report.instruments} instrument(s), "
                  f"timeframe {report.timeframe}, {report.min_ts} .. {report.max_ts}")


@handle_errors
def sample(
    symbols: Annotated[int, typer.Option(help="Number of symbols")] = 50,
    bars: Annotated[int, typer.Option(help="Daily bars per symbol")] = 1000,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same data")] = 42,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Generate and store a deterministic synthetic universe (business days, sectors)."""
    from signalfactory.services.marketdata.sample import store_sample

    platform = build_platform(migrate_db=True)
    try:
        with progress_bar("generate (symbols)", symbols) as advance:
            report = store_sample(platform, symbols=symbols, bars=bars, seed=seed,
                                  progress=advance)
    finally:
        platform.close()
    if as_json:
        print_json(dataclasses.asdict(report))
    else:
        out.print(f"stored {report.rows} bars of {report.instruments} synthetic instrument(s)")


@handle_errors
def instruments(
    tag: Annotated[str | None, typer.Option(help="Filter by tag, e.g. sector=energy")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List stored instruments."""
    platform = build_platform(migrate_db=True)
    with platform.database.read() as uow:
        found = uow.instruments.find(tag=tag)
    platform.close()
    if as_json:
        print_json([{**dataclasses.asdict(i), "tags": dict(i.tags)} for i in found])
        return
    table = Table("symbol", "venue", "class", "currency", "tags")
    for i in found:
        table.add_row(i.symbol, i.venue, i.asset_class, i.currency,
                      ", ".join(f"{k}={v}" for k, v in i.tags.items()))
    out.print(table)
