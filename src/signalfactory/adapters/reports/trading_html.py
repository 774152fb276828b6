"""The daily trading report as one self-contained HTML file: the tenant's totals, one equity
chart per bot (TradingView lightweight-charts, inlined like the backtest report's, so the file
opens offline and can be mailed or archived) and a table of each bot's figures."""

from __future__ import annotations

import html
import json
import re

from signalfactory.adapters.reports.backtest_html import LIGHTWEIGHT_CHARTS_JS
from signalfactory.domain.daily_report import BotDay, DailyReport

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
 body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d2330}
 h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:20px 0 4px}
 .sub{color:#5b6475;margin-bottom:16px} .alert{color:#c62828;font-weight:bold}
 .chart{height:220px;margin:8px 0 16px;border:1px solid #e3e6ec}
 table{border-collapse:collapse;margin:8px 0 24px;font-variant-numeric:tabular-nums}
 th,td{padding:4px 10px;border-bottom:1px solid #eceef2;text-align:right}
 th:first-child,td:first-child{text-align:left} .neg{color:#c62828} .pos{color:#2e7d32}
</style></head><body>
<h1>__TITLE__</h1><div class="sub">__SUBTITLE__</div>__ALERTS__
<table><tr>__HEAD__</tr>__ROWS__</table>
__CHARTS__
<script>__LIB__</script>
<script>
const DATA = __DATA__;
const charts = [];
for (const bot of DATA) {
  const el = document.getElementById('equity-' + bot.id);
  const chart = LightweightCharts.createChart(el, {width: el.clientWidth,
    height: el.clientHeight, layout: {background: {color: '#ffffff'}, textColor: '#1d2330'},
    timeScale: {timeVisible: true}});
  chart.addLineSeries({color: '#1565c0'}).setData(bot.curve);
  chart.timeScale().fitContent();
  charts.push([chart, el]);
}
window.addEventListener('resize', () => {
  for (const [chart, el] of charts) chart.applyOptions({width: el.clientWidth}); });
document.body.dataset.rendered = 'yes';
</script></body></html>
"""

_PLACEHOLDER = re.compile(r"__(LIB|DATA|TITLE|SUBTITLE|ALERTS|HEAD|ROWS|CHARTS)__")
_COLUMNS = ("bot", "state", "equity", "day PnL", "total PnL", "realised", "unrealised",
            "exposure", "Sharpe", "Sortino", "max DD", "VaR 95", "orders today",
            "open positions")


def _cell(value: float | int | str | None, kind: str = "") -> str:
    if value is None:
        return "<td>–</td>"
    if isinstance(value, str):
        return f"<td>{html.escape(value)}</td>"
    if kind == "pct":
        return f"<td>{value:.2%}</td>"
    if kind == "money":
        css = ' class="neg"' if value < 0 else ' class="pos"' if value > 0 else ""
        return f"<td{css}>{value:+,.2f}</td>"
    if kind == "ratio":
        return f"<td>{value:.2f}</td>"
    return f"<td>{value:,}</td>" if isinstance(value, int) else f"<td>{value:,.2f}</td>"


def _row(bot: BotDay) -> str:
    cells = [_cell(bot.name), _cell(bot.state), _cell(bot.equity),
             _cell(bot.day_pnl, "money"), _cell(bot.total_pnl, "money"),
             _cell(bot.realised_pnl, "money"), _cell(bot.unrealised_pnl, "money"),
             _cell(bot.exposure), _cell(bot.sharpe, "ratio"), _cell(bot.sortino, "ratio"),
             _cell(bot.max_drawdown, "pct"), _cell(bot.var_95, "pct"),
             _cell(bot.orders_today), _cell(bot.open_positions)]
    return "<tr>" + "".join(cells) + "</tr>"


def render_daily_report(report: DailyReport) -> str:
    """The page as a string; the same report always gives the same page."""
    title = f"Trading report {report.day.isoformat()}: {report.tenant_name}"
    subtitle = (f"{len(report.bots)} bot(s), equity {report.equity:,.2f}, day PnL "
                f"{report.day_pnl:+,.2f}; figures over each bot's equity marks up to the end "
                f"of the day (UTC); generated {report.generated_at.isoformat()[:19]}Z")
    alerts = ("".join(f'<p class="alert">Kill switch engaged: {html.escape(k)}</p>'
                      for k in report.kill_switches))
    charts = "".join(
        f"<h2>{html.escape(bot.name)}: equity</h2>"
        + (f'<div id="equity-{bot.bot_id}" class="chart"></div>' if bot.curve
           else "<p>No equity marks yet.</p>")
        for bot in report.bots)
    data = [{"id": bot.bot_id, "curve": [{"time": t, "value": v} for t, v in bot.curve]}
            for bot in report.bots if bot.curve]
    # "</" inside inline JSON would end the script element early.
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    parts = {"LIB": LIGHTWEIGHT_CHARTS_JS.read_text(encoding="utf-8"), "DATA": payload,
             "TITLE": html.escape(title), "SUBTITLE": html.escape(subtitle), "ALERTS": alerts,
             "HEAD": "".join(f"<th>{c}</th>" for c in _COLUMNS),
             "ROWS": "".join(_row(b) for b in report.bots), "CHARTS": charts}
    # one pass: a tenant or bot name that looks like a placeholder stays text
    return _PLACEHOLDER.sub(lambda m: parts[m.group(1)], _PAGE)
