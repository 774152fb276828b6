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
from collections.abc import Sequence

import numpy as np

from signalfactory.adapters.reports.backtest_html import render_backtest_report
from signalfactory.domain.backtest.stored import Scalar, Scalars
from signalfactory.domain.errors import OperationalError
from signalfactory.domain.timeframes import Timeframe
from signalfactory.domain.timestamps import ns_to_datetime
from signalfactory.services.backtests.run import get_backtest
from signalfactory.services.marketdata.bars import load_universe
from signalfactory.services.platform import Platform

SHOWN_METRICS = ("total_return", "cagr", "volatility", "sharpe", "sortino", "calmar",
                 "max_drawdown", "max_drawdown_bars", "var_95", "cvar_95", "win_rate",
                 "profit_factor", "expectancy", "avg_trade_return", "exposure", "n_trades",
                 "open_trades", "avg_holding_bars", "buy_and_hold_return", "final_equity",
                 "n_bars")


def best_symbol(per_symbol: Sequence[Scalars]) -> str:
    def key(item: tuple[int, Scalars]) -> tuple[float, int]:
        value = item[1].get("total_return")
        return (-(value if isinstance(value, float) and math.isfinite(value) else -math.inf),
                item[0])

    return str(min(enumerate(per_symbol), key=key)[1]["symbol"])


def _pct(value: Scalar) -> str:
    return f"{value:+.2%}" if isinstance(value, float) and math.isfinite(value) else "n/a"


def _number(value: Scalar) -> float:
    return float(value) if isinstance(value, int | float) else math.nan


def render_report(platform: Platform, tenant_id: int, backtest_id: str) -> str:
    stored = get_backtest(platform, tenant_id, backtest_id, trades_limit=0).backtest
    data = stored.data_range
    label = stored.strategy_name + (f" v{stored.strategy_version}"
                                    if stored.strategy_version else "")
    cash = _number(stored.setting("cash"))
    symbol = None if stored.mode == "portfolio" else (
        data.symbols[0] if stored.mode == "single" else best_symbol(stored.per_symbol))
    with platform.database.read() as uow:
        curve = uow.backtests.equity_curve(backtest_id, symbol or "")
        trades = uow.backtests.trades(backtest_id, symbol=symbol)
    if curve is None:
        raise OperationalError(f"backtest {backtest_id} has no equity curve for "
                               f"{symbol or 'its portfolio'}; the store is damaged")
    ts, equity = curve.ts, curve.equity
    benchmark = None
    metrics: Scalars
    if symbol is not None:
        bars = load_universe(platform, Timeframe.parse(data.timeframe), symbols=[symbol],
                             start=ns_to_datetime(int(ts[0])), end=ns_to_datetime(int(ts[-1])))
        same = bars.n_bars == ts.shape[0] and np.array_equal(bars.ts, ts)
        metrics = next(s for s in stored.per_symbol if s["symbol"] == symbol)
    else:
        same = False
        metrics = stored.metrics
    if same:
        o, h, lo, c = bars.open, bars.high, bars.low, bars.close
        benchmark = cash * c / c[0]
    else:  # portfolio, or the stored bars changed since: draw the equity itself
        c = equity
        o = np.concatenate([[cash], equity[:-1]])
        h, lo = np.maximum(o, c), np.minimum(o, c)
    title = f"{label} on {symbol or 'a portfolio of ' + str(len(data.symbols)) + ' symbols'}"
    subtitle = (f"{data.timeframe} bars {data.start[:10]} to {data.end[:10]}, "
                f"{stored.setting('direction')}, fill {stored.setting('fill')}, "
                f"fees {stored.setting('fees')}, cash {cash:,.0f}; backtest {backtest_id[:12]}")
    if stored.mode == "universe":
        subtitle += (f"; best of {len(data.symbols)} symbols by total return "
                     f"(universe average {_pct(stored.metrics.get('total_return'))})")
    shown = {k: metrics.get(k) for k in SHOWN_METRICS if k in metrics}
    return render_backtest_report(title=title, subtitle=subtitle, ts=ts, open_=o, high=h,
                                  low=lo, close=c, equity=equity, metrics=shown,
                                  trades=trades, benchmark=benchmark)
