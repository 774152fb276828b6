"""The daily trading report of a tenant, pure: per-bot figures of one UTC day, its short text
for messengers, and the JSON it is stored as (the HTML page is rendered from that JSON, so a
stored report looks the same whenever it is opened).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

#: the most equity points a stored report keeps per bot (the chart thins longer curves)
MAX_POINTS = 2000


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class BotDay:
    """One bot on the report's day. Money in the account's quote currency; figures over the
    bot's whole equity curve up to the end of the day; None: not enough marks yet."""

    bot_id: int
    name: str
    status: str
    state: str
    symbols: tuple[str, ...]
    allocation: float
    equity: float | None
    day_pnl: float | None
    total_pnl: float | None
    realised_pnl: float | None
    unrealised_pnl: float | None
    exposure: float | None
    sharpe: float | None
    sortino: float | None
    max_drawdown: float | None
    var_95: float | None
    orders_today: int
    open_positions: int
    #: (epoch seconds, equity) marks up to the end of the day, thinned to MAX_POINTS
    curve: tuple[tuple[int, float], ...] = ()


@dataclass(frozen=True)
class DailyReport:
    tenant_id: int
    tenant_name: str
    day: date
    generated_at: datetime
    bots: tuple[BotDay, ...]
    #: kill switches engaged on the tenant, its bots or globally at generation time
    kill_switches: tuple[str, ...] = ()
    #: where the full page is (filled in by the service, e.g. the API path)
    link: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def day_pnl(self) -> float:
        return sum(b.day_pnl for b in self.bots if b.day_pnl is not None)

    @property
    def equity(self) -> float:
        return sum(b.equity for b in self.bots if b.equity is not None)

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["day"] = self.day.isoformat()
        body["generated_at"] = self.generated_at.isoformat()
        for bot in body["bots"]:
            bot["symbols"] = list(bot["symbols"])
            bot["curve"] = [list(p) for p in bot["curve"]]
            for key, value in bot.items():
                if isinstance(value, float):
                    bot[key] = _finite(value)
        body["kill_switches"] = list(self.kill_switches)
        return body

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> DailyReport:
        bots = tuple(BotDay(**{**b, "symbols": tuple(b["symbols"]),
                               "curve": tuple((int(t), float(v)) for t, v in b["curve"])})
                     for b in body["bots"])
        return cls(tenant_id=int(body["tenant_id"]), tenant_name=body["tenant_name"],
                   day=date.fromisoformat(body["day"]),
                   generated_at=datetime.fromisoformat(body["generated_at"]), bots=bots,
                   kill_switches=tuple(body.get("kill_switches", ())),
                   link=body.get("link", ""), extra=dict(body.get("extra", {})))


@dataclass(frozen=True)
class StoredReport:
    """A report as stored: its JSON (``DailyReport.to_json``), text and the campaign that
    sent it."""

    id: int
    tenant_id: int
    day: date
    report: dict[str, Any]
    text: str
    campaign_id: int | None


def _money(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+,.2f}"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def summary_text(report: DailyReport, *, max_bots: int = 10) -> str:
    """The short text messengers get: the day's PnL, then one line per bot (worst first)."""
    lines = [f"Trading report {report.day.isoformat()} ({report.tenant_name}): "
             f"day PnL {_money(report.day_pnl)}, equity {report.equity:,.2f} over "
             f"{len(report.bots)} bot(s)"]
    if report.kill_switches:
        lines.append("KILL SWITCH ENGAGED: " + ", ".join(report.kill_switches))
    ranked = sorted(report.bots, key=lambda b: (b.day_pnl is None, b.day_pnl or 0.0))
    for bot in ranked[:max_bots]:
        flag = "" if bot.state == "active" else f" [{bot.state}]"
        lines.append(f"- {bot.name}{flag}: day {_money(bot.day_pnl)}, total "
                     f"{_money(bot.total_pnl)}, Sharpe {_ratio(bot.sharpe)}, max DD "
                     f"{_pct(bot.max_drawdown)}, VaR95 {_pct(bot.var_95)}, "
                     f"{bot.orders_today} order(s)")
    if len(ranked) > max_bots:
        lines.append(f"... and {len(ranked) - max_bots} more bot(s)")
    if report.link:
        lines.append(f"Full report: {report.link}")
    return "\n".join(lines)
