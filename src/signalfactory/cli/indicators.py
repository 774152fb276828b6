"""Indicator values on the command line: expressions of the rule language over bars."""

from __future__ import annotations

import math
from typing import Annotated

import numpy as np
import numpy.typing as npt
import typer
from rich.table import Table

from signalfactory.cli.common import build_platform, handle_errors, out, print_json

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON")]


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
    from signalfactory.domain.errors import BadInputError
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
    columns: dict[str, npt.NDArray[np.float64]] = {}
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
