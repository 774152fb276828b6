"""The decision step (the engine's rules) and positions moved by fills."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest

from signalfactory.domain.backtest import Signals
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.strategies import RuleStrategy, builtin_strategy
from signalfactory.domain.synthetic import generate_universe
from signalfactory.domain.trading.bots import ACTIVE, Bot, RiskLimits
from signalfactory.domain.trading.capital import bot_cash
from signalfactory.domain.trading.decisions import (
    CLOSE,
    FLIP_LONG,
    FLIP_SHORT,
    NONE,
    OPEN_LONG,
    OPEN_SHORT,
    QUIET,
    BarSignals,
    BotRef,
    apply_execution,
    apply_fill,
    backtest_config,
    decide,
    entry_intent,
    exit_intent,
    flat,
    mirrors_short,
    strategy_signals,
)
from signalfactory.domain.trading.orders import Fill, Position, Side

T0 = datetime(2024, 5, 6, tzinfo=UTC)
REF = BotRef(tenant_id=1, bot_id=4, account_id=2)


def bot(**kw: object) -> Bot:
    base: dict[str, object] = dict(
        id=4, tenant_id=1, name="b", strategy_version_id=1, account_id=2, symbols=("X",),
        timeframe="1h", allocation=5_000.0, sizing="cash", size_value=1_000.0,
        limits=RiskLimits(), status="stopped", state=ACTIVE, created_at=T0, updated_at=T0)
    base.update(kw)
    return Bot(**base)


@pytest.mark.parametrize(("qty", "signals", "direction", "action"), [
    (0.0, QUIET, "both", NONE),
    (0.0, BarSignals(long_entry=True), "long", OPEN_LONG),
    (0.0, BarSignals(long_entry=True), "short", NONE),
    (0.0, BarSignals(long_entry=True, long_exit=True), "long", NONE),
    (0.0, BarSignals(long_entry=True, short_entry=True), "both", NONE),
    (0.0, BarSignals(short_entry=True), "both", OPEN_SHORT),
    (3.0, BarSignals(long_exit=True), "long", CLOSE),
    (3.0, BarSignals(short_entry=True), "both", FLIP_SHORT),
    (3.0, BarSignals(short_entry=True), "long", NONE),
    (-2.0, BarSignals(long_entry=True), "both", FLIP_LONG),
    (-2.0, BarSignals(short_exit=True), "short", CLOSE),
    (-2.0, BarSignals(long_exit=True), "short", NONE),
])
def test_decide_is_the_engines_rule(qty: float, signals: BarSignals, direction: str,
                                    action: int) -> None:
    assert decide(qty, signals, direction) == action


def test_decide_refuses_an_unknown_direction() -> None:
    with pytest.raises(BadInputError):
        decide(0.0, BarSignals(long_entry=True), "sideways")


def test_exit_then_entry_intents() -> None:
    leave = exit_intent(REF, symbol="X", quantity=3.0, action=FLIP_SHORT, bar_ns=99, price=10.0)
    assert leave is not None and (leave.side, leave.quantity, leave.reason) == \
        ("sell", 3.0, "reverse")
    assert exit_intent(REF, symbol="X", quantity=0.0, action=CLOSE, bar_ns=99,
                       price=10.0) is None
    assert exit_intent(REF, symbol="X", quantity=2.0, action=OPEN_LONG, bar_ns=99,
                       price=10.0) is None
    cover = exit_intent(REF, symbol="X", quantity=-2.0, action=CLOSE, bar_ns=99, price=10.0)
    assert cover is not None and (cover.side, cover.reason) == ("buy", "exit")
    config = backtest_config(bot())
    enter = entry_intent(REF, symbol="X", action=FLIP_SHORT, bar_ns=99, price=10.0,
                         equity=5_000, cash=5_000, config=config)
    assert enter is not None and (enter.side, enter.quantity) == ("sell", 100.0)
    assert enter.client_order_id != leave.client_order_id
    assert enter.client_order_id == entry_intent(
        REF, symbol="X", action=FLIP_SHORT, bar_ns=99, price=10.0, equity=1, cash=5_000,
        config=config).client_order_id  # the same decision, the same id (after a restart)
    assert entry_intent(REF, symbol="X", action=CLOSE, bar_ns=99, price=10.0, equity=5_000,
                        cash=5_000, config=config) is None
    assert entry_intent(REF, symbol="X", action=OPEN_LONG, bar_ns=99, price=10.0, equity=5,
                        cash=5, config=config) is None  # cannot afford a whole unit


def test_backtest_config_of_a_bot() -> None:
    config = backtest_config(bot(direction="both", fill="next_open", fee_pct=0.001,
                                 fee_fixed=2.0, slippage_bps=3.0, whole_units=False,
                                 sizing="risk", size_value=0.01, atr_multiple=2.5))
    assert (config.direction, config.fill, config.initial_cash, config.fee_pct,
            config.fee_fixed, config.slippage_bps, config.whole_units, config.sizing,
            config.size_value, config.atr_multiple) == \
        ("both", "next_open", 5_000.0, 0.001, 2.0, 3.0, False, "risk", 0.01, 2.5)
    with pytest.raises(BadInputError):
        backtest_config(bot(fill="tomorrow"))


def test_signals_as_the_backtest_service_builds_them() -> None:
    series = generate_universe(1, 300, seed=1)[0].bars
    long_only = builtin_strategy("sma_cross", fast=5, slow=20)
    ev = long_only.evaluate(series)
    assert not mirrors_short(long_only, "long")
    assert mirrors_short(long_only, "both")
    mirrored = strategy_signals(ev, mirror=True)
    assert np.array_equal(mirrored.short_entry, ev.exit)
    assert np.array_equal(mirrored.short_exit, ev.entry)
    plain = strategy_signals(ev, mirror=False)
    assert not plain.short_entry.any() and np.array_equal(plain.long_entry, ev.entry)
    with_shorts = RuleStrategy.from_text(
        "s", "entry: close > sma(close, 5)\nexit: close < sma(close, 5)\n"
             "short_entry: close < sma(close, 9)\nshort_exit: close > sma(close, 9)")
    assert not mirrors_short(with_shorts, "both")
    at = BarSignals.at(Signals.build(3, long_exit=np.array([0, 1, 0], bool)), 1)
    assert at == BarSignals(long_exit=True) and at.any and not QUIET.any


def test_positions_add_reduce_close_and_flip() -> None:
    p = flat(4, "X", T0)
    p = apply_execution(p, delta=2.0, price=100.0, fee=1.0, at=T0)
    assert (p.quantity, p.average_price, p.realised_pnl) == (2.0, 100.0, -1.0)
    p = apply_execution(p, delta=2.0, price=110.0, fee=1.0, at=T0)
    assert (p.quantity, p.average_price, p.realised_pnl) == (4.0, 105.0, -2.0)
    p = apply_execution(p, delta=-1.0, price=120.0, fee=0.5, at=T0)
    assert (p.quantity, p.average_price) == (3.0, 105.0)
    assert p.realised_pnl == pytest.approx(-2.0 + 15.0 - 0.5)
    p = apply_execution(p, delta=-5.0, price=100.0, fee=0.0, at=T0)  # through zero
    assert (p.quantity, p.average_price) == (-2.0, 100.0)
    assert p.realised_pnl == pytest.approx(12.5 - 15.0)
    p = apply_execution(p, delta=2.0, price=90.0, fee=0.0, at=T0)  # a short gains on a fall
    assert (p.quantity, p.average_price) == (0.0, 0.0)
    assert p.realised_pnl == pytest.approx(-2.5 + 20.0)
    with pytest.raises(BadInputError):
        apply_execution(p, delta=1.0, price=0.0, fee=0.0, at=T0)
    with pytest.raises(BadInputError):
        apply_execution(p, delta=math.nan, price=1.0, fee=0.0, at=T0)


def fill(side: Side, qty: float, price: float, fee: float, currency: str = "USDT") -> Fill:
    return Fill(account_id=2, order_id=1, trade_id="1", symbol="BTC/USDT", side=side,
                quantity=qty, price=price, fee=fee, fee_currency=currency, executed_at=T0)


def test_fees_in_the_base_currency_come_out_of_the_quantity() -> None:
    # bought 1 BTC at 100, paid 0.001 BTC fee: holds 0.999; the bot's cash fell by exactly 100
    p = apply_fill(None, fill("buy", 1.0, 100.0, 0.001, "BTC"), bot_id=4, base_currency="BTC")
    assert p.quantity == pytest.approx(0.999) and p.average_price == 100.0
    assert bot_cash(1000.0, [p]) == pytest.approx(900.0)
    p = apply_fill(p, fill("buy", 1.0, 120.0, 0.001, "BTC"), bot_id=4, base_currency="BTC")
    assert bot_cash(1000.0, [p]) == pytest.approx(780.0)
    # sold everything but the fee, fee in quote: the bot has its cash back plus the gain
    p = apply_fill(p, fill("sell", p.quantity, 130.0, 0.0), bot_id=4, base_currency="BTC")
    assert p.quantity == 0.0
    assert bot_cash(1000.0, [p]) == pytest.approx(780.0 + 1.998 * 130.0)
    # a fee in the quote currency is PnL
    q = apply_fill(None, fill("buy", 1.0, 100.0, 0.1), bot_id=4, base_currency="BTC")
    assert (q.quantity, q.realised_pnl) == (1.0, -0.1)
    with pytest.raises(BadInputError):
        apply_fill(None, fill("buy", 0.0, 100.0, 0.0), bot_id=4)


def test_position_record_is_stable() -> None:
    p = apply_fill(None, fill("sell", 2.0, 50.0, 0.0), bot_id=4)
    assert p == Position(bot_id=4, symbol="BTC/USDT", quantity=-2.0, average_price=50.0,
                         realised_pnl=0.0, updated_at=T0)
