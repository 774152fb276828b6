"""Capital: the backtest's sizing on the exchange's grid, and reservations that keep two bots
from spending the same cash."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalfactory.domain.backtest import BacktestConfig, Signals, run_backtest
from signalfactory.domain.backtest.config import SizingName
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.trading.capital import (
    BotBook,
    CapitalRefusedError,
    CashLedger,
    Reservation,
    bot_cash,
    bot_equity,
    position_value,
    reservation_amount,
    size_entry,
)
from signalfactory.domain.trading.costs import CostModel
from signalfactory.domain.trading.exchange import Market
from signalfactory.domain.trading.orders import Fill, Position, Side

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def pos(symbol: str, qty: float, avg: float, realised: float = 0.0) -> Position:
    return Position(bot_id=1, symbol=symbol, quantity=qty, average_price=avg,
                    realised_pnl=realised, updated_at=T0)


# -- sizing ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("sizing", "value", "whole"), [
    ("fraction", 1.0, True), ("fraction", 0.3, False), ("cash", 2_500.0, True),
    ("units", 7.0, True), ("units", 1e6, False), ("risk", 0.01, True)])
def test_sizing_is_the_backtests_first_entry(sizing: SizingName, value: float,
                                             whole: bool) -> None:
    config = BacktestConfig(initial_cash=10_000, fee_pct=0.002, fee_fixed=1.5, slippage_bps=7,
                            sizing=sizing, size_value=value, whole_units=whole)
    n = 5
    close = np.array([101.3, 102.0, 99.0, 98.0, 97.0])
    atr = np.full(n, 2.5)
    result = run_backtest(close, close, close, close,
                          Signals.build(n, long_entry=np.array([1, 0, 0, 0, 0], bool)), config,
                          atr=atr)
    units = size_entry(equity=10_000, cash=10_000, price=101.3, side="buy", config=config,
                       atr=2.5)
    assert units == result.trades.size[0]
    assert units * result.trades.entry_price[0] * (1 + 0.002) + 1.5 <= 10_000 + 1e-9


def test_sizing_on_the_market_grid() -> None:
    config = BacktestConfig(fee_pct=0.001, whole_units=False)
    market = Market("BTC/USDT", "BTC", "USDT", amount_step=0.001, price_step=0.01,
                    min_amount=0.001, min_notional=10.0, max_amount=0.05)
    units = size_entry(equity=1000, cash=1000, price=30_000.0, side="buy", config=config,
                       market=market)
    assert units == 0.033  # 1000 / (30000 * 1.001) = 0.0333 -> down to the step
    capped = size_entry(equity=1e6, cash=1e6, price=30_000.0, side="buy", config=config,
                        market=market)
    assert capped == 0.05
    tiny = size_entry(equity=9, cash=9, price=30_000.0, side="buy", config=config,
                      market=market)
    assert tiny == 0.0  # below the minimum notional: no order
    whole = size_entry(equity=1000, cash=1000, price=30_000.0, side="buy",
                       config=BacktestConfig(), market=market)
    assert whole == 0.0  # whole units of BTC at 30k with 1000: nothing
    with pytest.raises(BadInputError):
        size_entry(equity=1, cash=1, price=0.0, side="buy", config=config)
    # a short entry sizes at the price slipped the other way
    short = size_entry(equity=1000, cash=1000, price=100.0, side="sell",
                       config=BacktestConfig(slippage_bps=100, whole_units=False))
    assert short == pytest.approx(1000 / 99.0)


def test_cost_model_is_the_engines_arithmetic() -> None:
    costs = CostModel(fee_pct=0.001, fee_fixed=2.0, slippage_bps=5)
    assert costs.fill_price(100.0, "buy") == 100.0 * (1.0 + 5 / 10_000.0)
    assert costs.fill_price(100.0, "sell") == 100.0 * (1.0 - 5 / 10_000.0)
    assert costs.fee(3.0, 100.0) == 3.0 * 100.0 * 0.001 + 2.0
    assert reservation_amount(3.0, 100.0, costs) == 300.0 + 0.3 + 2.0
    with pytest.raises(BadInputError):
        CostModel(fee_pct=0.2)
    with pytest.raises(BadInputError):
        CostModel(slippage_bps=-1)
    with pytest.raises(BadInputError):
        CostModel(fee_fixed=math.inf)


def test_bot_cash_and_equity_value_shorts_as_the_engine() -> None:
    held = [pos("A", 10, 50.0, realised=-5.0), pos("B", -4, 25.0, realised=20.0)]
    # cash: 1000 - 5 + 20 - 500 - 100 (collateral of the short)
    assert bot_cash(1000.0, held) == pytest.approx(415.0)
    assert position_value(held[1], 20.0) == pytest.approx(4 * 25 + (-4) * (20 - 25))
    equity = bot_equity(1000.0, held, {"A": 55.0, "B": 20.0})
    assert equity == pytest.approx(415 + 550 + 120)
    assert bot_equity(1000.0, held, {}) == pytest.approx(415 + 500 + 100)


# -- the ledger --------------------------------------------------------------------------------

def two_bots(account: float = 1000.0, tenant_limit: float | None = None) -> CashLedger:
    bots = [BotBook(1, tenant_id=1, account_id=9, allocation=800, cash=800),
            BotBook(2, tenant_id=1, account_id=9, allocation=800, cash=800)]
    return CashLedger(bots=bots, account_cash={9: account},
                      tenant_limits={1: tenant_limit} if tenant_limit is not None else None)


def test_two_bots_cannot_reserve_the_same_cash() -> None:
    ledger = two_bots()
    ledger.reserve("a1", 1, 700.0)
    assert ledger.available(2) == pytest.approx(300.0)
    with pytest.raises(CapitalRefusedError) as err:
        ledger.reserve("b1", 2, 700.0)
    assert err.value.rule == "account-cash"
    ledger.reserve("b1", 2, 300.0)
    with pytest.raises(CapitalRefusedError):
        ledger.reserve("b2", 2, 0.01)
    # bot 1 is cancelled: its cash is free for bot 2
    assert ledger.release("a1") == 700.0
    ledger.reserve("b2", 2, 450.0)
    with pytest.raises(CapitalRefusedError) as err:
        ledger.reserve("b3", 2, 100.0)  # 300 + 450 + 100 > its 800
    assert err.value.rule == "bot-budget"


def test_reserve_is_idempotent_per_order_id() -> None:
    ledger = two_bots()
    first = ledger.reserve("a1", 1, 600.0)
    assert ledger.reserve("a1", 1, 600.0) is first
    assert ledger.reserved(account_id=9) == 600.0
    with pytest.raises(BadInputError):
        ledger.reserve("a1", 2, 600.0)
    with pytest.raises(BadInputError):
        ledger.reserve("a2", 1, -1.0)


def test_fills_commit_and_closes_return_cash() -> None:
    ledger = two_bots()
    ledger.reserve("a1", 1, 505.0)
    ledger.settle_open("a1", 1, cash_out=300.0, exposure=299.0, done=False)  # partial fill
    assert ledger.reservation("a1") == Reservation("a1", 1, 205.0)
    assert ledger.account_cash(9) == 700.0 and ledger.book(1).cash == 500.0
    ledger.settle_open("a1", 1, cash_out=201.0, exposure=200.0, done=True)
    assert ledger.reservation("a1") is None and ledger.reserved() == 0.0
    assert ledger.book(1).exposure == 499.0 and ledger.account_cash(9) == 499.0
    # bot 2 sees only what is left on the account
    assert ledger.available(2) == pytest.approx(499.0)
    ledger.settle_close(None, 1, cash_in=550.0, exposure=499.0)
    assert ledger.book(1).cash == pytest.approx(849.0) and ledger.book(1).exposure == 0.0
    assert ledger.account_cash(9) == pytest.approx(1049.0)


def test_tenant_exposure_limit_spans_its_bots() -> None:
    ledger = two_bots(account=10_000, tenant_limit=1000.0)
    ledger.reserve("a1", 1, 600.0)
    ledger.settle_open("a1", 1, cash_out=600.0, exposure=600.0, done=True)
    with pytest.raises(CapitalRefusedError) as err:
        ledger.reserve("b1", 2, 500.0)
    assert err.value.rule == "tenant-exposure"
    assert ledger.available(2) == pytest.approx(400.0)
    ledger.reserve("b1", 2, 400.0)


def test_ledger_rebuilt_from_stored_state() -> None:
    book = BotBook.of(bot_id=1, tenant_id=1, account_id=9, allocation=1000.0,
                      positions=[pos("A", 2, 100.0, realised=-3.0)])
    assert (book.cash, book.exposure) == (797.0, 200.0)
    ledger = CashLedger(bots=[book], account_cash={9: 797.0},
                        reservations=[Reservation("x", 1, 500.0)])
    assert ledger.available(1) == pytest.approx(297.0)
    with pytest.raises(BadInputError):
        CashLedger(bots=[book], account_cash={})
    with pytest.raises(BadInputError):
        CashLedger(bots=[book], account_cash={9: 1.0}, reservations=[Reservation("y", 5, 1.0)])
    with pytest.raises(BadInputError):
        ledger.book(77)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["reserve", "fill", "cancel", "close"]),
                          st.integers(1, 3), st.floats(1.0, 900.0)), max_size=40))
def test_no_interleaving_spends_more_than_the_account_or_a_budget(
        steps: list[tuple[str, int, float]]) -> None:
    """Three bots share an account of 1500 with allocations of 800 each: whatever the order
    of reservations, fills, cancels and closes, reserved plus spent never passes the account's
    cash or a bot's budget."""
    bots = [BotBook(i, tenant_id=1, account_id=9, allocation=800, cash=800) for i in (1, 2, 3)]
    ledger = CashLedger(bots=bots, account_cash={9: 1500.0})
    spent = {1: 0.0, 2: 0.0, 3: 0.0}
    open_orders: dict[int, list[str]] = {1: [], 2: [], 3: []}
    for k, (op, bot, amount) in enumerate(steps):
        if op == "reserve":
            try:
                ledger.reserve(f"o{k}", bot, amount)
                open_orders[bot].append(f"o{k}")
            except CapitalRefusedError:
                pass
        elif op in ("fill", "cancel") and open_orders[bot]:
            cid = open_orders[bot].pop(0)
            r = ledger.reservation(cid)
            assert r is not None
            if op == "fill":
                ledger.settle_open(cid, bot, cash_out=r.amount, exposure=r.amount, done=True)
                spent[bot] += r.amount
            else:
                ledger.release(cid)
        elif op == "close" and spent[bot] > 0:
            ledger.settle_close(None, bot, cash_in=spent[bot], exposure=spent[bot])
            spent[bot] = 0.0
        total = sum(spent.values()) + ledger.reserved(account_id=9)
        assert total <= 1500.0 + 1e-6
        for b in (1, 2, 3):
            assert spent[b] + ledger.reserved(bot_id=b) <= 800.0 + 1e-6


def fill(side: Side, qty: float, price: float, fee: float = 0.0) -> Fill:
    return Fill(account_id=9, order_id=1, trade_id="t", symbol="A", side=side,
                quantity=qty, price=price, fee=fee, fee_currency="USDT", executed_at=T0)


def test_settle_splits_a_fill_into_its_closing_and_opening_parts() -> None:
    ledger = CashLedger(bots=[BotBook(1, 1, 9, allocation=1000, cash=1000)],
                        account_cash={9: 1000.0})
    ledger.reserve("o1", 1, 201.0)
    ledger.settle("o1", 1, None, fill("buy", 2, 100.0, fee=1.0), done=True)
    assert ledger.book(1).cash == 799.0 and ledger.book(1).exposure == 200.0
    assert ledger.reserved() == 0.0
    long2 = pos("A", 2, 100.0, realised=-1.0)
    # sell 3 at 110: 2 close (cost 200 + gain 20 back), 1 opens a short (110 set aside);
    # the fee of 3 is shared 2:1
    ledger.settle("o2", 1, long2, fill("sell", 3, 110.0, fee=3.0), done=True)
    assert ledger.book(1).cash == pytest.approx(799 + 220 - 2 - 110 - 1)
    assert ledger.book(1).exposure == pytest.approx(110.0)
    # the ledger's cash is what a ledger rebuilt from the positions holds
    after = [pos("A", -1, 110.0, realised=-1.0 + 20 - 3)]
    assert ledger.book(1).cash == pytest.approx(bot_cash(1000.0, after))
