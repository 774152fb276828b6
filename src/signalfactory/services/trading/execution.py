"""The order path: intents → risk → capital → pending rows → exchange → acks, fills, positions.

For a batch of intents (one bot, one bar):

1. **One write transaction** decides and records them: the state the bot trades under is read
   afresh (a kill switch or a halt committed a moment ago refuses the order), each intent is
   checked by the risk engine and its cash is reserved by the capital ledger (under the
   account's lock, so two bots never reserve the same cash), and every accepted intent is
   written as a ``pending`` order with its client order id. Refused intents are stored as
   ``rejected`` with the rule that refused them; nothing of them is sent. An intent whose
   client order id is stored already was decided before (a restart): it is not sent again
   here; reconciliation owns it.
2. The transaction **commits before the exchange is called**: a crash from here on leaves a
   pending row that reconciliation looks up by its client order id.
3. Each pending order is **sent**; no order is sent while the process is read-only.
   An exchange refusal marks the order ``rejected``; no answer (network, timeout, 5xx after
   the adapter's retries) leaves it ``pending`` for reconciliation, never re-sent blindly.
4. **One write transaction** stores the acknowledgements: the order's state, its fills (each
   once, by trade id), the positions they move and the release of reservations of orders
   that ended.
"""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from signalfactory.domain.timestamps import datetime_to_ns
from signalfactory.domain.trading.bots import HALTED, REDUCING, Bot, ExchangeAccount
from signalfactory.domain.trading.capital import (
    BotBook,
    CapitalRefusedError,
    CashLedger,
    Reservation,
    bot_cash,
    reservation_amount,
)
from signalfactory.domain.trading.costs import CostModel
from signalfactory.domain.trading.decisions import apply_fill
from signalfactory.domain.trading.exchange import (
    ExchangeOperationalError,
    ExchangeOrder,
    ExchangeRejectedError,
    ExchangeTrade,
    Market,
    OrderRequest,
)
from signalfactory.domain.trading.orders import (
    CANCELLED,
    PENDING,
    REJECTED,
    TERMINAL_STATUSES,
    Fill,
    Order,
    OrderIntent,
)
from signalfactory.domain.trading.precision import floor_to_step
from signalfactory.domain.trading.records import NewOrder, OrderUpdate
from signalfactory.domain.trading.risk import (
    EffectiveState,
    Exposure,
    check_order,
    reduces_only,
    signed_quantity,
)
from signalfactory.observability.logging import get_logger
from signalfactory.observability.metrics import TRADING_ORDER_LATENCY, TRADING_ORDERS
from signalfactory.services.platform import Platform
from signalfactory.services.ports import UnitOfWork
from signalfactory.services.trading import events, watchdog
from signalfactory.services.trading.bots import WORKING_STATUSES, state_of
from signalfactory.services.trading.ports import Exchange

log = get_logger("signalfactory.trading.orders")

RULE_READ_ONLY = "read-only"
REFUSED = "refused"
UNKNOWN = "unknown"
DUPLICATE = "duplicate"


@dataclass
class StageTimes:
    """Seconds spent per stage of the order path (the benchmark prints them)."""

    samples: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def add(self, stage: str, seconds: float) -> None:
        self.samples[stage].append(seconds)


@dataclass(frozen=True)
class OrderResult:
    intent: OrderIntent
    #: filled / open / partially_filled / rejected / refused / unknown / duplicate
    outcome: str
    order: Order | None = None
    rule: str | None = None
    message: str = ""
    #: the fills the acknowledgement brought (what moves the caller's view of positions)
    fills: tuple[Fill, ...] = ()


@dataclass
class Session:
    """What one bot's orders need, made once per tick and reused for its batches."""

    platform: Platform
    bot: Bot
    account: ExchangeAccount
    exchange: Exchange
    markets: Mapping[str, Market]
    #: a ccxt account's free quote balance as last fetched (paper: computed from the books)
    account_cash: float | None = None
    timer: StageTimes | None = None

    @property
    def costs(self) -> CostModel:
        return CostModel(fee_pct=self.bot.fee_pct, slippage_bps=self.bot.slippage_bps)

    def time(self, stage: str, started: float) -> float:
        now = time.perf_counter()
        if self.timer is not None:
            self.timer.add(stage, now - started)
        return now


@dataclass(frozen=True)
class _Report:
    """What the exchange said about one order: its state and the trades it shows."""

    order: Order
    exchange_order: ExchangeOrder | None
    trades: tuple[ExchangeTrade, ...] = ()
    error: str | None = None


# -- reading the books -----------------------------------------------------------------------

def working_exposure(uow: UnitOfWork, bot: Bot, prices: Mapping[str, float]) -> Exposure:
    positions = {p.symbol: p.quantity for p in uow.positions.find(bot_id=bot.id)}
    working: dict[str, float] = defaultdict(float)
    for order in uow.orders.find(bot_id=bot.id, statuses=WORKING_STATUSES, limit=10_000):
        left = max(order.quantity - order.filled_quantity, 0.0)
        working[order.symbol] += left if order.side == "buy" else -left
    return Exposure(positions=positions, working=dict(working), prices=dict(prices))


def paper_account_cash(uow: UnitOfWork, account: ExchangeAccount) -> float:
    """A paper account's cash: its initial cash plus what its bots made or spent."""
    cash = account.initial_cash
    for other in uow.bots.find(account_id=account.id):
        cash += bot_cash(other.allocation, uow.positions.find(bot_id=other.id)) - other.allocation
    return cash


def build_ledger(uow: UnitOfWork, session: Session) -> CashLedger:
    """The capital ledger over the account's bots (and the tenant's, under an exposure
    limit) with the reservations of their working orders, read in ``uow``."""
    bot, account = session.bot, session.account
    limit = session.platform.settings.trading_tenant_max_exposure
    bots = {b.id: b for b in uow.bots.find(account_id=account.id)}
    if limit is not None:
        bots.update({b.id: b for b in uow.bots.find(tenant_id=bot.tenant_id)})
    books = [BotBook.of(bot_id=b.id, tenant_id=b.tenant_id, account_id=b.account_id,
                        allocation=b.allocation, positions=uow.positions.find(bot_id=b.id))
             for b in bots.values()]
    cash = session.account_cash
    if cash is None:
        cash = paper_account_cash(uow, account)
    # other accounts only count for the tenant's exposure; their cash is not spent here
    accounts = {b.account_id: 0.0 for b in bots.values()} | {account.id: cash}
    reservations = []
    for other in bots.values():
        for order in uow.orders.find(bot_id=other.id, statuses=WORKING_STATUSES, limit=10_000):
            if order.reserved > 0:
                reservations.append(Reservation(order.client_order_id, other.id,
                                                order.reserved))
    return CashLedger(bots=books, account_cash=accounts, reservations=reservations,
                      tenant_limits={bot.tenant_id: limit} if limit is not None else None)


def recent_orders_ns(uow: UnitOfWork, bot: Bot, now: datetime) -> list[int]:
    per_minute = bot.limits.max_orders_per_minute
    if per_minute is None:
        return []
    since = now - timedelta(minutes=1)
    recent = uow.orders.find(bot_id=bot.id, limit=per_minute + 1)
    return [datetime_to_ns(o.created_at) for o in recent
            if o.created_at >= since and o.status != REJECTED]


# -- 1. decide and store pending ---------------------------------------------------------------

def on_grid(intent: OrderIntent, market: Market | None) -> OrderIntent:
    """The intent's quantity floored to the market's step, never above what was asked (an
    exit of all that is held must not ask for a hair more; the client order id does not
    depend on the quantity)."""
    if market is None or market.amount_step <= 0:
        return intent
    step = market.amount_step
    quantity = floor_to_step(intent.quantity, step)
    if quantity > intent.quantity:  # the grid's float tolerance rounded up
        quantity = max(round(quantity - step, 12), 0.0)
    return dataclasses.replace(intent, quantity=quantity)


def _refuse(uow: UnitOfWork, session: Session, intent: OrderIntent, rule: str, message: str,
            now: datetime) -> OrderResult:
    """Store a refused intent as a rejected order naming the rule (nothing is sent)."""
    new = _new_order(session, intent, 0.0)
    order, created = uow.orders.add_pending(new, now)
    if not created:
        return OrderResult(intent, DUPLICATE, order)
    order = uow.orders.update(order.id, OrderUpdate(REJECTED, error=f"[{rule}] {message}"),
                              now)
    return OrderResult(intent, REFUSED, order, rule, message)


def _new_order(session: Session, intent: OrderIntent, reserved: float) -> NewOrder:
    return NewOrder(tenant_id=session.bot.tenant_id, bot_id=session.bot.id,
                    account_id=session.account.id, client_order_id=intent.client_order_id,
                    symbol=intent.symbol, side=intent.side, type=intent.type,
                    quantity=intent.quantity, limit_price=intent.limit_price,
                    reason=intent.reason, bar_ns=intent.bar_ns,
                    reference_price=intent.reference_price, reserved=reserved)


def store_pending(session: Session, intents: Sequence[OrderIntent],
                  prices: Mapping[str, float], *, flatten: bool = False
                  ) -> tuple[list[OrderResult], list[Order]]:
    """Step 1: check, reserve and write the batch in one transaction. Returns every
    intent's result so far and the pending orders to send.

    ``flatten``: the kill switch's own exits. A halted bot may still send orders that only
    reduce its positions (the halt is checked as ``reducing``: exits only)."""
    platform, bot = session.platform, session.bot
    results: list[OrderResult] = []
    to_send: list[Order] = []
    now = platform.clock.now()
    with platform.database.write() as uow:
        uow.exchange_accounts.lock(session.account.id)
        state, _ = state_of(uow, bot)
        if flatten and state.state == HALTED:
            state = EffectiveState(REDUCING, state.rule, state.scope, state.scope_id)
        exposure = working_exposure(uow, bot, prices)
        recent = recent_orders_ns(uow, bot, now)
        ledger = build_ledger(uow, session)
        now_ns = datetime_to_ns(now)
        working = dict(exposure.working)
        for raw in intents:
            market = session.markets.get(raw.symbol)
            intent = on_grid(raw, market)
            existing = uow.orders.by_client_id(session.account.id, intent.client_order_id)
            if existing is not None:
                results.append(OrderResult(intent, DUPLICATE, existing))
                continue
            current = Exposure(exposure.positions, working, exposure.prices)
            decision = check_order(intent, limits=bot.limits, state=state, exposure=current,
                                   recent_orders_ns=recent, now_ns=now_ns, market=market)
            if not decision.accepted:
                results.append(_refuse(uow, session, intent, decision.rule or "risk",
                                       decision.message, now))
                continue
            reserved = 0.0
            if not reduces_only(intent, current):
                price = intent.limit_price or session.costs.fill_price(
                    intent.reference_price, intent.side)
                reserved = reservation_amount(intent.quantity, price, session.costs)
                try:
                    ledger.reserve(intent.client_order_id, bot.id, reserved)
                except CapitalRefusedError as exc:
                    results.append(_refuse(uow, session, intent, exc.rule or "capital",
                                           exc.detail, now))
                    continue
            order, _ = uow.orders.add_pending(_new_order(session, intent, reserved), now)
            working[intent.symbol] = working.get(intent.symbol, 0.0) + signed_quantity(intent)
            recent.append(now_ns)
            results.append(OrderResult(intent, PENDING, order))
            to_send.append(order)
    return results, to_send


# -- 2. send ------------------------------------------------------------------------------------

def request_of(order: Order) -> OrderRequest:
    return OrderRequest(symbol=order.symbol, side=order.side, type=order.type,
                        amount=order.quantity, client_order_id=order.client_order_id,
                        price=order.limit_price)


def trades_of(exchange: Exchange, order: Order, reported: ExchangeOrder
              ) -> tuple[ExchangeTrade, ...]:
    """The order's trades: those the acknowledgement carried, else fetched (by the
    exchange's order id) when it filled anything."""
    if reported.trades or reported.filled <= 0:
        return reported.trades
    # from before the order, by our clock or the exchange's (paper: the bar's time)
    since = min(order.created_at, reported.updated_at) - timedelta(minutes=1)
    return tuple(t for t in exchange.fetch_my_trades(order.symbol, since)
                 if t.exchange_order_id == reported.exchange_order_id
                 or (t.client_order_id is not None
                     and t.client_order_id == order.client_order_id))


def send(session: Session, order: Order) -> _Report | None:
    """Step 2 for one order: its report, or None when the answer is unknown (left pending)."""
    platform = session.platform
    platform.trading.checkpoint("before_send")
    try:
        reported = session.exchange.create_order(request_of(order))
    except ExchangeRejectedError as exc:
        return _Report(order, None, error=str(exc))
    except ExchangeOperationalError as exc:
        log.error("exchange refused the account; order not placed", order_id=order.id,
                  error=str(exc))
        return _Report(order, None, error=str(exc))
    except Exception as exc:  # no answer: the order may or may not be on the exchange
        log.warning("order sent without an answer; reconciliation will look it up",
                    order_id=order.id, client_order_id=order.client_order_id,
                    error=f"{type(exc).__name__}: {exc}")
        return None
    platform.trading.checkpoint("after_send")
    try:
        trades = trades_of(session.exchange, order, reported)
    except Exception as exc:  # the fills come with the next reconciliation
        log.warning("could not fetch an order's trades; reconciliation will",
                    order_id=order.id, error=f"{type(exc).__name__}: {exc}")
        trades = ()
    return _Report(order, reported, trades)


# -- 3. store what the exchange said ----------------------------------------------------------

def base_currency(symbol: str) -> str | None:
    """``BTC`` of ccxt's unified ``BTC/USDT`` (None for a bare symbol)."""
    return symbol.split("/", 1)[0] if "/" in symbol else None


def fill_of(order: Order, trade: ExchangeTrade) -> Fill:
    return Fill(account_id=order.account_id, order_id=order.id, trade_id=trade.trade_id,
                symbol=order.symbol, side=trade.side, quantity=trade.amount, price=trade.price,
                fee=trade.fee, fee_currency=trade.fee_currency, executed_at=trade.executed_at)


def store_fills(uow: UnitOfWork, order: Order, trades: Sequence[ExchangeTrade],
                now: datetime) -> int:
    """Store the trades not stored yet and move the bot's position by each; returns how
    many were new."""
    new = 0
    for trade in trades:
        fill = fill_of(order, trade)
        if not uow.orders.add_fill(fill):
            continue
        new += 1
        if order.bot_id is not None:
            held = uow.positions.get(order.bot_id, order.symbol)
            moved = apply_fill(held, fill, bot_id=order.bot_id,
                               base_currency=base_currency(order.symbol))
            uow.positions.put(dataclasses.replace(moved, updated_at=now))
    return new


def apply_report(platform: Platform, uow: UnitOfWork, report: _Report, now: datetime,
                 actor: str) -> Order:
    """Store one report in ``uow``: the order's new state, its fills and positions."""
    order = report.order
    if report.exchange_order is None:
        updated = uow.orders.update(order.id, OrderUpdate(REJECTED, error=report.error), now)
        if order.status not in TERMINAL_STATUSES:
            events.record(platform, uow, actor=actor, action=events.ORDER_REJECTED,
                          subject=f"order:{order.id}", tenant_id=order.tenant_id,
                          details={"client_order_id": order.client_order_id,
                                   "error": (report.error or "")[:500]})
        return updated
    ex = report.exchange_order
    store_fills(uow, order, report.trades, now)
    updated = uow.orders.update(order.id, OrderUpdate(
        ex.status, exchange_order_id=ex.exchange_order_id, filled_quantity=ex.filled,
        average_price=ex.average_price, fee=ex.fee), now)
    if updated.status == CANCELLED and order.status not in TERMINAL_STATUSES:
        events.record(platform, uow, actor=actor, action=events.ORDER_CANCELLED,
                      subject=f"order:{order.id}", tenant_id=order.tenant_id,
                      details={"client_order_id": order.client_order_id,
                               "filled": ex.filled})
    if order.status == PENDING:
        events.record(platform, uow, actor=actor, action=events.ORDER_PLACED,
                      subject=f"order:{order.id}", tenant_id=order.tenant_id,
                      details={"client_order_id": order.client_order_id,
                               "exchange_order_id": ex.exchange_order_id,
                               "symbol": order.symbol, "side": order.side,
                               "quantity": order.quantity, "status": ex.status,
                               "bot_id": order.bot_id})
    return updated


def store_reports(platform: Platform, reports: Sequence[_Report], actor: str) -> list[Order]:
    if not reports:
        return []
    now = platform.clock.now()
    with platform.database.write() as uow:
        return [apply_report(platform, uow, r, now, actor) for r in reports]


# -- the whole path --------------------------------------------------------------------------

def place_orders(session: Session, intents: Sequence[OrderIntent],
                 prices: Mapping[str, float] | None = None, *,
                 flatten: bool = False) -> list[OrderResult]:
    """Run a batch of one bot's intents through the order path (see the module doc)."""
    platform = session.platform
    kind = session.account.kind
    if not intents:
        return []
    started = time.perf_counter()
    read_only = watchdog.check(platform)
    if read_only is not None:
        for _ in intents:
            TRADING_ORDERS.labels(kind, REFUSED).inc()
        return [OrderResult(i, REFUSED, None, RULE_READ_ONLY,
                            f"trading is read-only: {read_only.reason}") for i in intents]
    prices = prices or {i.symbol: i.reference_price for i in intents}
    results, to_send = store_pending(session, intents, prices, flatten=flatten)
    mark = session.time("store_pending", started)
    platform.trading.checkpoint("after_pending")
    reports: list[_Report] = []
    unknown: set[int] = set()
    for order in to_send:
        if platform.trading.read_only is not None:
            unknown.add(order.id)  # stays pending: nothing is sent while read-only
            continue
        report = send(session, order)
        mark = session.time("exchange", mark)
        if report is None:
            unknown.add(order.id)
        else:
            reports.append(report)
    stored = {o.id: o for o in store_reports(platform, reports, actor=f"bot:{session.bot.id}")}
    by_order = {r.order.id: r for r in reports}
    session.time("store_ack", mark)
    platform.trading.checkpoint("after_ack")
    elapsed = time.perf_counter() - started
    final: list[OrderResult] = []
    for result in results:
        if result.order is None or result.outcome != PENDING:
            if result.outcome == REFUSED:
                TRADING_ORDERS.labels(kind, REFUSED).inc()
            final.append(result)
            continue
        acked = stored.get(result.order.id)
        if acked is None:
            outcome = UNKNOWN if result.order.id in unknown else PENDING
            TRADING_ORDERS.labels(kind, outcome).inc()
            final.append(dataclasses.replace(result, outcome=outcome))
            continue
        TRADING_ORDERS.labels(kind, acked.status).inc()
        if acked.status != REJECTED:
            TRADING_ORDER_LATENCY.labels(kind).observe(elapsed)
        trades = by_order[acked.id].trades if acked.id in by_order else ()
        final.append(OrderResult(result.intent, acked.status, acked, message=acked.error or "",
                                 fills=tuple(fill_of(acked, t) for t in trades)))
    return final
