"""One behaviour for every trading repository: the in-memory ports (unit tests) and SQL on
SQLite and PostgreSQL (integration tests) run these checks."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from signalfactory.domain.errors import ConflictError
from signalfactory.domain.strategies.stored import NewStrategy, NewStrategyVersion
from signalfactory.domain.trading.bots import (
    ACTIVE,
    BOT,
    GLOBAL,
    HALTED,
    REDUCING,
    RUNNING,
    STOPPED,
    TENANT,
    KillSwitch,
    RiskLimits,
)
from signalfactory.domain.trading.orders import (
    CANCELLED,
    FILLED,
    OPEN,
    PARTIALLY_FILLED,
    PENDING,
    REJECTED,
    Fill,
    Position,
)
from signalfactory.domain.trading.records import (
    CREDENTIAL_ACTIVE,
    CREDENTIAL_REVOKED,
    CREDENTIAL_STANDBY,
    BotMark,
    ExchangeCredential,
    NewBot,
    NewExchangeAccount,
    NewOrder,
    OrderUpdate,
    TradingState,
)
from signalfactory.domain.trading.risk import LossMonitor
from signalfactory.services.ports import Database, UnitOfWork

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _version(uow: UnitOfWork, tenant_id: int, name: str = "trend") -> int:
    strategy_id = uow.strategies.create(NewStrategy(tenant_id=tenant_id, name=name,
                                                    kind="rule"))
    return uow.strategies.add_version(NewStrategyVersion(
        strategy_id=strategy_id, version=1, rule_text="entry: close > sma(close, 3)",
        class_path=None, parameters={}, timeframe="1m", code_hash="0" * 64,
        created_by="test"))


def _account(tenant_id: int, name: str = "paper") -> NewExchangeAccount:
    return NewExchangeAccount(tenant_id=tenant_id, name=name, kind="paper", exchange="paper",
                              quote_currency="USDT", options={"fill": "close"},
                              initial_cash=10_000.0)


def _bot(tenant_id: int, version_id: int, account_id: int, name: str = "b1") -> NewBot:
    return NewBot(tenant_id=tenant_id, name=name, strategy_version_id=version_id,
                  account_id=account_id, symbols=("BTC/USDT", "ETH/USDT"), timeframe="1m",
                  allocation=1_000.0, sizing="fraction", size_value=0.5,
                  limits=RiskLimits(max_order_notional=500.0, daily_loss_limit=100.0,
                                    confirm_marks=3),
                  fee_pct=0.001, slippage_bps=5.0, fill="next_open", fee_fixed=0.5,
                  whole_units=False, atr_period=20, atr_multiple=2.0)


def _order(account_id: int, bot_id: int | None, coid: str, reserved: float = 0.0,
           tenant_id: int = 1) -> NewOrder:
    return NewOrder(tenant_id=tenant_id, bot_id=bot_id, account_id=account_id,
                    client_order_id=coid, symbol="BTC/USDT", side="buy", type="market",
                    quantity=0.5, limit_price=None, reason="entry", bar_ns=123,
                    reference_price=100.0, reserved=reserved)


def check_accounts_and_credentials(database: Database) -> None:
    with database.write() as uow:
        other = uow.accounts.create_tenant("other-accounts", "free").id
        first = uow.exchange_accounts.add(_account(1), T0)
        foreign = uow.exchange_accounts.add(_account(other), T0)  # same name, other tenant
    assert first.options == {"fill": "close"} and first.initial_cash == 10_000.0
    assert first.created_at == T0 and first.kind == "paper"
    with database.write() as uow:
        with pytest.raises(ConflictError):
            uow.exchange_accounts.add(_account(1), T0)
        # the transaction stays usable after the conflict
        assert [a.id for a in uow.exchange_accounts.find(1)] == [first.id]
        uow.exchange_accounts.lock(first.id)
    with database.read() as uow:
        assert uow.exchange_accounts.get(1, first.id) == first
        assert uow.exchange_accounts.get(1, foreign.id) is None
        assert uow.exchange_accounts.get(None, foreign.id) == foreign
        assert [a.id for a in uow.exchange_accounts.find(None)] == [first.id, foreign.id]
        assert uow.exchange_accounts.credentials(first.id) == []

    key1 = ExchangeCredential(account_id=first.id, slot=1, status=CREDENTIAL_ACTIVE,
                              key_hint="…abcd", sealed=b"\x01" + bytes(range(40)),
                              created_at=T0, changed_at=T0)
    key2 = ExchangeCredential(account_id=first.id, slot=2, status=CREDENTIAL_STANDBY,
                              key_hint="…wxyz", sealed=b"\x01second", created_at=T0,
                              changed_at=T0)
    later = T0 + timedelta(hours=1)
    with database.write() as uow:
        uow.exchange_accounts.put_credential(key2)
        uow.exchange_accounts.put_credential(key1)
        uow.exchange_accounts.set_credential_status(first.id, 1, CREDENTIAL_REVOKED, later)
        uow.exchange_accounts.set_credential_status(first.id, 2, CREDENTIAL_ACTIVE, later)
    with database.read() as uow:
        stored = uow.exchange_accounts.credentials(first.id)
        assert [(c.slot, c.status, c.changed_at) for c in stored] == [
            (1, CREDENTIAL_REVOKED, later), (2, CREDENTIAL_ACTIVE, later)]
        assert stored[0].sealed == key1.sealed and stored[0].created_at == T0
        assert uow.exchange_accounts.credentials(foreign.id) == []
    # a new key replaces the revoked one in its slot
    replacement = ExchangeCredential(account_id=first.id, slot=1, status=CREDENTIAL_STANDBY,
                                     key_hint="…new1", sealed=b"\x01third", created_at=later,
                                     changed_at=later)
    with database.write() as uow:
        uow.exchange_accounts.put_credential(replacement)
    with database.read() as uow:
        assert uow.exchange_accounts.credentials(first.id)[0] == replacement


def check_bots(database: Database) -> None:
    with database.write() as uow:
        version = _version(uow, 1, "bots")
        account = uow.exchange_accounts.add(_account(1, "bots"), T0)
        bot = uow.bots.add(_bot(1, version, account.id, "bots"), T0)
        second = uow.bots.add(_bot(1, version, account.id, "bots-2"), T0)
    assert bot.status == STOPPED and bot.state == ACTIVE
    assert bot.symbols == ("BTC/USDT", "ETH/USDT") and bot.limits.confirm_marks == 3
    assert bot.limits.max_order_notional == 500.0 and bot.limits.max_drawdown is None
    assert (bot.fee_pct, bot.slippage_bps, bot.direction) == (0.001, 5.0, "long")
    assert (bot.fill, bot.fee_fixed, bot.whole_units, bot.atr_period, bot.atr_multiple) == (
        "next_open", 0.5, False, 20, 2.0)
    with database.write() as uow:
        with pytest.raises(ConflictError):
            uow.bots.add(_bot(1, version, account.id, "bots"), T0)
        assert [b.id for b in uow.bots.find(tenant_id=1)] == [bot.id, second.id]
    with database.read() as uow:
        assert uow.bots.get(1, bot.id) == bot
        assert uow.bots.get(2, bot.id) is None
        runtime = uow.bots.runtime(bot.id)
        assert runtime is not None and runtime.last_bar_ns == 0
        assert runtime.lease_owner is None and runtime.started_at is None
        assert uow.bots.runtime(999_999) is None

    later = T0 + timedelta(minutes=1)
    with database.write() as uow:
        uow.bots.set_status(bot.id, RUNNING, later)
        uow.trading_states.put_state(TradingState(BOT, bot.id, REDUCING, "loss", later, "risk"))
    with database.read() as uow:
        found = uow.bots.get(None, bot.id)
        assert found is not None and (found.status, found.state) == (RUNNING, REDUCING)
        assert found.updated_at == later
        assert [b.id for b in uow.bots.find(status=RUNNING)] == [bot.id]
        assert [b.id for b in uow.bots.find(account_id=account.id, status=STOPPED)] == [
            second.id]
        runtime = uow.bots.runtime(bot.id)
        assert runtime is not None and runtime.started_at == later

    # the lease: one owner at a time; free again once expired or released
    until = T0 + timedelta(seconds=10)
    with database.write() as uow:
        assert uow.bots.acquire_lease(bot.id, "a", until, T0)
        assert not uow.bots.acquire_lease(bot.id, "b", until, T0 + timedelta(seconds=5))
        assert uow.bots.acquire_lease(bot.id, "a", until + timedelta(seconds=10), T0)
        assert not uow.bots.acquire_lease(bot.id, "b", until, until + timedelta(seconds=5))
        assert uow.bots.acquire_lease(bot.id, "b", until + timedelta(seconds=30),
                                      until + timedelta(seconds=11))
        uow.bots.release_lease(bot.id, "a")  # not a's any more: nothing happens
        runtime = uow.bots.runtime(bot.id)
        assert runtime is not None and runtime.lease_owner == "b"
        uow.bots.release_lease(bot.id, "b")
        assert uow.bots.acquire_lease(bot.id, "c", until, T0)
        # progress never goes back
        uow.bots.set_progress(bot.id, 500)
        uow.bots.set_progress(bot.id, 300)
        uow.bots.set_reconciled(bot.id, later)
    with database.read() as uow:
        runtime = uow.bots.runtime(bot.id)
        assert runtime is not None
        assert (runtime.last_bar_ns, runtime.lease_owner) == (500, "c")
        assert runtime.reconciled_at == later and runtime.lease_until == until


def check_orders_and_fills(database: Database) -> None:
    with database.write() as uow:
        version = _version(uow, 1, "orders")
        account = uow.exchange_accounts.add(_account(1, "orders"), T0)
        other_account = uow.exchange_accounts.add(_account(1, "orders-other"), T0)
        bot = uow.bots.add(_bot(1, version, account.id, "orders"), T0)
        first, created = uow.orders.add_pending(_order(account.id, bot.id, "sf1-a", 60.0), T0)
        again, created_again = uow.orders.add_pending(_order(account.id, bot.id, "sf1-a"), T0)
        # the same client id on another account is another order
        elsewhere, created_elsewhere = uow.orders.add_pending(
            _order(other_account.id, None, "sf1-a", 10.0), T0)
        second, _ = uow.orders.add_pending(_order(account.id, bot.id, "sf1-b", 40.0),
                                           T0 + timedelta(seconds=30))
    assert created and not created_again and created_elsewhere
    assert again == first and elsewhere.id != first.id
    assert (first.status, first.reserved, first.bar_ns, first.reference_price) == (
        PENDING, 60.0, 123, 100.0)
    assert first.exchange_order_id is None and first.filled_quantity == 0.0
    with database.read() as uow:
        assert uow.orders.reserved(account_id=account.id) == 100.0
        assert uow.orders.reserved(bot_id=bot.id) == 100.0
        assert uow.orders.reserved(account_id=other_account.id) == 10.0
        assert uow.orders.count_since(bot.id, T0) == 2
        assert uow.orders.count_since(bot.id, T0 + timedelta(seconds=1)) == 1
        assert uow.orders.by_client_id(account.id, "sf1-b") == second
        assert uow.orders.by_client_id(account.id, "nope") is None
        assert uow.orders.get(1, first.id) == first and uow.orders.get(2, first.id) is None

    later = T0 + timedelta(minutes=1)
    with database.write() as uow:
        opened = uow.orders.update(first.id, OrderUpdate(OPEN, exchange_order_id="x1"), later)
        partial = uow.orders.update(first.id, OrderUpdate(
            PARTIALLY_FILLED, filled_quantity=0.2, average_price=101.0, fee=0.02), later)
        done = uow.orders.update(first.id, OrderUpdate(
            FILLED, filled_quantity=0.5, average_price=101.5, fee=0.05), later)
        # a terminal order never reopens, whatever a late report says
        late = uow.orders.update(first.id, OrderUpdate(OPEN, filled_quantity=0.1), later)
        cancelled = uow.orders.update(second.id, OrderUpdate(CANCELLED, error="kill switch"),
                                      later)
    assert opened.exchange_order_id == "x1" and opened.status == OPEN and opened.reserved == 60
    assert partial.filled_quantity == 0.2 and partial.exchange_order_id == "x1"
    assert (done.status, done.filled_quantity, done.average_price, done.fee, done.reserved) == (
        FILLED, 0.5, 101.5, 0.05, 0.0)
    assert late == done and cancelled.error == "kill switch"
    with database.read() as uow:
        assert uow.orders.reserved(account_id=account.id) == 0.0
        assert [o.id for o in uow.orders.find(tenant_id=1, account_id=account.id)] == [
            second.id, first.id]
        assert [o.id for o in uow.orders.find(bot_id=bot.id, statuses=[FILLED])] == [first.id]
        assert [o.id for o in uow.orders.find(statuses=[PENDING])] == [elsewhere.id]
        assert [o.id for o in uow.orders.find(tenant_id=1, limit=1, offset=1)] == [elsewhere.id]
        assert uow.orders.find(tenant_id=2) == []
        assert [o.id for o in uow.orders.find(symbol="BTC/USDT", bot_id=bot.id)] == [
            second.id, first.id]

    fill = Fill(account_id=account.id, order_id=first.id, trade_id="t-1", symbol="BTC/USDT",
                side="buy", quantity=0.2, price=101.0, fee=0.02, fee_currency="USDT",
                executed_at=later)
    with database.write() as uow:
        assert uow.orders.add_fill(fill)
        assert not uow.orders.add_fill(fill)  # the same trade again: stored once
        assert uow.orders.add_fill(Fill(**{**fill.__dict__, "trade_id": "t-2", "quantity": 0.3}))
        # the same trade id on another account is another trade
        assert uow.orders.add_fill(Fill(**{**fill.__dict__, "account_id": other_account.id,
                                           "order_id": elsewhere.id}))
    with database.read() as uow:
        assert [f.trade_id for f in uow.orders.fills(order_id=first.id)] == ["t-1", "t-2"]
        assert uow.orders.fills(order_id=first.id)[0] == fill
        assert len(uow.orders.fills(bot_id=bot.id)) == 2
        assert len(uow.orders.fills(account_id=other_account.id)) == 1
        assert uow.orders.has_fill(account.id, "t-2")
        assert not uow.orders.has_fill(account.id, "t-3")


def check_batches(database: Database) -> None:
    """The batch forms: one statement each in SQL, the same answers as one at a time."""
    with database.write() as uow:
        version = _version(uow, 1, "batches")
        account = uow.exchange_accounts.add(_account(1, "batches"), T0)
        bot = uow.bots.add(_bot(1, version, account.id, "batches"), T0)
        first, _ = uow.orders.add_pending(_order(account.id, bot.id, "b-0", 5.0), T0)
        refused = dataclasses.replace(_order(account.id, bot.id, "b-2"), status=REJECTED,
                                      error="[max-order-notional] too big")
        stored = uow.orders.add_pending_many(
            [_order(account.id, bot.id, "b-1", 10.0), _order(account.id, bot.id, "b-0"),
             refused, _order(account.id, bot.id, "b-1")], T0)
    assert [(o.client_order_id, created) for o, created in stored] == [
        ("b-1", True), ("b-0", False), ("b-2", True), ("b-1", False)]
    assert stored[1][0] == first and stored[3][0] == stored[0][0]
    assert stored[0][0].reserved == 10.0 and stored[0][0].status == PENDING
    assert (stored[2][0].status, stored[2][0].error) == (REJECTED, "[max-order-notional] too big")
    later = T0 + timedelta(seconds=5)
    with database.write() as uow:
        updated = uow.orders.update_many([
            (stored[0][0].id, OrderUpdate(FILLED, exchange_order_id="e1", filled_quantity=0.5,
                                          average_price=99.0, fee=0.1)),
            (first.id, OrderUpdate(OPEN, exchange_order_id="e0")),
            (stored[2][0].id, OrderUpdate(OPEN))], later)  # rejected stays rejected
    assert [(o.client_order_id, o.status) for o in updated] == [
        ("b-1", FILLED), ("b-0", OPEN), ("b-2", REJECTED)]
    assert updated[0].reserved == 0.0 and updated[1].reserved == 5.0
    assert (updated[0].exchange_order_id, updated[0].average_price, updated[0].fee) == (
        "e1", 99.0, 0.1)
    assert updated[1].filled_quantity == 0.0 and updated[1].updated_at == later
    with database.write() as uow:
        again = uow.orders.update_many([(first.id, OrderUpdate(PARTIALLY_FILLED,
                                                               filled_quantity=0.2))], later)
    assert again[0].exchange_order_id == "e0" and again[0].filled_quantity == 0.2
    fill = Fill(account_id=account.id, order_id=first.id, trade_id="bt-1", symbol="BTC/USDT",
                side="buy", quantity=0.2, price=100.0, fee=0.0, fee_currency="USDT",
                executed_at=later)
    with database.write() as uow:
        assert uow.orders.add_fills([]) == []
        assert uow.orders.add_fills([fill, dataclasses.replace(fill, trade_id="bt-2"),
                                     fill]) == [True, True, False]
        assert uow.orders.add_fills([fill]) == [False]
        uow.positions.put_many([Position(bot.id, "BTC/USDT", 0.2, 100.0, 0.0, later),
                                Position(bot.id, "ETH/USDT", 1.0, 10.0, 0.0, later)])
        uow.positions.put_many([Position(bot.id, "BTC/USDT", 0.4, 101.0, 1.5, later)])
    with database.read() as uow:
        assert len(uow.orders.fills(order_id=first.id)) == 2
        assert [(p.symbol, p.quantity, p.realised_pnl) for p in uow.positions.find(
            bot_id=bot.id)] == [("BTC/USDT", 0.4, 1.5), ("ETH/USDT", 1.0, 0.0)]


def check_positions_states_marks(database: Database) -> None:
    with database.write() as uow:
        other = uow.accounts.create_tenant("other-positions", "free").id
        version = _version(uow, 1, "positions")
        account = uow.exchange_accounts.add(_account(1, "positions"), T0)
        bot = uow.bots.add(_bot(1, version, account.id, "positions"), T0)
        other_version = _version(uow, other, "positions")
        other_account = uow.exchange_accounts.add(_account(other, "positions"), T0)
        other_bot = uow.bots.add(_bot(other, other_version, other_account.id, "positions"), T0)
        eth = Position(bot.id, "ETH/USDT", 2.0, 50.0, 0.0, T0)
        uow.positions.put(eth)
        uow.positions.put(Position(bot.id, "BTC/USDT", 0.1, 100.0, 0.0, T0))
        uow.positions.put(Position(bot.id, "BTC/USDT", 0.0, 0.0, 5.5, T0))  # replaced: flat
        uow.positions.put(Position(other_bot.id, "BTC/USDT", 1.0, 90.0, 0.0, T0))
    with database.read() as uow:
        assert uow.positions.get(bot.id, "ETH/USDT") == eth
        assert uow.positions.get(bot.id, "XRP/USDT") is None
        mine = [p for p in uow.positions.find(tenant_id=1) if p.bot_id == bot.id]
        assert other_bot.id not in {p.bot_id for p in uow.positions.find(tenant_id=1)}
        assert [(p.symbol, p.quantity, p.realised_pnl) for p in mine] == [
            ("BTC/USDT", 0.0, 5.5), ("ETH/USDT", 2.0, 0.0)]
        assert [p.symbol for p in uow.positions.find(bot_id=bot.id, open_only=True)] == [
            "ETH/USDT"]
        assert [p.bot_id for p in uow.positions.find(open_only=True)
                if p.bot_id in (bot.id, other_bot.id)] == [bot.id, other_bot.id]

    scopes = [(GLOBAL, 0), (TENANT, 1), (BOT, bot.id)]
    monitor = LossMonitor(TENANT, 1, day=20_000, day_start_equity=1_000.0, peak_equity=1_200.5,
                          last_equity=950.25, daily_breaches=2, drawdown_breaches=1,
                          warned_day=20_000)
    with database.write() as uow:
        assert uow.trading_states.states(scopes) == []
        assert uow.trading_states.kill_switches() == []
        uow.trading_states.put_state(TradingState(TENANT, 1, REDUCING, "loss", T0, "risk",
                                                  LossMonitor(TENANT, 1)))
        uow.trading_states.put_state(TradingState(TENANT, 1, HALTED, "loss", T0, "risk",
                                                  monitor))
        uow.trading_states.put_state(TradingState(GLOBAL, 0, ACTIVE, "", T0, "admin"))
        uow.trading_states.put_state(TradingState(TENANT, other, HALTED, "x", T0, "risk"))
        engaged = KillSwitch(GLOBAL, 0, engaged=True, rearmed=False, changed_at=T0,
                             changed_by="admin", reason="panic", flatten=True)
        uow.trading_states.put_kill_switch(engaged)
        uow.trading_states.put_kill_switch(KillSwitch(BOT, bot.id, True, False, T0, "a", "r"))
        uow.trading_states.put_kill_switch(KillSwitch(BOT, bot.id, False, True, T0, "a", "ok"))
    with database.read() as uow:
        states = uow.trading_states.states(scopes)
        assert [(s.scope, s.scope_id, s.state) for s in states] == [
            (GLOBAL, 0, ACTIVE), (TENANT, 1, HALTED)]
        assert states[0].monitor is None and states[1].monitor == monitor
        fresh = uow.trading_states.states([(TENANT, other)])[0]
        assert fresh.monitor is None and fresh.reason == "x"
        switches = uow.trading_states.kill_switches(scopes)
        assert switches[1] == engaged
        assert [(k.scope, k.engaged, k.rearmed) for k in switches] == [
            (BOT, False, True), (GLOBAL, True, False)]
        assert uow.trading_states.kill_switches([(TENANT, other)]) == []
        assert uow.trading_states.kill_switches([]) == []
        assert len(uow.trading_states.kill_switches()) == 2

    marks = [BotMark(bot.id, T0 + timedelta(minutes=i), 1000.0 + i, 500.0, 500.0 + i, 0.0,
                     float(i)) for i in range(3)]
    with database.write() as uow:
        assert uow.bot_marks.latest(bot.id) is None
        for mark in reversed(marks):
            uow.bot_marks.add(mark)
        replaced = BotMark(bot.id, marks[1].ts, 990.0, 500.0, 490.0, 0.0, -10.0)
        uow.bot_marks.add(replaced)
    with database.read() as uow:
        assert uow.bot_marks.series(bot.id) == [marks[0], replaced, marks[2]]
        assert uow.bot_marks.series(bot.id, since=marks[1].ts) == [replaced, marks[2]]
        assert uow.bot_marks.series(bot.id, until=marks[1].ts) == [marks[0], replaced]
        assert uow.bot_marks.latest(bot.id) == marks[2]
        assert uow.bot_marks.series(other_bot.id) == []


def check_strategy_version_lookup(database: Database) -> None:
    with database.write() as uow:
        version_id = _version(uow, 1, "lookup")
    with database.read() as uow:
        found = uow.strategies.version(version_id)
        assert found is not None and found.version_id == version_id and found.name == "lookup"
        assert uow.strategies.version(999_999) is None


ALL_CHECKS = (check_accounts_and_credentials, check_bots, check_orders_and_fills,
              check_batches, check_positions_states_marks, check_strategy_version_lookup)
