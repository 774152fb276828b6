"""What the trading tests share: synthetic bars, a stored strategy, a platform that can trade
(paper and ccxt through the platform's own exchange factory), simulator accounts."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from signalfactory.adapters.exchanges.factory import DefaultExchangeFactory
from signalfactory.adapters.secret_box import AesGcmSecretBox
from signalfactory.domain.bars import BarSeries
from signalfactory.domain.instruments import InstrumentSpec
from signalfactory.domain.synthetic import business_days, generate_symbol
from signalfactory.domain.timeframes import Timeframe
from signalfactory.domain.trading.bots import ExchangeAccount
from signalfactory.services.marketdata.bars import SymbolBars, write_bars
from signalfactory.services.platform import Platform
from signalfactory.services.strategies.catalog import add_strategy
from signalfactory.services.trading import accounts
from signalfactory.testing.exchange_simulator import ExchangeSimulator, SymbolSpec

DAY = Timeframe.parse("1d")
SYMBOL = "SYN/USDT"
CROSS = ("entry: crosses_above(sma(close, 5), sma(close, 20))\n"
         "exit: crosses_below(sma(close, 5), sma(close, 20))")
#: a Binance-like market on the simulator, loose limits (the simulator is not Binance)
SIM_LIMITS = {"order_limit": "100000/second", "weight_limit": "10000000/minute"}


def market_bars(n: int, seed: int, symbol: str = SYMBOL, start_ns: int = 1_600_000_000 * 10**9
                ) -> BarSeries:
    ts = business_days(start_ns, n)
    raw = generate_symbol(np.random.default_rng(seed), symbol, ts)
    high = np.maximum(raw.high, np.maximum(raw.open, raw.close))
    low = np.minimum(raw.low, np.minimum(raw.open, raw.close))
    return BarSeries(symbol, raw.ts, raw.open, high, low, raw.close, raw.volume)


def write_slice(platform: Platform, series: Sequence[BarSeries], a: int, b: int,
                timeframe: Timeframe = DAY) -> None:
    """Store bars ``a..b-1`` of each series (what a collector's page does)."""
    write_bars(platform, timeframe, [
        SymbolBars(InstrumentSpec(symbol=s.symbol), s.ts[a:b], s.open[a:b], s.high[a:b],
                   s.low[a:b], s.close[a:b], s.volume[a:b]) for s in series], source="test")


def trading_platform(platform: Platform) -> Platform:
    """The platform with an exchange factory and a secret box (what bootstrap builds)."""
    return dataclasses.replace(
        platform, exchanges=platform.exchanges or DefaultExchangeFactory(platform.settings),
        secret_box=platform.secret_box or AesGcmSecretBox(os.urandom(32)))


def store_strategy(platform: Platform, name: str = "cross", rule: str = CROSS,
                   timeframe: str = "1d", tenant_id: int = 1) -> None:
    with platform.database.write() as uow:
        add_strategy(uow, tenant_id, name, rule_text=rule, timeframe=timeframe)


def sim_symbol(base: str = "BTC", price: float = 30_000.0, **rules: Any) -> SymbolSpec:
    values = {"tick_size": "0.01", "step_size": "0.00001", "min_qty": "0.00001",
              "min_notional": "5", **rules}
    return SymbolSpec(base, "USDT", price=price, **values)


def sim_account(platform: Platform, sim: ExchangeSimulator, *, name: str = "sim",
                tenant_id: int = 1, api_key: str | None = None,
                secret: str | None = None) -> ExchangeAccount:
    config = sim.ccxt_config(public_only=True, rate_limit_ms=1, timeout_ms=3000)
    return accounts.create_account(
        platform, tenant_id, name=name, kind="ccxt", exchange="binance",
        quote_currency="USDT", options={"ccxt": config, **SIM_LIMITS},
        api_key=api_key or sim.api_key, secret=secret or sim.secret)
