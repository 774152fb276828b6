"""A backtest as one self-contained HTML file: price with entries/exits, equity, drawdown,
metrics and trades. The chart library (TradingView lightweight-charts, Apache-2.0) is inlined,
so the file opens anywhere, offline, and can be mailed or archived as it is."""

from __future__ import annotations

import datetime as dt
import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from signalfactory.domain.backtest.stored import Scalar, TradeRecord

# The one copy of the chart library in the package: the dashboard serves the same file from
# /static. Found by path (the report must not import the dashboard, a layer above it).
LIGHTWEIGHT_CHARTS_JS = (Path(__file__).parents[2] / "web" / "static" / "vendor"
                         / "lightweight-charts.standalone.production.js")

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
 body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d2330}
 h1{font-size:20px;margin:0 0 4px} .sub{color:#5b6475;margin-bottom:16px}
 .chart{height:380px;margin:8px 0 20px;border:1px solid #e3e6ec}
 .small{height:200px}
 table{border-collapse:collapse;margin:8px 0 24px;font-variant-numeric:tabular-nums}
 th,td{padding:4px 10px;border-bottom:1px solid #eceef2;text-align:right}
 th:first-child,td:first-child{text-align:left} .neg{color:#c62828} .pos{color:#2e7d32}
 .grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:0 24px}
</style></head><body>
<h1>__TITLE__</h1><div class="sub">__SUBTITLE__</div>
<h2>Price, entries and exits</h2><div id="price" class="chart"></div>
<h2>Equity</h2><div id="equity" class="chart small"></div>
<h2>Drawdown</h2><div id="drawdown" class="chart small"></div>
<h2>Metrics</h2><div class="grid">__METRICS__</div>
<h2>Trades (__NTRADES__)</h2>__TRADES__
<script>__LIB__</script>
<script>
const DATA = __DATA__;
function mk(id, opts){ const el=document.getElementById(id);
  return LightweightCharts.createChart(el,Object.assign({width:el.clientWidth,
   height:el.clientHeight,layout:{background:{color:'#ffffff'},textColor:'#1d2330'},
   timeScale:{timeVisible:DATA.intraday}},opts||{})); }
const price = mk('price');
const candles = price.addCandlestickSeries();
candles.setData(DATA.bars);
candles.setMarkers(DATA.markers);
const eq = mk('equity'); eq.addLineSeries({color:'#1565c0'}).setData(DATA.equity);
if (DATA.benchmark.length) eq.addLineSeries({color:'#9e9e9e',lineWidth:1}).setData(DATA.benchmark);
const dd = mk('drawdown'); dd.addAreaSeries({lineColor:'#c62828',topColor:'rgba(198,40,40,0.05)',
  bottomColor:'rgba(198,40,40,0.4)'}).setData(DATA.drawdown);
for (const c of [price, eq, dd]) c.timeScale().fitContent();
window.addEventListener('resize',()=>{
  for(const [c,id] of [[price,'price'],[eq,'equity'],[dd,'drawdown']])
    c.applyOptions({width:document.getElementById(id).clientWidth});});
document.body.dataset.rendered = 'yes';
</script></body></html>
"""


def _time(ns: int, intraday: bool) -> int | str:
    """A chart time: epoch seconds for intraday bars, the day for daily and longer ones."""
    seconds = int(ns // 1_000_000_000)
    if intraday:
        return seconds
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).strftime("%Y-%m-%d")


def _fmt(value: Scalar) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return "–"
        return f"{value:,.4f}" if abs(value) < 1000 else f"{value:,.2f}"
    return html.escape(str(value))


def _thin(n: int, limit: int) -> np.ndarray:
    """Indices that keep a chart responsive for millions of bars (every k-th plus the last)."""
    if n <= limit:
        return np.arange(n)
    step = math.ceil(n / limit)
    idx = np.arange(0, n, step)
    return idx if idx[-1] == n - 1 else np.append(idx, n - 1)


def render_backtest_report(*, title: str, subtitle: str, ts: np.ndarray, open_: np.ndarray,
                           high: np.ndarray, low: np.ndarray, close: np.ndarray,
                           equity: np.ndarray, metrics: Mapping[str, Scalar],
                           trades: Sequence[TradeRecord],
                           benchmark: np.ndarray | None = None,
                           max_points: int = 20_000) -> str:
    """The report page as a string; a trade still open at the end is marked without an
    exit."""
    intraday = bool(len(ts) > 1 and np.median(np.diff(ts)) < 86_400 * 1_000_000_000)
    keep = _thin(len(ts), max_points)
    times = [_time(int(t), intraday) for t in ts[keep]]
    bars = [{"time": t, "open": float(o), "high": float(h), "low": float(lo),
             "close": float(c)}
            for t, o, h, lo, c in zip(times, open_[keep], high[keep], low[keep], close[keep],
                                      strict=True)]
    peak = np.maximum.accumulate(equity)
    drawdown = np.where(peak > 0, equity / peak - 1.0, 0.0)
    markers: list[dict[str, int | str]] = []
    for trade in trades[:5000]:
        long = trade.size >= 0
        markers.append({"time": _time(trade.entry_ts, intraday),
                        "position": "belowBar" if long else "aboveBar",
                        "color": "#2e7d32" if long else "#c62828",
                        "shape": "arrowUp" if long else "arrowDown",
                        "text": "buy" if long else "sell"})
        if not trade.is_open:
            markers.append({"time": _time(trade.exit_ts, intraday),
                            "position": "aboveBar" if long else "belowBar",
                            "color": "#455a64", "shape": "circle", "text": "exit"})
    markers.sort(key=lambda m: m["time"])  # all int or all str: one kind of time per page
    data = {
        "intraday": intraday, "bars": bars, "markers": markers,
        "equity": [{"time": t, "value": float(v)} for t, v in zip(times, equity[keep],
                                                                    strict=True)],
        "drawdown": [{"time": t, "value": float(v)} for t, v in zip(times, drawdown[keep],
                                                                      strict=True)],
        "benchmark": [] if benchmark is None else [
            {"time": t, "value": float(v)} for t, v in zip(times, benchmark[keep], strict=True)],
    }
    metrics_html = "".join(
        f"<table><tr><th>{html.escape(str(k).replace('_', ' '))}</th><td>{_fmt(v)}</td></tr>"
        "</table>" for k, v in metrics.items())
    columns = ("entry_time", "exit_time", "side", "size", "entry_price", "exit_price", "pnl",
               "return", "exit_reason")
    rows = []
    for trade in trades[:2000]:
        values: dict[str, Scalar] = {
            "entry_time": str(_time(trade.entry_ts, intraday)),
            "exit_time": "open" if trade.is_open else str(_time(trade.exit_ts, intraday)),
            "side": "long" if trade.size >= 0 else "short", "size": trade.size,
            "entry_price": trade.entry_price, "exit_price": trade.exit_price,
            "pnl": trade.pnl, "return": trade.return_, "exit_reason": trade.exit_reason}
        cells = []
        for col in columns:
            value = values[col]
            css = ""
            if col in ("pnl", "return") and isinstance(value, int | float):
                css = ' class="neg"' if value < 0 else ' class="pos"'
            cells.append(f"<td{css}>{_fmt(value)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    more = (f"<p>… and {len(trades) - 2000} more trades (see the JSON output)</p>"
            if len(trades) > 2000 else "")
    trades_html = ("<table><tr>" + "".join(f"<th>{c.replace('_', ' ')}</th>" for c in columns)
                   + "</tr>" + "".join(rows) + "</table>" + more)
    # "</" inside inline JSON would end the script element early.
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return (_PAGE.replace("__LIB__", LIGHTWEIGHT_CHARTS_JS.read_text(encoding="utf-8"))
            .replace("__DATA__", payload)
            .replace("__TITLE__", html.escape(title))
            .replace("__SUBTITLE__", html.escape(subtitle))
            .replace("__METRICS__", metrics_html)
            .replace("__NTRADES__", str(len(trades)))
            .replace("__TRADES__", trades_html))
