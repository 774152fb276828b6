"""Reconciliation: the exchange is the truth about orders, fills and balances.

Run when a bot's runner starts (before it trades), periodically, and after the database comes
back from an outage. For the bot's orders that have not ended:

- a ``pending`` order (written, then the process died or lost the answer) is looked up by its
  client order id. Found: its state and fills are stored. Not found: the exchange certainly
  has no such order, so it is sent again with the same id, but only while the decision is
  fresh (``trading_resend_seconds``) and the bot may still trade; otherwise it expires. A
  paper exchange lives in memory: a pending paper order never reached anything durable and
  expires.
- an open order is looked up and brought up to date (fills, cancellation, expiry).

Then every trade of the bot's symbols since the last reconciliation that belongs to one of
its orders is stored if it is not yet (by trade id: never twice), moving the position. Last,
when nothing is in flight, the account's base-currency balances are compared with the sum of
its bots' positions; a difference counts in
``signalfactory_trading_reconciliation_mismatches_total{kind="balance"}``, is audited and
logged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from signalfactory.domain.trading.bots import HALTED, REDUCING, Bot
from signalfactory.domain.trading.orders import EXPIRED, PENDING, Order, OrderIntent
from signalfactory.domain.trading.records import OrderUpdate
from signalfactory.domain.trading.risk import Exposure, reduces_only
from signalfactory.observability.logging import get_logger
from signalfactory.observability.metrics import (
    TRADING_ORDERS,
    TRADING_RECONCILIATION_MISMATCHES,
    TRADING_RECONCILIATIONS,
)
from signalfactory.services.platform import Platform
from signalfactory.services.trading import events
from signalfactory.services.trading.bots import WORKING_STATUSES, state_of
from signalfactory.services.trading.execution import (
    Session,
    _Report,
    base_currency,
    send,
    store_fills,
    store_reports,
    trades_of,
)

log = get_logger("signalfactory.trading.reconcile")

#: how far before the last reconciliation trades are fetched again (clock skew, late trades)
TRADES_OVERLAP = timedelta(minutes=5)
#: a balance and the positions agree within this (relative, plus an absolute floor)
BALANCE_TOLERANCE = 1e-9
BALANCE_FLOOR = 1e-8


@dataclass
class ReconcileReport:
    checked: int = 0
    updated: int = 0
    resent: int = 0
    expired: int = 0
    fills_found: int = 0
    balance_mismatches: list[str] = field(default_factory=list)

    @property
    def mismatches(self) -> int:
        return self.fills_found + len(self.balance_mismatches)


def _may_resend(session: Session, order: Order) -> bool:
    """A pending order the exchange does not have goes again only while fresh, while the
    process is not read-only and the bot's state still allows it."""
    platform = session.platform
    age = (platform.clock.now() - order.created_at).total_seconds()
    if session.account.kind == "paper" or age > platform.settings.trading_resend_seconds:
        return False
    if platform.trading.read_only is not None:
        return False
    with platform.database.read(primary=True) as uow:
        state, _ = state_of(uow, session.bot)
        held = {p.symbol: p.quantity for p in uow.positions.find(bot_id=session.bot.id)}
    if state.state == HALTED:
        return False
    if state.state == REDUCING:
        intent = OrderIntent(tenant_id=order.tenant_id, bot_id=session.bot.id,
                             account_id=order.account_id, symbol=order.symbol, side=order.side,
                             quantity=order.quantity, reference_price=order.reference_price)
        return reduces_only(intent, Exposure(positions=held))
    return True


def _settle_pending(session: Session, order: Order, report: ReconcileReport) -> _Report | None:
    """A pending order the exchange has never heard of: send it again or let it expire."""
    platform = session.platform
    kind = session.account.kind
    if _may_resend(session, order):
        answer = send(session, order)
        report.resent += 1
        TRADING_ORDERS.labels(kind, "resent").inc()
        return answer  # None: still no answer; the next reconciliation tries again
    with platform.database.write() as uow:
        uow.orders.update(order.id, OrderUpdate(
            EXPIRED, error="never reached the exchange; the decision is stale, not sent "
                           "again"), platform.clock.now())
    report.expired += 1
    TRADING_ORDERS.labels(kind, EXPIRED).inc()
    return None


def reconcile_orders(session: Session, report: ReconcileReport) -> None:
    platform, bot, exchange = session.platform, session.bot, session.exchange
    with platform.database.read(primary=True) as uow:
        working = sorted(uow.orders.find(bot_id=bot.id, statuses=WORKING_STATUSES,
                                         limit=10_000), key=lambda o: o.id)
    reports: list[_Report] = []
    for order in working:
        report.checked += 1
        found = exchange.fetch_order(order.symbol, client_order_id=order.client_order_id,
                                     exchange_order_id=order.exchange_order_id)
        platform.trading.checkpoint("reconcile_lookup")
        if found is None:
            if order.status == PENDING:
                answer = _settle_pending(session, order, report)
                if answer is not None:
                    reports.append(answer)
            else:
                log.warning("an acknowledged order is unknown to the exchange", order_id=order.id,
                            client_order_id=order.client_order_id)
                TRADING_RECONCILIATION_MISMATCHES.labels("order").inc()
            continue
        reports.append(_Report(order, found, trades_of(exchange, order, found)))
    if reports:
        store_reports(platform, reports, actor="reconciliation")
        report.updated += len(reports)


def reconcile_fills(session: Session, report: ReconcileReport, since_hint: Sequence[Order]
                    ) -> None:
    """Trades of the bot's orders since the last reconciliation, stored once by trade id."""
    platform, bot, exchange = session.platform, session.bot, session.exchange
    with platform.database.read(primary=True) as uow:
        runtime = uow.bots.runtime(bot.id)
        last = runtime.reconciled_at if runtime else None
        since = (last - TRADES_OVERLAP) if last is not None else None
        recent = [o for o in uow.orders.find(bot_id=bot.id, limit=10_000)
                  if o.exchange_order_id and (since is None or o.updated_at >= since)]
    recent.extend(o for o in since_hint if o.exchange_order_id)
    if not recent:
        return
    by_exchange_id = {o.exchange_order_id: o for o in recent}
    start = min(o.created_at for o in recent) - TRADES_OVERLAP
    found = 0
    for symbol in sorted({o.symbol for o in recent}):
        trades = [t for t in exchange.fetch_my_trades(symbol, start)
                  if t.exchange_order_id in by_exchange_id]
        if not trades:
            continue
        now = platform.clock.now()
        with platform.database.write() as uow:
            for trade in trades:
                order = by_exchange_id[trade.exchange_order_id]
                found += store_fills(uow, order, [trade], now)
    if found:
        report.fills_found += found
        TRADING_RECONCILIATION_MISMATCHES.labels("fill").inc(found)
        log.warning("reconciliation stored fills that were missing", bot_id=bot.id,
                    fills=found)


def reconcile_balances(session: Session, report: ReconcileReport) -> None:
    """Base-currency balances against the positions of the account's bots (only when none of
    them has an order in flight: a working order moves balances on its own time)."""
    platform, account = session.platform, session.account
    if account.kind == "paper":
        return  # the paper exchange's balances are made from the positions
    with platform.database.read(primary=True) as uow:
        bots = uow.bots.find(account_id=account.id)
        if any(uow.orders.find(bot_id=b.id, statuses=WORKING_STATUSES, limit=1) for b in bots):
            return
        expected: dict[str, float] = {}
        for b in bots:
            for p in uow.positions.find(bot_id=b.id):
                base = base_currency(p.symbol) or p.symbol
                expected[base] = expected.get(base, 0.0) + p.quantity
    if not expected:
        return
    balances = session.exchange.balances()
    problems = []
    for currency, want in sorted(expected.items()):
        have = float(balances.get(currency, 0.0))
        if abs(have - want) > max(BALANCE_FLOOR, BALANCE_TOLERANCE * max(abs(have), abs(want))):
            problems.append(f"{currency}: exchange {have:.10g}, positions {want:.10g}")
    if not problems:
        return
    report.balance_mismatches.extend(problems)
    TRADING_RECONCILIATION_MISMATCHES.labels("balance").inc(len(problems))
    with platform.database.write() as uow:
        events.record(platform, uow, actor="reconciliation",
                      action=events.RECONCILIATION_MISMATCH,
                      subject=f"exchange_account:{account.id}", tenant_id=account.tenant_id,
                      details={"bot_id": session.bot.id, "balances": problems})


def reconcile(session: Session) -> ReconcileReport:
    """Reconcile the session's bot with its exchange (see the module docstring)."""
    platform, bot = session.platform, session.bot
    report = ReconcileReport()
    try:
        with platform.database.read(primary=True) as uow:
            before = uow.orders.find(bot_id=bot.id, statuses=WORKING_STATUSES, limit=10_000)
        reconcile_orders(session, report)
        if session.account.kind != "paper":
            reconcile_fills(session, report, before)
        reconcile_balances(session, report)
        with platform.database.write() as uow:
            uow.bots.set_reconciled(bot.id, platform.clock.now())
    except Exception:
        TRADING_RECONCILIATIONS.labels("failed").inc()
        raise
    TRADING_RECONCILIATIONS.labels("mismatch" if report.mismatches else "ok").inc()
    if report.checked or report.mismatches:
        log.info("bot reconciled", bot_id=bot.id, checked=report.checked,
                 updated=report.updated, resent=report.resent, expired=report.expired,
                 fills_found=report.fills_found, balance_mismatches=report.balance_mismatches)
    return report


def needs_reconcile(platform: Platform, bot: Bot) -> bool:
    """First tick of this process for the bot, or the last reconciliation is due."""
    if bot.id not in platform.trading.reconciled:
        return True
    with platform.database.read(primary=True) as uow:
        runtime = uow.bots.runtime(bot.id)
    if runtime is None or runtime.reconciled_at is None:
        return True
    age = (platform.clock.now() - runtime.reconciled_at).total_seconds()
    return age >= platform.settings.trading_reconcile_seconds
