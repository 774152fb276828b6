"""Trading services against the in-memory ports: exchange accounts and their sealed keys,
bots, the order path (pending before sending, refusals with their rule, read-only, lost
answers), the kill switch, reconciliation, and a paper bot that trades as its backtest."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest

from signalfactory.adapters.exchanges.factory import PaperIds
from signalfactory.adapters.exchanges.paper import PaperExchange
from signalfactory.domain.backtest import run_backtest
from signalfactory.domain.errors import BadInputError, ConflictError, NotFoundError
from signalfactory.domain.strategies import RuleStrategy
from signalfactory.domain.trading.bots import (
    BOT,
    GLOBAL,
    HALTED,
    TENANT,
    Bot,
    ExchangeAccount,
    RiskLimits,
)
from signalfactory.domain.trading.decisions import backtest_config, strategy_signals
from signalfactory.domain.trading.exchange import (
    ExchangeOrder,
    ExchangeTrade,
    ExchangeUnavailableError,
    Market,
    OrderRequest,
)
from signalfactory.domain.trading.orders import (
    CANCELLED,
    EXPIRED,
    FILLED,
    OPEN,
    PENDING,
    REJECTED,
    OrderIntent,
)
from signalfactory.domain.trading.portfolio import round_trips
from signalfactory.domain.trading.quotes import BarQuotes
from signalfactory.domain.trading.records import (
    CREDENTIAL_ACTIVE,
    CREDENTIAL_REVOKED,
    Credentials,
    PaperBook,
)
from signalfactory.domain.trading.risk import KillSwitchStepError
from signalfactory.services.platform import Platform
from signalfactory.services.trading import accounts, bots, killswitch
from signalfactory.services.trading.execution import place_orders
from signalfactory.services.trading.reconcile import reconcile
from signalfactory.services.trading.runner import run_tick
from signalfactory.services.trading.sessions import open_session
from signalfactory.services.trading.tasks import on_bars_written
from signalfactory.testing import InMemoryDatabase, memory_platform
from signalfactory.testing.trading import TradingStore
from signalfactory.workers.runner import EmbeddedRunner
from tests.trading_setup import (
    CROSS,
    SYMBOL,
    market_bars,
    store_strategy,
    trading_platform,
    write_slice,
)

KEY, SECRET = "AKIA-test-key-0001", "very-secret-value-0001"


class SpyExchange:
    """A paper exchange that checks, on every order, that its row is stored ``pending``
    already (the order path's promise), and can lose answers or go away."""

    def __init__(self, platform: Platform, inner: PaperIds) -> None:
        self.platform = platform
        self.inner = inner
        self.created: list[OrderRequest] = []
        self.lose_answers = 0
        self.down = False

    def _check_pending(self, client_order_id: str) -> None:
        with self.platform.database.read() as uow:
            stored = [o for o in uow.orders.find(limit=10_000)
                      if o.client_order_id == client_order_id]
        assert len(stored) == 1 and stored[0].status == PENDING, stored

    @property
    def name(self) -> str:
        return "spy"

    def markets(self) -> Mapping[str, Market]:
        return self.inner.markets()

    def balances(self) -> Mapping[str, float]:
        return self.inner.balances()

    def create_order(self, request: OrderRequest) -> ExchangeOrder:
        if self.down:
            raise ExchangeUnavailableError("exchange down")
        self._check_pending(request.client_order_id)
        self.created.append(request)
        order = self.inner.create_order(request)
        if self.lose_answers:
            self.lose_answers -= 1
            raise ExchangeUnavailableError("timed out after the order was accepted")
        return order

    def fetch_order(self, symbol: str, *, client_order_id: str | None = None,
                    exchange_order_id: str | None = None) -> ExchangeOrder | None:
        return self.inner.fetch_order(symbol, client_order_id=client_order_id,
                                      exchange_order_id=exchange_order_id)

    def fetch_open_orders(self, symbol: str | None = None) -> Sequence[ExchangeOrder]:
        return self.inner.fetch_open_orders(symbol)

    def cancel_order(self, symbol: str, *, client_order_id: str | None = None,
                     exchange_order_id: str | None = None) -> ExchangeOrder | None:
        return self.inner.cancel_order(symbol, client_order_id=client_order_id,
                                       exchange_order_id=exchange_order_id)

    def fetch_my_trades(self, symbol: str,
                        since: datetime | None = None) -> Sequence[ExchangeTrade]:
        return self.inner.fetch_my_trades(symbol, since)

    def close(self) -> None:
        """Nothing to release."""


@dataclasses.dataclass
class SpyFactory:
    """One spy per account, kept across sessions (a venue that remembers orders)."""

    platform: Platform | None = None
    spies: dict[int, SpyExchange] = dataclasses.field(default_factory=dict)
    quotes: BarQuotes = dataclasses.field(default_factory=BarQuotes)

    def __call__(self, account: ExchangeAccount, credentials: Credentials | None, *,
                 paper: PaperBook | None = None) -> SpyExchange:
        assert self.platform is not None and paper is not None
        spy = self.spies.get(account.id)
        if spy is None:
            inner = PaperIds(PaperExchange(balances=paper.balances, prices=self.quotes,
                                           costs=paper.costs, quote_currency="USDT"))
            spy = self.spies[account.id] = SpyExchange(self.platform, inner)
        return spy


@pytest.fixture
def platform() -> Iterator[Platform]:
    platform = trading_platform(memory_platform())
    store_strategy(platform)
    yield platform
    platform.close()


@pytest.fixture
def spied() -> Iterator[tuple[Platform, SpyFactory]]:
    factory = SpyFactory()
    platform = trading_platform(dataclasses.replace(memory_platform(), exchanges=factory))
    factory.platform = platform
    factory.quotes.set(SYMBOL, 100.0, 1_600_000_000 * 10**9)
    store_strategy(platform)
    yield platform, factory
    platform.close()


def _trading_state(platform: Platform) -> TradingStore:
    database = platform.database
    assert isinstance(database, InMemoryDatabase)
    return copy.deepcopy(database.state.store("trading", TradingStore))


def _paper_bot(platform: Platform, **settings: Any) -> Bot:
    account = accounts.create_account(platform, 1, name="paper", kind="paper",
                                      initial_cash=10_000)
    return bots.create_bot(platform, 1, name="b1", strategy="cross", account_id=account.id,
                           symbols=[SYMBOL], allocation=settings.pop("allocation", 5_000),
                           **settings)


def _buy(bot: Bot, quantity: float, bar_ns: int = 1, price: float = 100.0,
         side: str = "buy", reason: str = "entry") -> OrderIntent:
    return OrderIntent(tenant_id=bot.tenant_id, bot_id=bot.id, account_id=bot.account_id,
                       symbol=SYMBOL, side=side, quantity=quantity,  # type: ignore[arg-type]
                       bar_ns=bar_ns, reason=reason, reference_price=price)


# -- accounts and keys --------------------------------------------------------------------------

def test_keys_are_sealed_never_shown_and_the_standby_is_promoted(
        platform: Platform, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    account = accounts.create_account(platform, 1, name="binance main", kind="ccxt",
                                      exchange="binance", api_key=KEY, secret=SECRET)
    second = accounts.add_credentials(platform, 1, account.id, api_key="AKIA-test-key-0002",
                                      secret="another-secret-0002")
    assert (second.slot, second.status, second.key_hint) == (2, "standby", "…0002")
    with pytest.raises(ConflictError):  # two slots, both in use
        accounts.add_credentials(platform, 1, account.id, api_key="k" * 10, secret="s" * 10)
    stored = _trading_state(platform).credentials
    for credential in stored.values():  # AES-GCM: version byte, nonce, ciphertext and tag
        assert SECRET.encode() not in credential.sealed and KEY.encode() not in credential.sealed
    assert platform.secret_box is not None
    opened = json.loads(platform.secret_box.open(stored[(account.id, 1)].sealed))
    assert opened == {"api_key": KEY, "secret": SECRET, "password": None}
    slots = accounts.revoke_credentials(platform, 1, account.id, 1)
    assert [(s.slot, s.status) for s in slots] == [(1, CREDENTIAL_REVOKED), (2, CREDENTIAL_ACTIVE)]
    with platform.database.read() as uow:
        active = accounts.active_credentials(platform, uow, account)
    assert active is not None and active.api_key == "AKIA-test-key-0002"
    assert "another-secret" not in repr(active) and "another-secret" not in str(active)
    # the revoked slot takes a new key, standby behind the promoted one
    third = accounts.add_credentials(platform, 1, account.id, api_key="AKIA-test-key-0003",
                                     secret="third-secret-0003")
    assert (third.slot, third.status) == (1, "standby")
    everything = "\n".join(r.getMessage() + str(r.__dict__) for r in caplog.records)
    for secret in (SECRET, "another-secret-0002", "third-secret-0003", KEY):
        assert secret not in everything
    listed = accounts.credential_slots(platform, 1, account.id)
    assert all(not hasattr(s, "sealed") for s in listed)
    with pytest.raises(NotFoundError):  # another tenant's account looks missing
        accounts.credential_slots(platform, 2, account.id)


@pytest.mark.parametrize(("kwargs", "rule"), [
    ({"name": "", "kind": "paper", "initial_cash": 10.0}, "name"),
    ({"name": "a", "kind": "futures"}, "kind"),
    ({"name": "a", "kind": "paper", "initial_cash": 0.0}, "initial_cash"),
    ({"name": "a", "kind": "ccxt", "exchange": "Bin ance"}, "exchange"),
    ({"name": "a", "kind": "ccxt", "exchange": "binance", "options": {"apiSecret": "x"}},
     "options"),
    ({"name": "a", "kind": "ccxt", "exchange": "binance", "quote_currency": "us dollar"},
     "quote_currency"),
    ({"name": "a", "kind": "ccxt", "exchange": "binance", "api_key": "k", "secret": " s "},
     "credentials"),
])
def test_bad_accounts_are_refused_and_store_nothing(platform: Platform,
                                                    kwargs: dict[str, Any], rule: str) -> None:
    before = _trading_state(platform)
    with pytest.raises(BadInputError) as caught:
        accounts.create_account(platform, 1, **kwargs)
    assert caught.value.rule == rule
    assert _trading_state(platform) == before


def test_keys_need_the_encryption_key(platform: Platform) -> None:
    bare = dataclasses.replace(platform, secret_box=None)
    with pytest.raises(BadInputError, match="SIGNALFACTORY_DELIVERY_KEY"):
        accounts.create_account(bare, 1, name="x", kind="ccxt", exchange="binance",
                                api_key=KEY, secret=SECRET)


# -- bots ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "rule"), [
    ({"allocation": 0.0}, "allocation"),
    ({"symbols": []}, "symbols"),
    ({"symbols": ["BTC USDT"]}, "symbols"),
    ({"sizing": "fraction", "size_value": 2.0}, "size"),
    ({"fill": "later"}, "fill"),
    ({"limits": RiskLimits(max_drawdown=1.5)}, "max_drawdown"),
    ({"limits": RiskLimits(max_open_positions=0)}, "max_open_positions"),
    ({"limits": RiskLimits(confirm_marks=0)}, "confirm_marks"),
])
def test_bad_bots_are_refused_and_store_nothing(platform: Platform, kwargs: dict[str, Any],
                                                rule: str) -> None:
    account = accounts.create_account(platform, 1, name="p", kind="paper", initial_cash=100)
    before = _trading_state(platform)
    settings: dict[str, Any] = {"symbols": [SYMBOL], "allocation": 100.0, **kwargs}
    with pytest.raises(BadInputError) as caught:
        bots.create_bot(platform, 1, name="b", strategy="cross", account_id=account.id,
                        **settings)
    assert caught.value.rule == rule
    assert _trading_state(platform) == before


def test_bot_lifecycle(platform: Platform) -> None:
    bot = _paper_bot(platform, limits=RiskLimits(daily_loss_limit=50.0))
    assert (bot.status, bot.state, bot.timeframe) == ("stopped", "active", "1d")
    with pytest.raises(NotFoundError):
        bots.create_bot(platform, 1, name="b2", strategy="nope", account_id=bot.account_id,
                        symbols=[SYMBOL], allocation=10.0)
    with pytest.raises(NotFoundError):  # another tenant's account
        bots.create_bot(platform, 2, name="b2", strategy="cross", account_id=bot.account_id,
                        symbols=[SYMBOL], allocation=10.0)
    started = bots.start_bot(platform, 1, bot.id)
    assert started.status == "running"
    with pytest.raises(ConflictError):
        bots.start_bot(platform, 1, bot.id)
    status = bots.bot_status(platform, 1, bot.id)
    assert status.effective.state == "active" and status.working_orders == 0
    assert bots.stop_bot(platform, 1, bot.id).status == "stopped"
    with pytest.raises(NotFoundError):
        bots.bot_status(platform, 2, bot.id)
    assert [b.id for b in bots.list_bots(platform, 1, status="stopped")] == [bot.id]


# -- the order path ----------------------------------------------------------------------------

def test_pending_is_stored_before_the_exchange_is_called(
        spied: tuple[Platform, SpyFactory]) -> None:
    platform, factory = spied
    bot = _paper_bot(platform)
    session = open_session(platform, bot)
    [result] = place_orders(session, [_buy(bot, 10)])
    assert result.outcome == FILLED and result.order is not None
    assert result.order.filled_quantity == 10 and result.order.reserved == 0.0
    assert len(result.fills) == 1 and len(factory.spies[bot.account_id].created) == 1
    with platform.database.read() as uow:
        [position] = uow.positions.find(bot_id=bot.id)
    assert position.quantity == 10 and position.average_price == 100.0
    # the same decision again (a restart) finds its row and sends nothing
    [again] = place_orders(session, [_buy(bot, 10)])
    assert again.outcome == "duplicate" and len(factory.spies[bot.account_id].created) == 1


def test_refusals_name_their_rule_and_send_nothing(spied: tuple[Platform, SpyFactory]) -> None:
    platform, factory = spied
    bot = _paper_bot(platform, limits=RiskLimits(max_order_notional=1_000.0,
                                                 max_orders_per_minute=3))
    session = open_session(platform, bot)
    results = place_orders(session, [
        _buy(bot, 11, bar_ns=1),          # 1100 > 1000 per order
        _buy(bot, 0, bar_ns=2),           # not a quantity
        _buy(bot, 9, bar_ns=3),           # fine
        _buy(bot, 9, bar_ns=4),           # fine
        _buy(bot, 9, bar_ns=5),           # fine: the third order this minute
        _buy(bot, 9, bar_ns=6),           # the fourth: over the rate
    ])
    assert [(r.outcome, r.rule) for r in results] == [
        ("refused", "max-order-notional"), ("refused", "order"), (FILLED, None),
        (FILLED, None), (FILLED, None), ("refused", "max-order-rate")]
    assert len(factory.spies[bot.account_id].created) == 3
    refused = results[0].order
    assert refused is not None and refused.status == REJECTED
    assert refused.error is not None and refused.error.startswith("[max-order-notional]")


def test_cash_is_reserved_so_two_bots_never_spend_the_same_money(
        spied: tuple[Platform, SpyFactory]) -> None:
    platform, factory = spied
    account = accounts.create_account(platform, 1, name="shared", kind="paper",
                                      initial_cash=1_000)
    first, second = (bots.create_bot(platform, 1, name=f"b{i}", strategy="cross",
                                     account_id=account.id, symbols=[SYMBOL], allocation=800)
                     for i in (1, 2))
    spy_quotes = factory.quotes
    spy_quotes.set(SYMBOL, 100.0, 1)
    # the first bot's order is in flight (stays open: the exchange lost its answer)
    factory_session = open_session(platform, first)
    factory.spies[account.id].lose_answers = 1
    [lost] = place_orders(factory_session, [_buy(first, 7)])
    assert lost.outcome == "unknown" and lost.order is not None and lost.order.reserved == 700
    # the account has 1000; 700 is reserved for the first bot: the second gets 300 at most
    [refused] = place_orders(open_session(platform, second), [_buy(second, 4)])
    assert (refused.outcome, refused.rule) == ("refused", "account-cash")
    [fits] = place_orders(open_session(platform, second), [_buy(second, 2, bar_ns=2)])
    assert fits.outcome == FILLED
    # a bot never spends beyond its own allocation either
    [over] = place_orders(open_session(platform, first), [_buy(first, 9, bar_ns=3)])
    assert (over.outcome, over.rule) == ("refused", "bot-budget")


def test_no_answer_leaves_the_order_pending_and_read_only_sends_nothing(
        spied: tuple[Platform, SpyFactory]) -> None:
    platform, factory = spied
    bot = _paper_bot(platform)
    session = open_session(platform, bot)
    spy = factory.spies[bot.account_id]
    spy.down = True
    [unknown] = place_orders(session, [_buy(bot, 1)])
    assert unknown.outcome == "unknown" and unknown.order is not None
    with platform.database.read() as uow:
        stored = uow.orders.get(None, unknown.order.id)
    assert stored is not None and stored.status == PENDING
    spy.down = False
    platform.trading.enter_read_only("database unreachable (test)")
    platform.trading.last_probe = float("inf")  # no probe: stay read-only
    [refused] = place_orders(session, [_buy(bot, 1, bar_ns=9)])
    assert (refused.outcome, refused.rule) == ("refused", "read-only")
    assert spy.created == []
    with platform.database.read() as uow:
        assert len(uow.orders.find(bot_id=bot.id)) == 1  # nothing stored either


# -- reconciliation ---------------------------------------------------------------------------

def test_reconciliation_finds_lost_answers_and_never_sends_twice(
        spied: tuple[Platform, SpyFactory]) -> None:
    platform, factory = spied
    account = accounts.create_account(platform, 1, name="p", kind="paper", initial_cash=10_000)
    # a ccxt-like account for the resend rules: a paper account's pending orders expire
    bot = bots.create_bot(platform, 1, name="b", strategy="cross", account_id=account.id,
                          symbols=[SYMBOL], allocation=5_000)
    session = open_session(platform, bot)
    session.account = dataclasses.replace(session.account, kind="ccxt")
    spy = factory.spies[account.id]
    spy.lose_answers = 1
    [lost] = place_orders(session, [_buy(bot, 3, bar_ns=1)])   # accepted, answer lost
    spy.down = True
    [never] = place_orders(session, [_buy(bot, 2, bar_ns=2)])  # never reached it
    spy.down = False
    assert lost.outcome == never.outcome == "unknown"
    report = reconcile(session)
    assert (report.checked, report.resent, report.expired) == (2, 1, 0)
    # the accepted one was found (not sent again), the other sent once, with its own id
    assert [r.client_order_id for r in spy.created] == [
        lost.intent.client_order_id, never.intent.client_order_id]
    with platform.database.read() as uow:
        orders = {o.client_order_id: o for o in uow.orders.find(bot_id=bot.id)}
        [position] = uow.positions.find(bot_id=bot.id)
    assert {o.status for o in orders.values()} == {FILLED} and position.quantity == 5
    assert len(spy.inner.inner.trades()) == 2
    # a stale pending order (older than the resend window) expires instead
    spy.down = True
    [stale] = place_orders(session, [_buy(bot, 1, bar_ns=3)])
    spy.down = False
    platform.clock.advance(seconds=platform.settings.trading_resend_seconds + 1)  # type: ignore[attr-defined]
    report = reconcile(session)
    assert (report.resent, report.expired) == (0, 1)
    with platform.database.read() as uow:
        assert stale.order is not None
        expired = uow.orders.get(None, stale.order.id)
    assert expired is not None and expired.status == EXPIRED
    assert len(spy.created) == 2


# -- kill switch -------------------------------------------------------------------------------

def test_kill_switch_cancels_blocks_flattens_and_takes_two_steps_to_release(
        spied: tuple[Platform, SpyFactory]) -> None:
    platform, _factory = spied
    bot = _paper_bot(platform)
    session = open_session(platform, bot)
    [bought] = place_orders(session, [_buy(bot, 10)])
    resting = dataclasses.replace(_buy(bot, 5, bar_ns=2), type="limit", limit_price=50.0)
    [working] = place_orders(session, [resting])
    assert bought.outcome == FILLED and working.outcome == OPEN
    report = killswitch.engage_kill_switch(platform, TENANT, 1, actor="admin:1",
                                           reason="runaway bot", flatten=True)
    assert report.changed and report.switch.engaged and report.sweep.cancelled == 1
    assert report.sweep.flatten_orders == 1
    with platform.database.read() as uow:
        assert working.order is not None
        cancelled = uow.orders.get(None, working.order.id)
        positions = uow.positions.find(bot_id=bot.id, open_only=True)
        sweep_jobs = [j for j in uow.jobs.find(tenant_id=None) if j.kind == "trading.kill_sweep"]
    assert cancelled is not None and cancelled.status == CANCELLED
    assert positions == [] and len(sweep_jobs) == 1
    # new orders are refused at once, with the kill switch as the rule
    [blocked] = place_orders(open_session(platform, bot), [_buy(bot, 1, bar_ns=3)])
    assert (blocked.outcome, blocked.rule) == ("refused", "kill-switch")
    assert bots.bot_status(platform, 1, bot.id).effective.state == HALTED
    with pytest.raises(KillSwitchStepError):  # resume before re-arm
        killswitch.resume_trading(platform, TENANT, 1, actor="admin:1")
    killswitch.rearm_kill_switch(platform, TENANT, 1, actor="admin:1")
    [still] = place_orders(open_session(platform, bot), [_buy(bot, 1, bar_ns=4)])
    assert still.rule == "kill-switch"  # re-armed is not resumed
    assert killswitch.resume_trading(platform, TENANT, 1, actor="admin:1") == "kill-switch"
    [again] = place_orders(open_session(platform, bot), [_buy(bot, 1, bar_ns=5)])
    assert again.outcome == FILLED
    with pytest.raises(NotFoundError):  # another tenant's scope
        killswitch.engage_kill_switch(platform, TENANT, 1, actor="a", reason="x",
                                      tenant_id=2)
    with pytest.raises(BadInputError):
        killswitch.engage_kill_switch(platform, GLOBAL, 3, actor="a", reason="x")
    switches, _states = killswitch.kill_switches(platform, tenant_id=1)
    assert [(s.scope, s.engaged) for s in switches] == [(TENANT, False)]


# -- the runner --------------------------------------------------------------------------------

def test_a_paper_bot_trades_as_its_backtest(platform: Platform) -> None:
    """Through ticks queued by bar writes and run as jobs: the bot's equity marks and trades
    are the backtest's over the bars it traded (fees and slippage included)."""
    platform.bar_subscribers.append(on_bars_written)
    series = market_bars(180, seed=4)
    write_slice(platform, [series], 0, 100)
    bot = _paper_bot(platform, allocation=10_000, fee_pct=0.001, slippage_bps=5.0)
    bots.start_bot(platform, 1, bot.id)
    runner = EmbeddedRunner(platform)
    runner.run_until_idle()
    for a in range(100, 180, 20):
        write_slice(platform, [series], a, a + 20)
        assert all(o.status == "succeeded" for o in runner.run_until_idle())
    strategy = RuleStrategy.from_text("cross", CROSS)
    signals = strategy_signals(strategy.evaluate(series), mirror=False)
    result = run_backtest(series.open, series.high, series.low, series.close, signals,
                          backtest_config(bots.get_bot(platform, 1, bot.id)), start=100)
    with platform.database.read() as uow:
        marks = uow.bot_marks.series(bot.id)
        fills = uow.orders.fills(bot_id=bot.id)
    assert len(result.trades) >= 3
    np.testing.assert_allclose([m.equity for m in marks], result.equity, rtol=1e-11)
    trips = round_trips(fills, marks={SYMBOL: float(series.close[-1])})
    assert [(t.entry_ns, t.size) for t in trips] == [
        (int(series.ts[i]), pytest.approx(s, rel=1e-12))
        for i, s in zip(result.trades.entry_idx, result.trades.size, strict=True)]


def test_a_bot_halts_on_its_daily_loss_limit(spied: tuple[Platform, SpyFactory]) -> None:
    platform, _factory = spied
    series = market_bars(60, seed=9)
    crash = dataclasses.replace(series, close=series.close.copy(), low=series.low.copy())
    write_slice(platform, [series], 0, 40)
    store_strategy(platform, "always", "entry: close > 0\nexit: close < 0")
    account = accounts.create_account(platform, 1, name="p2", kind="paper", initial_cash=10_000)
    bot = bots.create_bot(platform, 1, name="loser", strategy="always", account_id=account.id,
                          symbols=[SYMBOL], allocation=10_000,
                          limits=RiskLimits(daily_loss_limit=100.0, confirm_marks=2))
    bots.start_bot(platform, 1, bot.id)
    run_tick(platform, bot.id)  # notes the newest bar
    # two bars of -5 % each: the loss is confirmed on the second mark
    for k, t in enumerate(range(40, 44)):
        crash.close[t] = series.close[39] * (1 - 0.05 * (k + 1))
        crash.low[t] = min(crash.low[t], crash.close[t])
        write_slice(platform, [crash], t, t + 1)
        platform.clock.advance(days=1)  # type: ignore[attr-defined]
        run_tick(platform, bot.id)
        if k == 0:
            assert bots.bot_status(platform, 1, bot.id).effective.state == "active"
    status = bots.bot_status(platform, 1, bot.id)
    assert status.effective.state == HALTED and status.effective.scope == BOT
    with platform.database.read() as uow:
        state = uow.trading_states.states([(BOT, bot.id)])[0]
    assert state.reason.startswith("today's loss")
    assert killswitch.resume_trading(platform, BOT, bot.id, actor="admin:1") == "state"
    assert bots.bot_status(platform, 1, bot.id).effective.state == "active"


def test_ticks_hold_a_lease_one_runner_per_bot(platform: Platform) -> None:
    bot = _paper_bot(platform)
    bots.start_bot(platform, 1, bot.id)
    now = platform.clock.now()
    with platform.database.write() as uow:
        assert uow.bots.acquire_lease(bot.id, "another-worker", now + timedelta(seconds=30),
                                      now)
    assert run_tick(platform, bot.id).outcome == "busy"
    platform.clock.advance(seconds=31)  # type: ignore[attr-defined]
    report = run_tick(platform, bot.id)
    assert report.outcome == "idle" and report.reconciled  # taken over: reconciled first


def test_an_exit_never_asks_for_more_than_is_held() -> None:
    """A position a base-currency fee left just under a grid point: the order is floored,
    not rounded up by the grid's float tolerance (the exchange would refuse it)."""
    from signalfactory.services.trading.execution import on_grid

    market = Market(symbol="BTC/USDT", base="BTC", quote="USDT", amount_step=0.00001,
                    price_step=0.01, min_amount=0.00001, min_notional=5.0)
    intent = OrderIntent(tenant_id=1, bot_id=1, account_id=1, symbol="BTC/USDT",
                         side="sell", quantity=152.9649999, reference_price=100.0)
    floored = on_grid(intent, market)
    assert floored.quantity == pytest.approx(152.96499) and floored.quantity <= 152.9649999
    assert floored.client_order_id == intent.client_order_id
    assert on_grid(dataclasses.replace(intent, quantity=0.3), market).quantity == 0.3


def test_a_paper_bot_over_several_symbols_trades_as_the_portfolio_step(
        platform: Platform) -> None:
    """The runner sends a bar's exits and entries in two batches; the entries are sized in
    the portfolio order on predicted costs. For a paper bot that is the trading core's own
    step (`run_universe_bars`, equal to `run_portfolio`) over the bars it traded."""
    from signalfactory.domain.backtest.signals import Signals
    from signalfactory.domain.bars import BarSeries, BarUniverse
    from signalfactory.domain.trading.capital import BotBook, CashLedger
    from signalfactory.domain.trading.costs import CostModel
    from signalfactory.domain.trading.decisions import BotRef
    from signalfactory.domain.trading.paper_session import TradingSession, run_universe_bars
    from tests.unit.test_trading_paper_vs_backtest import OrderPath

    platform.bar_subscribers.append(on_bars_written)
    names = ("AAA/USDT", "BBB/USDT", "CCC/USDT")
    full = [dataclasses.replace(market_bars(170, seed=s), symbol=n)
            for s, n in zip((21, 22, 23), names, strict=True)]
    write_slice(platform, full, 0, 100)
    fast = "entry: crosses_above(sma(close, 3), sma(close, 8))\n" \
           "exit: crosses_below(sma(close, 3), sma(close, 8))"
    store_strategy(platform, "fast3", fast)
    account = accounts.create_account(platform, 1, name="pu", kind="paper", initial_cash=9e9)
    bot = bots.create_bot(platform, 1, name="universe", strategy="fast3",
                          account_id=account.id, symbols=list(names), allocation=10_000,
                          size_value=0.45, whole_units=False, fee_pct=0.001,
                          slippage_bps=5.0)
    bots.start_bot(platform, 1, bot.id)
    runner = EmbeddedRunner(platform)
    runner.run_until_idle()
    for a in range(100, 170, 35):
        write_slice(platform, full, a, a + 35)
        assert all(o.status == "succeeded" for o in runner.run_until_idle())
    with platform.database.read() as uow:
        marks = uow.bot_marks.series(bot.id)
        traded = uow.orders.find(bot_id=bot.id, limit=1000)
    # the reference: the trading core's session over the same window, signals and scores
    # computed on the whole history (what the runner's window evaluation gives)
    strategy = RuleStrategy.from_text("fast3", fast)
    evaluation = strategy.evaluate(BarUniverse.from_series(full))
    rows = np.concatenate([np.arange(k * 170 + 100, k * 170 + 170) for k in range(3)])
    window = BarUniverse.from_series([BarSeries(s.symbol, s.ts[100:], s.open[100:],
                                                s.high[100:], s.low[100:], s.close[100:],
                                                s.volume[100:]) for s in full])
    sig = strategy_signals(evaluation, mirror=False)
    signals = Signals(sig.long_entry[rows], sig.long_exit[rows], sig.short_entry[rows],
                      sig.short_exit[rows])
    stored = bots.get_bot(platform, 1, bot.id)
    config = backtest_config(stored)
    session = TradingSession(BotRef.of(stored), config)
    costs = CostModel.of(config)
    exchange = PaperExchange(balances={"USDT": stored.allocation}, prices=session.quotes,
                             costs=costs)
    ledger = CashLedger(bots=[BotBook(stored.id, 1, stored.account_id, stored.allocation,
                                      stored.allocation)],
                        account_cash={stored.account_id: stored.allocation})
    path = OrderPath(stored, exchange, ledger, costs, session)
    curve = run_universe_bars(session, window, signals, execute=path,
                              score=evaluation.score[rows])
    assert len(path.fills) >= 6 and len(traded) == len(path.fills)
    np.testing.assert_allclose([m.equity for m in marks], curve.equity, rtol=1e-11)
