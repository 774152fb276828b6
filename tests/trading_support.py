"""Trading rows for the report and interface tests, written through the repositories: an
account, a bot, hourly equity marks over three days, orders and a position."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from signalfactory.domain.trading.bots import RiskLimits
from signalfactory.domain.trading.orders import Position
from signalfactory.domain.trading.records import (
    BotMark,
    NewBot,
    NewExchangeAccount,
    NewOrder,
)
from signalfactory.services.platform import Platform
from signalfactory.services.strategies.catalog import add_strategy

DAY = date(2026, 3, 3)
START = datetime(2026, 3, 1, tzinfo=UTC)  # two days of marks before DAY, and DAY itself
ALLOCATION = 10_000.0


def equity_at(hour: int) -> float:
    """A wavy, rising curve: gains and losses, so every figure is defined."""
    return ALLOCATION * (1 + 0.0005 * hour + 0.01 * math.sin(hour / 3))


@dataclass(frozen=True)
class SeededBot:
    tenant_id: int
    account_id: int
    bot_id: int
    hours: int


def seed_bot(platform: Platform, tenant_id: int, name: str = "trend",
             hours: int = 72) -> SeededBot:
    now = START
    with platform.database.write() as uow:
        rule_name = "rule-" + hashlib.sha256(name.encode()).hexdigest()[:8]
        version = add_strategy(uow, tenant_id, rule_name, rule_text="entry: close > 0")[0]
        account = uow.exchange_accounts.add(NewExchangeAccount(
            tenant_id=tenant_id, name=f"{name}-paper", kind="paper", exchange="paper",
            quote_currency="USDT", initial_cash=ALLOCATION), now)
        bot = uow.bots.add(NewBot(
            tenant_id=tenant_id, name=name, strategy_version_id=version.version_id,
            account_id=account.id, symbols=("BTC/USDT",), timeframe="1h",
            allocation=ALLOCATION, sizing="fraction", size_value=1.0,
            limits=RiskLimits(daily_loss_limit=500.0)), now)
        for hour in range(hours):
            equity = equity_at(hour)
            uow.bot_marks.add(BotMark(bot_id=bot.id, ts=START + timedelta(hours=hour),
                                      equity=equity, cash=equity / 2, exposure=equity / 2,
                                      realised_pnl=10.0 * hour,
                                      unrealised_pnl=equity - ALLOCATION - 10.0 * hour))
        # one order the day before DAY, two on DAY
        for i, when in enumerate((START + timedelta(hours=30), START + timedelta(hours=49),
                                  START + timedelta(hours=60))):
            uow.orders.add_pending(NewOrder(
                tenant_id=tenant_id, bot_id=bot.id, account_id=account.id,
                client_order_id=f"sf{bot.id}-{name}-{i}", symbol="BTC/USDT", side="buy",
                type="market", quantity=0.01, limit_price=None, reason="entry"), when)
        uow.positions.put(Position(bot_id=bot.id, symbol="BTC/USDT", quantity=0.02,
                                   average_price=60_000.0, realised_pnl=0.0, updated_at=now))
    return SeededBot(tenant_id, account.id, bot.id, hours)
