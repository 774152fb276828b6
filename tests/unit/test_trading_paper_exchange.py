"""PaperExchange: the port's behaviour, the backtest's costs, idempotency, refusals, rebuild."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from signalfactory.adapters.exchanges.paper import PaperExchange
from signalfactory.domain.timestamps import datetime_to_ns
from signalfactory.domain.trading.costs import CostModel
from signalfactory.domain.trading.exchange import (
    ExchangeRejectedError,
    ExchangeUnavailableError,
    Market,
    OrderRequest,
)
from signalfactory.domain.trading.orders import OrderType, Side
from signalfactory.domain.trading.quotes import BarQuotes
from signalfactory.services.trading.ports import Exchange

T0 = datetime(2024, 2, 1, tzinfo=UTC)
NS0 = datetime_to_ns(T0)
BTC = Market("BTC/USDT", "BTC", "USDT", amount_step=0.001, price_step=0.01, min_amount=0.001,
             min_notional=5.0)
COSTS = CostModel(fee_pct=0.001, fee_fixed=0.5, slippage_bps=10)


def exchange(usdt: float = 10_000.0, *,
             allow_short: bool = False) -> tuple[PaperExchange, BarQuotes]:
    quotes = BarQuotes()
    quotes.set("BTC/USDT", 20_000.0, NS0)
    ex = PaperExchange(balances={"USDT": usdt}, prices=quotes, costs=COSTS,
                       markets={"BTC/USDT": BTC}, allow_short=allow_short)
    return ex, quotes


def order(cid: str, side: Side = "buy", amount: float = 0.1, kind: OrderType = "market",
          price: float | None = None, symbol: str = "BTC/USDT") -> OrderRequest:
    return OrderRequest(symbol=symbol, side=side, type=kind, amount=amount, client_order_id=cid,
                        price=price)


def test_market_order_fills_with_the_backtests_costs() -> None:
    ex, _ = exchange()
    port: Exchange = ex  # it has the port's shape
    o = port.create_order(order("c1", amount=0.1))
    px = 20_000.0 * (1.0 + 10 / 10_000.0)
    fee = 0.1 * px * 0.001 + 0.5
    assert (o.status, o.filled, o.average_price, o.fee) == ("filled", 0.1, px, fee)
    assert o.updated_at == T0 and o.price is None
    (trade,) = port.fetch_my_trades("BTC/USDT")
    assert (trade.amount, trade.price, trade.fee, trade.fee_currency, trade.client_order_id) == \
        (0.1, px, fee, "USDT", "c1")
    balances = port.balances()
    assert balances["BTC"] == 0.1
    assert balances["USDT"] == pytest.approx(10_000 - 0.1 * px - fee)
    s = port.create_order(order("c2", side="sell", amount=0.1))
    assert s.average_price == 20_000.0 * (1.0 - 10 / 10_000.0)
    assert port.balances()["BTC"] == pytest.approx(0.0)
    assert port.name == "paper" and "BTC/USDT" in port.markets()
    port.close()


def test_create_order_is_idempotent_by_client_order_id() -> None:
    ex, quotes = exchange()
    first = ex.create_order(order("same", amount=0.2))
    quotes.set("BTC/USDT", 25_000.0, NS0 + 60 * 10**9)
    again = ex.create_order(order("same", amount=0.2))
    assert again == first
    assert len(ex.fetch_my_trades("BTC/USDT")) == 1 and len(ex.orders()) == 1
    with pytest.raises(ExchangeRejectedError, match="another order"):
        ex.create_order(order("same", amount=0.3))
    found = ex.fetch_order("BTC/USDT", client_order_id="same")
    assert found == first
    assert ex.fetch_order("BTC/USDT", exchange_order_id=first.exchange_order_id) == first
    assert ex.fetch_order("ETH/USDT", client_order_id="same") is None
    assert ex.fetch_order("BTC/USDT", client_order_id="never") is None


@pytest.mark.parametrize(("request_", "match"), [
    (order("a", amount=0.0005), "multiple"),  # below the lot size
    (order("b", amount=0.0015), "multiple"),  # off the lot size
    (order("e", amount=1.0), "insufficient USDT"),
    (order("f", side="sell", amount=0.1), "insufficient BTC"),  # spot: no short by default
    (order("g", kind="limit", price=19_999.999), "multiple"),  # off the tick size
    (order("h", kind="limit", price=None), "positive price"),
    (order("i", kind="market", price=20_000.0), "takes no price"),
    (order("j", amount=-1.0), "positive"),
])
def test_refusals_are_rejections_never_retried(request_: OrderRequest, match: str) -> None:
    ex, _ = exchange()
    with pytest.raises(ExchangeRejectedError, match=match):
        ex.create_order(request_)
    assert ex.orders() == [] and ex.trades() == []
    assert ex.balances() == {"USDT": 10_000.0}


def test_minimum_notional_and_amount_limits() -> None:
    quotes = BarQuotes()
    quotes.set("BTC/USDT", 20_000.0, NS0)
    strict = Market("BTC/USDT", "BTC", "USDT", 0.001, 0.01, min_amount=0.002, min_notional=50.0,
                    max_amount=1.0)
    ex = PaperExchange(balances={"USDT": 100_000.0}, prices=quotes,
                       markets={"BTC/USDT": strict})
    with pytest.raises(ExchangeRejectedError, match="limits"):
        ex.create_order(order("m", amount=0.001))
    with pytest.raises(ExchangeRejectedError, match="limits"):
        ex.create_order(order("m", amount=1.001))
    with pytest.raises(ExchangeRejectedError, match="notional"):
        ex.create_order(order("n", amount=0.002))  # 40 USDT
    assert ex.create_order(order("n2", amount=0.003)).status == "filled"


def test_no_price_yet_is_temporary() -> None:
    ex = PaperExchange(balances={"USDT": 1.0}, prices=BarQuotes())
    with pytest.raises(ExchangeUnavailableError):
        ex.create_order(order("x", symbol="ETH/USDT", amount=1.0))


def test_resting_limit_orders_lock_funds_fill_on_cross_and_cancel() -> None:
    ex, quotes = exchange(usdt=5_000.0)
    buy = ex.create_order(order("lim", amount=0.2, kind="limit", price=19_000.0))
    assert buy.status == "open" and buy.price == 19_000.0
    assert [o.client_order_id for o in ex.fetch_open_orders()] == ["lim"]
    # 0.2 * 19000 + fee is locked: a market buy of what is left over fails
    with pytest.raises(ExchangeRejectedError, match="insufficient"):
        ex.create_order(order("mkt", amount=0.1))
    quotes.set("BTC/USDT", 19_500.0, NS0 + 60 * 10**9)
    waiting = ex.fetch_order("BTC/USDT", client_order_id="lim")
    assert waiting is not None and waiting.status == "open"
    quotes.set("BTC/USDT", 18_900.0, NS0 + 120 * 10**9)
    filled = ex.fetch_order("BTC/USDT", client_order_id="lim")
    assert filled is not None and filled.status == "filled"
    assert filled.average_price == 19_000.0  # a resting limit fills at its price
    assert filled.updated_at == T0 + timedelta(minutes=2)
    assert ex.fetch_open_orders("BTC/USDT") == []
    # a marketable limit fills at once, at the slipped price but never worse than the limit
    sell = ex.create_order(order("s", side="sell", amount=0.1, kind="limit", price=18_890.0))
    assert sell.status == "filled" and sell.average_price == 18_890.0
    # cancel: a resting sell unlocks its BTC; a filled order comes back as it is
    rest = ex.create_order(order("r", side="sell", amount=0.1, kind="limit", price=30_000.0))
    with pytest.raises(ExchangeRejectedError, match="insufficient BTC"):
        ex.create_order(order("m2", side="sell", amount=0.05))
    cancelled = ex.cancel_order("BTC/USDT", client_order_id="r")
    assert cancelled is not None and cancelled.status == "cancelled"
    assert ex.cancel_order("BTC/USDT", exchange_order_id=rest.exchange_order_id) == cancelled
    assert ex.cancel_order("BTC/USDT", client_order_id="s") == sell
    assert ex.cancel_order("BTC/USDT", client_order_id="nope") is None
    ex.create_order(order("m3", side="sell", amount=0.05))
    with pytest.raises(ExchangeRejectedError):
        ex.cancel_order("BTC/USDT")


def test_shorts_need_allow_short_and_collateral() -> None:
    ex, _ = exchange(usdt=1_000.0, allow_short=True)
    with pytest.raises(ExchangeRejectedError, match="short"):
        ex.create_order(order("big", side="sell", amount=0.1))  # 2000 of collateral
    short = ex.create_order(order("ok", side="sell", amount=0.04))
    assert short.status == "filled" and ex.balances()["BTC"] == pytest.approx(-0.04)


def test_trades_since_and_per_symbol() -> None:
    ex, quotes = exchange()
    ex.create_order(order("1", amount=0.01))
    quotes.set("BTC/USDT", 21_000.0, NS0 + 3600 * 10**9)
    ex.create_order(order("2", amount=0.01))
    later = ex.fetch_my_trades("BTC/USDT", since=T0 + timedelta(minutes=30))
    assert [t.client_order_id for t in later] == ["2"]
    assert ex.fetch_my_trades("ETH/USDT") == []


def test_rebuilt_from_history_continues_the_same_account() -> None:
    ex, quotes = exchange(usdt=3_000.0)
    ex.create_order(order("a", amount=0.1))
    ex.create_order(order("b", side="sell", amount=0.05))
    ex.create_order(order("c", amount=0.01, kind="limit", price=10_000.0))
    # a new process: balances from the starting cash and the stored trades
    again = PaperExchange.from_history(initial_balances={"USDT": 3_000.0}, prices=quotes,
                                       orders=ex.orders(), trades=ex.trades(), costs=COSTS,
                                       markets={"BTC/USDT": BTC})
    assert again.balances() == pytest.approx(ex.balances())
    assert again.create_order(order("a", amount=0.1)) == ex.fetch_order(
        "BTC/USDT", client_order_id="a")  # nothing sent twice after a restart
    new = again.create_order(order("d", amount=0.01))
    used = {o.exchange_order_id for o in ex.orders()} | {t.trade_id for t in ex.trades()}
    assert new.exchange_order_id not in used
    # the resting order came back with its limit and still fills when the price gets there
    quotes.set("BTC/USDT", 9_999.0, NS0 + 10**9)
    resting = again.fetch_order("BTC/USDT", client_order_id="c")
    assert resting is not None and resting.status == "filled"
    # a bare symbol is quoted in the account's quote currency
    stock = PaperExchange(balances={"USD": 100.0}, prices=lambda s: quotes("BTC/USDT"),
                          quote_currency="USD")
    assert stock.market("AAPL").quote == "USD" and stock.market("AAPL").base == "AAPL"
