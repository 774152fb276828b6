"""The HTML report of a stored backtest (the CLI's ``--report FILE`` and the API's
``GET /api/v1/backtests/{id}/report`` render the same page).

What the page shows, by mode:

- **single**: the symbol's candles with entries and exits, its equity against buy-and-hold of
  the same cash, the drawdown, the metrics and the trades.
- **universe**: the same page for the **best symbol by total return** (ties: the first in
  symbol order), with the universe's aggregate figures in the subtitle: a price chart only
  makes sense for one instrument, and the best one is what a reader looks at first. Every
  symbol's numbers are in the JSON (``per_symbol``).
- **portfolio**: the portfolio's equity drawn as candles (open = the previous close of the
  equity) with every symbol's entries and exits on it, the equity and drawdown curves, the
  portfolio's metrics and all trades.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from signalfactory.adapters.reports.backtest_html import render_backtest_report
from signalfactory.domain.timeframes import Timeframe
from signalfactory.services.backtests import store
from signalfactory.services.backtests.run import get_backtest
from signalfactory.services.marketdata.bars import load_universe
from signalfactory.services.platform import Platform

SHOWN_METRICS = ("total_return", "cagr", "volatility", "sharpe", "sortino", "calmar",
                 "max_drawdown", "max_drawdown_bars", "var_95", "cvar_95", "win_rate",
                 "profit_factor", "expectancy", "avg_trade_return", "exposure", "n_trades",
                 "open_trades", "avg_holding_bars", "buy_and_hold_return", "final_equity",
                 "n_bars")


def best_symbol(per_symbol: list[dict[str, Any]]) -> str:
    def key(item: tuple[int, dict[str, Any]]) -> tuple[float, int]:
        value = item[1].get("total_return")
        return (-(value if isinstance(value, float) and math.isfinite(value) else -math.inf),
                item[0])

    return str(min(enumerate(per_symbol), key=key)[1]["symbol"])


def _pct(value: Any) -> str:
    return f"{value:+.2%}" if isinstance(value, float) and math.isfinite(value) else "n/a"


def render_report(platform: Platform, tenant_id: int, backtest_id: str) -> str:
    result = get_backtest(platform, tenant_id, backtest_id, trades_limit=0)
    data = result["data_range"]
    mode = result["mode"]
    strategy = result["strategy"]
    label = strategy["name"] + (f" v{strategy['version']}" if strategy["version"] else "")
    cash = float(result["config"]["cash"])
    with platform.reader.connect() as conn:
        if mode == "portfolio":
            curve = store.read_curve(conn, backtest_id, "")
            trades = store.read_trades_ns(conn, backtest_id, None)
            symbol = None
        else:
            symbol = data["symbols"][0] if mode == "single" else best_symbol(
                result["per_symbol"])
            curve = store.read_curve(conn, backtest_id, symbol)
            trades = store.read_trades_ns(conn, backtest_id, symbol)
    assert curve is not None, "a stored backtest always has its curves"
    ts, equity = curve
    benchmark = None
    if symbol is not None:
        bars = load_universe(platform, Timeframe.parse(data["timeframe"]), symbols=[symbol],
                             start=store.ns_to_datetime(int(ts[0])),
                             end=store.ns_to_datetime(int(ts[-1])))
        same = bars.n_bars == ts.shape[0] and np.array_equal(bars.ts, ts)
        metrics = next(s for s in result["per_symbol"] if s["symbol"] == symbol)
    else:
        same = False
        metrics = result["metrics"]
    if same:
        o, h, lo, c = bars.open, bars.high, bars.low, bars.close
        benchmark = cash * c / c[0]
    else:  # portfolio, or the stored bars changed since: draw the equity itself
        c = equity
        o = np.concatenate([[cash], equity[:-1]])
        h, lo = np.maximum(o, c), np.minimum(o, c)
    title = f"{label} on {symbol or 'a portfolio of ' + str(len(data['symbols'])) + ' symbols'}"
    subtitle = (f"{data['timeframe']} bars {data['from'][:10]} to {data['to'][:10]}, "
                f"{result['config']['direction']}, fill {result['config']['fill']}, "
                f"fees {result['config']['fees']}, cash {cash:,.0f}; backtest {backtest_id[:12]}")
    if mode == "universe":
        subtitle += (f"; best of {len(data['symbols'])} symbols by total return "
                     f"(universe average {_pct(result['metrics'].get('total_return'))})")
    shown = {k: metrics.get(k) for k in SHOWN_METRICS if k in metrics}
    return render_backtest_report(title=title, subtitle=subtitle, ts=ts, open_=o, high=h,
                                  low=lo, close=c, equity=equity, metrics=shown,
                                  trades=trades, benchmark=benchmark)
