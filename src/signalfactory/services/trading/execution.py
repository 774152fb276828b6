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
    Position,
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

@dataclass(frozen=True)
class _Books:
    """What one bot's pending transaction reads once: its positions and working orders."""

    positions: list[Position]
    working: list[Order]

    @classmethod
    def read(cls, uow: UnitOfWork, bot_id: int) -> _Books:
        return cls(uow.positions.find(bot_id=bot_id),
                   uow.orders.find(bot_id=bot_id, statuses=WORKING_STATUSES, limit=10_000))

    def exposure(self, prices: Mapping[str, float]) -> Exposure:
        working: dict[str, float] = defaultdict(float)
        for order in self.working:
            left = max(order.quantity - order.filled_quantity, 0.0)
            working[order.symbol] += left if order.side == "buy" else -left
        return Exposure(positions={p.symbol: p.quantity for p in self.positions},
                        working=dict(working), prices=dict(prices))


def working_exposure(uow: UnitOfWork, bot: Bot, prices: Mapping[str, float]) -> Exposure:
    return _Books.read(uow, bot.id).exposure(prices)


def build_ledger(uow: UnitOfWork, session: Session, own: _Books | None = None) -> CashLedger:
    """The capital ledger over the account's bots (and the tenant's, under an exposure
    limit) with the reservations of their working orders, read in ``uow`` (the session's
    own bot's books from ``own`` when given)."""
    bot, account = session.bot, session.account
    limit = session.platform.settings.trading_tenant_max_exposure
    bots = {b.id: b for b in uow.bots.find(account_id=account.id)}
    if limit is not None:
        bots.update({b.id: b for b in uow.bots.find(tenant_id=bot.tenant_id)})
    read = {b.id: own if (own is not None and b.id == bot.id) else _Books.read(uow, b.id)
            for b in bots.values()}
    books = [BotBook.of(bot_id=b.id, tenant_id=b.tenant_id, account_id=b.account_id,
                        allocation=b.allocation, positions=read[b.id].positions)
             for b in bots.values()]
    cash = session.account_cash
    if cash is None:
        cash = account.initial_cash + sum(
            bot_cash(b.allocation, read[b.id].positions) - b.allocation
            for b in bots.values() if b.account_id == account.id)
    # other accounts only count for the tenant's exposure; their cash is not spent here
    accounts = {b.account_id: 0.0 for b in bots.values()} | {account.id: cash}
    reservations = []
    for other in bots.values():
        for order in read[other.id].working:
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


@dataclass(frozen=True)
class _Planned:
    """An intent as decided in the pending transaction: to send, or refused with a rule."""

    intent: OrderIntent
    row: NewOrder
    rule: str | None = None
    message: str = ""


def _new_order(session: Session, intent: OrderIntent, reserved: float, *,
               refused: tuple[str, str] | None = None) -> NewOrder:
    return NewOrder(tenant_id=session.bot.tenant_id, bot_id=session.bot.id,
                    account_id=session.account.id, client_order_id=intent.client_order_id,
                    symbol=intent.symbol, side=intent.side, type=intent.type,
                    quantity=intent.quantity, limit_price=intent.limit_price,
                    reason=intent.reason, bar_ns=intent.bar_ns,
                    reference_price=intent.reference_price, reserved=reserved,
                    status=REJECTED if refused else PENDING,
                    error=f"[{refused[0]}] {refused[1]}" if refused else None)


def store_pending(session: Session, intents: Sequence[OrderIntent],
                  prices: Mapping[str, float], *, flatten: bool = False
                  ) -> tuple[list[OrderResult], list[Order]]:
    """Step 1: check, reserve and write the batch in one transaction (the rows in one
    statement). Returns every intent's result so far and the pending orders to send.

    An intent whose client order id is stored already was decided before (a restart): its
    row is found, nothing new is written and nothing is sent.

    ``flatten``: the kill switch's own exits. A halted bot may still send orders that only
    reduce its positions (the halt is checked as ``reducing``: exits only)."""
    platform, bot = session.platform, session.bot
    now = platform.clock.now()
    risk_seconds = 0.0
    planned: list[_Planned] = []
    with platform.database.write() as uow:
        uow.exchange_accounts.lock(session.account.id)
        state, _ = state_of(uow, bot)
        if flatten and state.state == HALTED:
            state = EffectiveState(REDUCING, state.rule, state.scope, state.scope_id)
        own = _Books.read(uow, bot.id)
        exposure = own.exposure(prices)
        recent = recent_orders_ns(uow, bot, now)
        ledger = build_ledger(uow, session, own)
        now_ns = datetime_to_ns(now)
        working = dict(exposure.working)
        for raw in intents:
            intent = on_grid(raw, session.markets.get(raw.symbol))
            current = Exposure(exposure.positions, working, exposure.prices)
            checking = time.perf_counter()
            decision = check_order(intent, limits=bot.limits, state=state, exposure=current,
                                   recent_orders_ns=recent, now_ns=now_ns,
                                   market=session.markets.get(intent.symbol))
            refusal: tuple[str, str] | None = None
            reserved = 0.0
            if not decision.accepted:
                refusal = (decision.rule or "risk", decision.message)
            elif not reduces_only(intent, current):
                price = intent.limit_price or session.costs.fill_price(
                    intent.reference_price, intent.side)
                reserved = reservation_amount(intent.quantity, price, session.costs)
                try:
                    ledger.reserve(intent.client_order_id, bot.id, reserved)
                except CapitalRefusedError as exc:
                    refusal, reserved = (exc.rule or "capital", exc.detail), 0.0
            risk_seconds += time.perf_counter() - checking
            row = _new_order(session, intent, reserved, refused=refusal)
            planned.append(_Planned(intent, row, *(refusal or (None, ""))))
            if refusal is None:
                working[intent.symbol] = working.get(intent.symbol, 0.0) + signed_quantity(
                    intent)
                recent.append(now_ns)
        stored = uow.orders.add_pending_many([p.row for p in planned], now)
    results: list[OrderResult] = []
    to_send: list[Order] = []
    for plan, (order, created) in zip(planned, stored, strict=True):
        if not created:
            results.append(OrderResult(plan.intent, DUPLICATE, order))
        elif plan.rule is not None:
            results.append(OrderResult(plan.intent, REFUSED, order, plan.rule, plan.message))
        else:
            results.append(OrderResult(plan.intent, PENDING, order))
            to_send.append(order)
    if session.timer is not None:
        session.timer.add("risk", risk_seconds)
    return results, to_send


# -- 2. send ------------------------------------------------------------------------------------

def request_of(order: Order) -> OrderRequest:
    # the decision's price lets the adapter check a market order's minimum notional without
    # asking the exchange for a ticker first (a round trip per order)
    return OrderRequest(symbol=order.symbol, side=order.side, type=order.type,
                        amount=order.quantity, client_order_id=order.client_order_id,
                        price=order.limit_price,
                        reference_price=order.reference_price or None)


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


def record_fills(uow: UnitOfWork, pairs: Sequence[tuple[Order, ExchangeTrade]],
                 now: datetime) -> list[Fill]:
    """Store trades not stored yet (one statement) and move the positions of their bots by
    the new ones, in order; returns the new fills."""
    fills = [fill_of(order, trade) for order, trade in pairs]
    new = [(order, fill) for (order, _), fill, fresh in zip(
        pairs, fills, uow.orders.add_fills(fills), strict=True) if fresh]
    by_bot: dict[int, list[Fill]] = defaultdict(list)
    for order, fill in new:
        if order.bot_id is not None:
            by_bot[order.bot_id].append(fill)
    moved: list[Position] = []
    for bot_id, bot_fills in by_bot.items():
        held = {p.symbol: p for p in uow.positions.find(bot_id=bot_id)}
        touched: set[str] = set()
        for fill in bot_fills:
            held[fill.symbol] = apply_fill(held.get(fill.symbol), fill, bot_id=bot_id,
                                           base_currency=base_currency(fill.symbol))
            touched.add(fill.symbol)
        moved.extend(dataclasses.replace(held[s], updated_at=now) for s in sorted(touched))
    uow.positions.put_many(moved)
    return [fill for _, fill in new]


def store_fills(uow: UnitOfWork, order: Order, trades: Sequence[ExchangeTrade],
                now: datetime) -> int:
    """``record_fills`` for one order's trades; returns how many were new."""
    return len(record_fills(uow, [(order, t) for t in trades], now))


def _update_of(report: _Report) -> OrderUpdate:
    ex = report.exchange_order
    if ex is None:
        return OrderUpdate(REJECTED, error=report.error)
    return OrderUpdate(ex.status, exchange_order_id=ex.exchange_order_id,
                       filled_quantity=ex.filled, average_price=ex.average_price, fee=ex.fee)


def _audit_batch(platform: Platform, uow: UnitOfWork, action: str, actor: str,
                 orders: Sequence[Order]) -> None:
    """One audit entry per kind of change and batch, naming every order it concerns."""
    if not orders:
        return
    first = orders[0]
    subject = f"order:{first.id}" if len(orders) == 1 else f"bot:{first.bot_id}"
    events.record(platform, uow, actor=actor, action=action, subject=subject,
                  tenant_id=first.tenant_id, details={"orders": [
                      {"id": o.id, "client_order_id": o.client_order_id,
                       "exchange_order_id": o.exchange_order_id, "symbol": o.symbol,
                       "side": o.side, "quantity": o.quantity, "status": o.status,
                       "filled": o.filled_quantity, "bot_id": o.bot_id,
                       "error": (o.error or "")[:300] or None} for o in orders]})


def apply_reports(platform: Platform, uow: UnitOfWork, reports: Sequence[_Report],
                  now: datetime, actor: str) -> list[Order]:
    """Store a batch of reports in ``uow``: the orders' new states, their fills and the
    positions they move, then the audit entries (the transaction's last writes)."""
    record_fills(uow, [(r.order, t) for r in reports for t in r.trades], now)
    updated = uow.orders.update_many([(r.order.id, _update_of(r)) for r in reports], now)
    placed, rejected, cancelled = [], [], []
    for before, after in zip(reports, updated, strict=True):
        if before.order.status in TERMINAL_STATUSES:
            continue
        if after.status == REJECTED:
            rejected.append(after)
            continue
        if before.order.status == PENDING:
            placed.append(after)
        if after.status == CANCELLED:
            cancelled.append(after)
    _audit_batch(platform, uow, events.ORDER_PLACED, actor, placed)
    _audit_batch(platform, uow, events.ORDER_REJECTED, actor, rejected)
    _audit_batch(platform, uow, events.ORDER_CANCELLED, actor, cancelled)
    return updated


def store_reports(platform: Platform, reports: Sequence[_Report], actor: str) -> list[Order]:
    """Store what the exchange said. Its commit does not wait for the disk: were the
    database server to lose it in a crash, the orders would be ``pending`` again and
    reconciliation would fetch the same answers and trades from the exchange (the pending
    rows themselves are written durably, before anything is sent)."""
    if not reports:
        return []
    with platform.database.write(durable=False) as uow:
        return apply_reports(platform, uow, reports, platform.clock.now(), actor)


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
    mark = session.time("pending", started)  # risk and capital included (see "risk")
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
