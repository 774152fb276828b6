"""``signalfactory backtest``: run (or find) a stored backtest, print it, write its report."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any

import typer

from signalfactory.cli.common import (
    handle_errors,
    json_option,
    out,
    platform_with_builtins,
    print_json,
    progress_bar,
)
from signalfactory.domain.backtest.stored import BacktestResult, Scalar
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.tenants import DEFAULT_TENANT_ID

Opt = typer.Option


def _parameters(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    value = json_option(text, "--params")
    if not isinstance(value, dict):
        raise BadInputError('--params must be a JSON object such as {"fast": 5, "slow": 20}')
    return value


def _fmt(value: Scalar, pct: str = "") -> str:
    """``pct``: "+" for signed percentages (returns), "%" for plain ones (drawdown, rates)."""
    if value is None:
        return "–"
    if pct:
        return f"{value:+.2%}" if pct == "+" else f"{value:.2%}"
    return f"{value:,.4g}" if isinstance(value, float) else str(value)


def _sort_key(item: Mapping[str, Scalar]) -> float:
    value = item.get("total_return")
    return -(value if isinstance(value, int | float) else 0.0)


def _print_summary(result: BacktestResult) -> None:
    from rich.table import Table

    b = result.backtest
    m, data = b.metrics, b.data_range
    reused = " (stored result reused)" if result.reused else ""
    out.print(f"backtest {b.id[:16]}… {b.mode} {b.strategy_name} "
              f"on {len(data.symbols)} symbol(s), {data.bars} {data.timeframe} bars "
              f"{data.start[:10]}..{data.end[:10]}{reused}", highlight=False)
    table = Table("metric", "value")
    for key, pct in (("total_return", "+"), ("cagr", "+"), ("sharpe", ""), ("sortino", ""),
                     ("max_drawdown", "%"), ("var_95", "%"), ("win_rate", "%"),
                     ("profit_factor", ""), ("n_trades", ""), ("exposure", "%"),
                     ("buy_and_hold_return", "+")):
        table.add_row(key.replace("_", " "), _fmt(m.get(key), pct))
    table.add_row("final equity", f"{b.final_equity:,.2f}")
    out.print(table)
    if b.mode == "universe":
        ranked = sorted(b.per_symbol, key=_sort_key)
        top = Table("symbol", "return", "sharpe", "max dd", "trades", title="best symbols")
        for s in ranked[:10]:
            top.add_row(str(s["symbol"]), _fmt(s["total_return"], "+"), _fmt(s["sharpe"]),
                        _fmt(s["max_drawdown"], "%"), str(s["n_trades"]))
        out.print(top)


def _check_writable(report: Path) -> None:
    """Refuse an unwritable --report before anything is computed or stored."""
    if report.is_dir():
        raise BadInputError(f"--report {report} is a directory; give a file name such as "
                            "report.html")
    try:
        report.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInputError(f"cannot create the folder of --report {report}: "
                            f"{exc.strerror}") from exc
    if not os.access(report.parent, os.W_OK):
        raise BadInputError(f"cannot write --report {report}: its folder is not writable")


@handle_errors
def backtest(
    strategy: Annotated[str | None, Opt(help="Stored strategy name")] = None,
    rule: Annotated[str | None, Opt(help="Ad-hoc rule text")] = None,
    symbol: Annotated[list[str] | None, Opt(help="Symbol to trade; repeatable")] = None,
    universe: Annotated[str | None, Opt(help="Tag of the universe, e.g. sector=energy")]
    = None,
    start: Annotated[str | None, Opt("--from", help="First date traded (history before it "
                                     "warms the indicators up)")] = None,
    end: Annotated[str | None, Opt("--to", help="Last date (inclusive)")] = None,
    timeframe: Annotated[str | None, Opt(help="Bar timeframe (default: the strategy's, 1d)")]
    = None,
    fill: Annotated[str, Opt(help="close: at the signal bar's close; next_open: at the "
                             "next bar's open")] = "close",
    fees: Annotated[float, Opt(help="Fee per order as a fraction of traded value")] = 0.0,
    fee_fixed: Annotated[float, Opt(help="Fixed fee per order, in cash")] = 0.0,
    slippage: Annotated[float, Opt(help="Slippage in basis points, against you")] = 0.0,
    cash: Annotated[float, Opt(help="Initial cash (per symbol for --universe)")] = 10_000.0,
    size: Annotated[str, Opt(help="all | FRACTION | cash:AMOUNT | units:N | risk:PCT")]
    = "all",
    units: Annotated[str, Opt(help="whole | fractional")] = "whole",
    direction: Annotated[str, Opt(help="long | short | both")] = "long",
    stop_loss: Annotated[float | None, Opt(help="Stop-loss as a fraction of entry, "
                                           "e.g. 0.05")] = None,
    take_profit: Annotated[float | None, Opt(help="Take-profit as a fraction of entry")]
    = None,
    trailing_stop: Annotated[float | None, Opt(help="Trailing stop as a fraction")] = None,
    max_positions: Annotated[int | None, Opt(help="Portfolio mode: shared cash, at most N "
                                             "positions")] = None,
    atr_period: Annotated[int, Opt(help="ATR period for --size risk:PCT")] = 14,
    atr_multiple: Annotated[float, Opt(help="Stop distance in ATRs for risk sizing")] = 1.0,
    close_at_end: Annotated[bool, Opt(help="Close open positions at the last bar")] = False,
    calendar: Annotated[str | None, Opt(help="stock | crypto annualisation (default: crypto "
                                        "when every instrument is crypto)")] = None,
    params: Annotated[str | None, Opt(help="JSON overrides of a built-in strategy's "
                                      "parameters")] = None,
    as_json: Annotated[bool, Opt("--json", help="Print the result as JSON")] = False,
    report: Annotated[Path | None, Opt(help="Write an HTML report to this file")] = None,
) -> None:
    """Backtest a strategy or rule on a symbol, a universe, or a portfolio; stored under a
    deterministic id, so the same request returns the same result."""
    from signalfactory.cli.talib_import import import_talib_without_pandas

    import_talib_without_pandas()
    from signalfactory.services.backtests.options import BacktestRequest
    from signalfactory.services.backtests.run import check_options, run_backtest

    request = BacktestRequest(
        tenant_id=DEFAULT_TENANT_ID, strategy=strategy, rule=rule, symbols=tuple(symbol or ()),
        universe=universe, start=start, end=end, timeframe=timeframe, fill=fill, fees=fees,
        fee_fixed=fee_fixed, slippage=slippage, cash=cash, size=size, units=units,
        direction=direction, stop_loss=stop_loss, take_profit=take_profit,
        trailing_stop=trailing_stop, max_positions=max_positions, atr_period=atr_period,
        atr_multiple=atr_multiple, close_at_end=close_at_end, calendar=calendar,
        parameters=_parameters(params))
    check_options(request)  # bad input is refused before the database is opened
    if report is not None:
        _check_writable(report)
    platform = platform_with_builtins()
    try:
        with ExitStack() as stack:
            shown = [0]
            advance: list[Callable[[int], object]] = []

            def progress(done: int, total: int) -> None:
                # the bar opens once the universe's size is known, and only for many symbols
                if total > 1 and not advance:
                    advance.append(stack.enter_context(progress_bar("backtest", total)))
                if advance:
                    advance[0](done - shown[0])
                    shown[0] = done

            result = run_backtest(platform, request, progress=progress)
        if report is not None:
            # the report's templates and charts load only when a report is asked for
            from signalfactory.services.backtests.report import render_report

            html = render_report(platform, DEFAULT_TENANT_ID, result.id)
            try:
                report.write_text(html, encoding="utf-8")
            except OSError as exc:
                raise BadInputError(f"cannot write --report {report}: {exc.strerror}") from exc
    finally:
        platform.close()
    if as_json:
        print_json(result.to_json() | ({"report": str(report)} if report is not None else {}))
        return
    _print_summary(result)
    if report is not None:
        out.print(f"report: {report}", highlight=False)
