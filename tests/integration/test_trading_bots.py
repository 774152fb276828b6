"""Bots on the real stack (SQLite and PostgreSQL): a paper bot trading a stored strategy as
its backtest does, ticks queued by bar writes and run as jobs; a bot trading through the real
ccxt client against the exchange simulator, whose balances end equal to the bot's positions;
the kill switch cancelling a working order on the simulator and blocking new ones; bad input
storing nothing."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator

import numpy as np
import pytest

from signalfactory.domain.backtest import run_backtest
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.strategies import RuleStrategy
from signalfactory.domain.trading.bots import BOT, HALTED
from signalfactory.domain.trading.decisions import backtest_config, strategy_signals
from signalfactory.domain.trading.orders import CANCELLED, FILLED, OPEN, OrderIntent
from signalfactory.services.platform import Platform
from signalfactory.services.trading import accounts, bots, killswitch
from signalfactory.services.trading.execution import place_orders
from signalfactory.services.trading.reconcile import reconcile
from signalfactory.services.trading.sessions import open_session
from signalfactory.testing.exchange_simulator import ExchangeSimulator
from signalfactory.workers.runner import EmbeddedRunner
from tests.helpers import fingerprint
from tests.trading_setup import (
    CROSS,
    SYMBOL,
    market_bars,
    sim_account,
    sim_symbol,
    store_strategy,
    trading_platform,
    write_slice,
)

FAST = ("entry: crosses_above(sma(close, 2), sma(close, 5))\n"
        "exit: crosses_below(sma(close, 2), sma(close, 5))")


@pytest.fixture
def trading(platform: Platform) -> Iterator[Platform]:
    ready = trading_platform(platform)
    store_strategy(ready)
    yield ready


def _run(runner: EmbeddedRunner) -> None:
    outcomes = runner.run_until_idle()
    assert all(o.status == "succeeded" for o in outcomes), outcomes


def test_a_paper_bot_trades_a_stored_strategy_as_its_backtest(trading: Platform) -> None:
    series = market_bars(200, seed=11)
    write_slice(trading, [series], 0, 100)
    account = accounts.create_account(trading, 1, name="paper", kind="paper",
                                      initial_cash=10_000)
    bot = bots.create_bot(trading, 1, name="trend", strategy="cross", account_id=account.id,
                          symbols=[SYMBOL], allocation=10_000, fee_pct=0.001,
                          slippage_bps=5.0)
    bots.start_bot(trading, 1, bot.id)
    runner = EmbeddedRunner(trading)
    _run(runner)  # the first tick reconciles and notes the newest bar
    for a in range(100, 200, 20):  # collector pages of 20 bars: each queues a tick
        write_slice(trading, [series], a, a + 20)
        _run(runner)
    strategy = RuleStrategy.from_text("cross", CROSS)
    signals = strategy_signals(strategy.evaluate(series), mirror=False)
    result = run_backtest(series.open, series.high, series.low, series.close, signals,
                          backtest_config(bots.get_bot(trading, 1, bot.id)), start=100)
    with trading.database.read() as uow:
        marks = uow.bot_marks.series(bot.id)
        orders = uow.orders.find(bot_id=bot.id, limit=1000)
    assert len(result.trades) >= 3
    np.testing.assert_allclose([m.equity for m in marks], result.equity, rtol=1e-11)
    entries = sorted(int(series.ts[i]) for i in result.trades.entry_idx)
    assert sorted(o.bar_ns for o in orders if o.reason == "entry") == entries
    assert {o.status for o in orders} == {FILLED}
    status = bots.bot_status(trading, 1, bot.id)
    assert status.last_mark is not None and status.last_mark.equity == pytest.approx(
        result.final_equity, rel=1e-11)


def test_a_bot_trades_through_ccxt_against_the_simulator(trading: Platform) -> None:
    series = market_bars(70, seed=5, symbol="BTC/USDT")
    write_slice(trading, [series], 0, 40)
    store_strategy(trading, "fast", FAST)
    with ExchangeSimulator([sim_symbol("BTC", price=float(series.close[39]))],
                           balances={"USDT": 50_000}) as sim:
        account = sim_account(trading, sim)
        bot = bots.create_bot(trading, 1, name="live", strategy="fast",
                              account_id=account.id, symbols=["BTC/USDT"], allocation=20_000,
                              sizing="fraction", size_value=0.5, whole_units=False,
                              fee_pct=0.001)
        bots.start_bot(trading, 1, bot.id)
        runner = EmbeddedRunner(trading)
        _run(runner)
        for t in range(40, 70):
            sim.set_price("BTCUSDT", float(series.close[t]))  # the market the bars describe
            write_slice(trading, [series], t, t + 1)
            _run(runner)
        with trading.database.read() as uow:
            orders = uow.orders.find(bot_id=bot.id, limit=1000)
            fills = uow.orders.fills(bot_id=bot.id)
            positions = uow.positions.find(bot_id=bot.id)
        sim_orders = sim.orders()
        assert len(orders) >= 4 and {o.status for o in orders} == {FILLED}
        # every stored order reached the exchange exactly once, and nothing else did
        counts = Counter(o.client_order_id for o in sim_orders)
        assert counts == Counter(o.client_order_id for o in orders)
        assert len(fills) == len(sim.trades())
        held = sum(p.quantity for p in positions)
        assert float(sim.balances()["BTC"][0]) == pytest.approx(held, abs=1e-12)
        report = reconcile(open_session(trading, bots.get_bot(trading, 1, bot.id)))
        assert report.mismatches == 0 and report.balance_mismatches == []


def test_kill_switch_cancels_working_orders_on_the_exchange_and_blocks_new_ones(
        trading: Platform) -> None:
    write_slice(trading, [market_bars(30, seed=2, symbol="BTC/USDT")], 0, 30)
    with ExchangeSimulator([sim_symbol("BTC", price=30_000.0)],
                           balances={"USDT": 50_000}) as sim:
        account = sim_account(trading, sim)
        bot = bots.create_bot(trading, 1, name="k", strategy="cross", account_id=account.id,
                              symbols=["BTC/USDT"], allocation=20_000)
        session = open_session(trading, bot)
        limit = OrderIntent(tenant_id=1, bot_id=bot.id, account_id=account.id,
                            symbol="BTC/USDT", side="buy", quantity=0.1, type="limit",
                            limit_price=25_000.0, bar_ns=1, reason="entry",
                            reference_price=30_000.0)
        market = dataclasses.replace(limit, type="market", limit_price=None, bar_ns=2,
                                     quantity=0.05)
        [resting, bought] = place_orders(session, [limit, market])
        assert (resting.outcome, bought.outcome) == (OPEN, FILLED)
        report = killswitch.engage_kill_switch(trading, BOT, bot.id, actor="admin:1",
                                               reason="test", flatten=True)
        assert report.sweep.cancelled == 1 and report.sweep.flatten_orders == 1
        [sim_resting] = [o for o in sim.orders() if o.client_order_id
                         == limit.client_order_id]
        assert sim_resting.status == "CANCELED"
        assert float(sim.balances()["BTC"][0]) == 0.0  # flattened
        sent = len(sim.orders())
        [blocked] = place_orders(open_session(trading, bot),
                                 [dataclasses.replace(market, bar_ns=3)])
        assert (blocked.outcome, blocked.rule) == ("refused", "kill-switch")
        assert len(sim.orders()) == sent
        with trading.database.read() as uow:
            assert resting.order is not None
            stored = uow.orders.get(None, resting.order.id)
            assert stored is not None and stored.status == CANCELLED
            entries = [e for e in uow.audit.page(after_seq=0, limit=1000)
                       if e.action.startswith(("kill_switch", "order."))]
        actions = [e.action for e in entries]
        assert "kill_switch.engaged" in actions and "order.cancelled" in actions
        placed = [o["client_order_id"] for e in entries if e.action == "order.placed"
                  for o in e.details["orders"]]  # type: ignore[union-attr]
        assert len(placed) == len(set(placed)) == 3  # the limit, the market, the flatten
        assert bots.bot_status(trading, 1, bot.id).effective.state == HALTED


def test_bad_bot_input_stores_nothing(trading: Platform) -> None:
    account = accounts.create_account(trading, 1, name="p", kind="paper", initial_cash=100)
    before = fingerprint()
    for bad in ({"allocation": -1.0}, {"symbols": ["BTC USDT"]}, {"strategy": "missing"},
                {"account_id": account.id + 1}, {"fill": "later"}):
        settings = {"strategy": "cross", "account_id": account.id, "symbols": [SYMBOL],
                    "allocation": 100.0, **bad}
        with pytest.raises(BadInputError):
            bots.create_bot(trading, 1, name="b", **settings)  # type: ignore[arg-type]
    assert fingerprint() == before
