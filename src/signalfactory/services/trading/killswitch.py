"""The kill switch at global, tenant and bot level, and lifting a halted or reducing scope.

Engaging stores the switch first (from that commit on every order of the scope is refused by
the order path's own check), then cancels the working orders of the scope's bots on their
exchanges and, with ``flatten``, sends market orders that close their positions (exits are
the only orders a halted bot may send, and only these). A follow-up sweep job runs a moment
later and cancels anything a runner had in flight while the switch was being engaged.

The switch stays engaged until an admin re-arms it (``rearm_kill_switch``) and then resumes
trading (``resume_trading``): two deliberate steps (the API lets only admins do either).
Every step is audited.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

from signalfactory.domain.errors import BadInputError, NotFoundError
from signalfactory.domain.jobs import NewJob
from signalfactory.domain.timestamps import datetime_to_ns
from signalfactory.domain.trading import risk
from signalfactory.domain.trading.bots import (
    BOT,
    GLOBAL,
    SCOPES,
    TENANT,
    Bot,
    KillSwitch,
)
from signalfactory.domain.trading.orders import Order, OrderIntent
from signalfactory.domain.trading.records import GLOBAL_SCOPE_ID, TradingState
from signalfactory.domain.trading.risk import RiskEvent
from signalfactory.observability.logging import get_logger
from signalfactory.observability.metrics import TRADING_KILL_SWITCH
from signalfactory.services.platform import Platform
from signalfactory.services.ports import UnitOfWork
from signalfactory.services.trading import events
from signalfactory.services.trading.bots import WORKING_STATUSES
from signalfactory.services.trading.execution import (
    _Report,
    place_orders,
    store_reports,
    trades_of,
)
from signalfactory.services.trading.sessions import open_session
from signalfactory.services.trading.tasks import SWEEP_KIND

log = get_logger("signalfactory.trading.kill_switch")

#: when the follow-up sweep runs after an engage (orders in flight have landed by then)
SWEEP_DELAY_SECONDS = 2.0
FLATTEN = "flatten"


@dataclass
class SweepReport:
    """What cancelling (and flattening) the scope's orders did."""

    cancelled: int = 0
    #: orders the exchange did not know yet (still pending: reconciliation settles them)
    not_found: int = 0
    flatten_orders: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class KillSwitchReport:
    switch: KillSwitch
    changed: bool
    sweep: SweepReport


def check_scope(uow: UnitOfWork, scope: str, scope_id: int, tenant_id: int | None) -> None:
    """The scope exists (and, with ``tenant_id``, belongs to that tenant)."""
    if scope not in SCOPES:
        raise BadInputError("scope must be global, tenant or bot", rule="scope")
    if scope == GLOBAL:
        if scope_id != GLOBAL_SCOPE_ID:
            raise BadInputError("the global scope has id 0", rule="scope")
        if tenant_id is not None:
            raise BadInputError("only the platform's operators act on the global scope",
                                rule="scope")
    elif scope == TENANT:
        if tenant_id is not None and scope_id != tenant_id:
            raise NotFoundError(f"no tenant {scope_id}")
        if not any(t.id == scope_id for t in uow.accounts.list_tenants()):
            raise NotFoundError(f"no tenant {scope_id}")
    elif uow.bots.get(tenant_id, scope_id) is None:
        raise NotFoundError(f"no bot {scope_id}")


def bots_in_scope(uow: UnitOfWork, scope: str, scope_id: int) -> list[Bot]:
    if scope == GLOBAL:
        return uow.bots.find()
    if scope == TENANT:
        return uow.bots.find(tenant_id=scope_id)
    found = uow.bots.get(None, scope_id)
    return [found] if found is not None else []


def _switch(uow: UnitOfWork, scope: str, scope_id: int) -> KillSwitch | None:
    found = uow.trading_states.kill_switches([(scope, scope_id)])
    return found[0] if found else None


def _record(platform: Platform, uow: UnitOfWork, event: RiskEvent, action: str,
            tenant_id: int | None, flatten: bool = False) -> None:
    events.record(platform, uow, actor=event.by, action=action,
                  subject=f"{event.scope}:{event.scope_id}", tenant_id=tenant_id,
                  details={"reason": event.message, "from": event.from_state,
                           "to": event.to_state, "flatten": flatten})


def _tenant_of(scope: str, scope_id: int, uow: UnitOfWork) -> int | None:
    if scope == TENANT:
        return scope_id
    if scope == BOT:
        found = uow.bots.get(None, scope_id)
        return found.tenant_id if found else None
    return None


def engage_kill_switch(platform: Platform, scope: str, scope_id: int, *, actor: str,
                       reason: str, flatten: bool = False,
                       tenant_id: int | None = None) -> KillSwitchReport:
    """Engage the switch, cancel the scope's working orders, optionally flatten.

    ``tenant_id``: when given, the scope must belong to that tenant (a tenant's admin)."""
    if not reason.strip():
        raise BadInputError("say why the kill switch is engaged", rule="reason")
    now = platform.clock.now()
    with platform.database.write() as uow:
        check_scope(uow, scope, scope_id, tenant_id)
        change = risk.engage_kill_switch(_switch(uow, scope, scope_id), scope=scope,
                                         scope_id=scope_id, by=actor, at=now,
                                         reason=reason.strip(), flatten=flatten)
        if change.event is not None:
            uow.trading_states.put_kill_switch(change.switch)
            _record(platform, uow, change.event, events.KILL_SWITCH_ENGAGED,
                    _tenant_of(scope, scope_id, uow), change.switch.flatten)
            uow.jobs.insert(NewJob(kind=SWEEP_KIND, payload={"scope": scope,
                                                             "scope_id": scope_id},
                                   tenant_id=_tenant_of(scope, scope_id, uow) or 1,
                                   max_attempts=5,
                                   dedupe_key=f"kill-sweep:{scope}:{scope_id}:"
                                              f"{datetime_to_ns(now)}",
                                   run_after=now + timedelta(seconds=SWEEP_DELAY_SECONDS)),
                            now)
    TRADING_KILL_SWITCH.labels(scope, str(scope_id)).set(1)
    platform.trading.wake_all()
    sweep = sweep_scope(platform, scope, scope_id, flatten=change.switch.flatten,
                        flatten_key=datetime_to_ns(change.switch.changed_at))
    return KillSwitchReport(change.switch, change.event is not None, sweep)


def rearm_kill_switch(platform: Platform, scope: str, scope_id: int, *, actor: str,
                      reason: str = "", tenant_id: int | None = None) -> KillSwitch:
    """Step one of releasing a switch: trading stays halted until ``resume_trading``."""
    now = platform.clock.now()
    with platform.database.write() as uow:
        check_scope(uow, scope, scope_id, tenant_id)
        change = risk.rearm_kill_switch(_switch(uow, scope, scope_id), by=actor, at=now,
                                        reason=reason)
        uow.trading_states.put_kill_switch(change.switch)
        if change.event is not None:
            _record(platform, uow, change.event, events.KILL_SWITCH_REARMED,
                    _tenant_of(scope, scope_id, uow))
    TRADING_KILL_SWITCH.labels(scope, str(scope_id)).set(2)
    return change.switch


def resume_trading(platform: Platform, scope: str, scope_id: int, *, actor: str,
                   reason: str = "", tenant_id: int | None = None) -> str:
    """Step two: release a re-armed kill switch; or lift a scope's ``halted`` or
    ``reducing`` state (a loss limit) back to ``active``, its loss baseline rebased on its
    latest equity. Returns what was resumed: ``kill-switch`` or ``state``."""
    now = platform.clock.now()
    with platform.database.write() as uow:
        check_scope(uow, scope, scope_id, tenant_id)
        switch = _switch(uow, scope, scope_id)
        owner = _tenant_of(scope, scope_id, uow)
        if switch is not None and switch.engaged:
            change = risk.resume_kill_switch(switch, by=actor, at=now, reason=reason)
            uow.trading_states.put_kill_switch(change.switch)
            if change.event is not None:
                _record(platform, uow, change.event, events.KILL_SWITCH_RESUMED, owner)
            resumed = "kill-switch"
        else:
            stored = uow.trading_states.states([(scope, scope_id)])
            current = stored[0] if stored else None
            event = risk.resume_state(current.state if current else "active", scope=scope,
                                 scope_id=scope_id, by=actor, at=now, kill_switch=switch,
                                 reason=reason)
            monitor = current.monitor if current else None
            if monitor is not None and monitor.last_equity == monitor.last_equity:  # not NaN
                monitor = monitor.rebased(monitor.last_equity)
            uow.trading_states.put_state(TradingState(scope, scope_id, event.to_state,
                                                      event.message, now, actor, monitor))
            _record(platform, uow, event, events.STATE_CHANGED, owner)
            resumed = "state"
    if resumed == "kill-switch":
        TRADING_KILL_SWITCH.labels(scope, str(scope_id)).set(0)
    platform.trading.wake_all()
    return resumed


def kill_switches(platform: Platform, tenant_id: int | None = None
                  ) -> tuple[list[KillSwitch], list[TradingState]]:
    """Stored switches and non-active states: all (operators), or those that concern a
    tenant (the global ones, its own and its bots')."""
    with platform.database.read(primary=True) as uow:
        switches = uow.trading_states.kill_switches()
        if tenant_id is None:
            scopes = None
        else:
            scopes = [(GLOBAL, 0), (TENANT, tenant_id)] + [
                (BOT, b.id) for b in uow.bots.find(tenant_id=tenant_id)]
            switches = [s for s in switches if (s.scope, s.scope_id) in scopes]
        every = [(s.scope, s.scope_id) for s in switches]
        wanted = scopes if scopes is not None else every + [(GLOBAL, 0)] + [
            (TENANT, t.id) for t in uow.accounts.list_tenants()] + [
            (BOT, b.id) for b in uow.bots.find()]
        states = [s for s in uow.trading_states.states(wanted) if s.state != "active"]
    return switches, states


# -- cancelling and flattening ---------------------------------------------------------------

def sweep_scope(platform: Platform, scope: str, scope_id: int, *, flatten: bool = False,
                flatten_key: int = 0) -> SweepReport:
    """Cancel the working orders of the scope's bots; with ``flatten`` also close their
    positions with market orders (client ids derived from ``flatten_key``, so a repeated
    sweep sends nothing twice)."""
    report = SweepReport()
    with platform.database.read(primary=True) as uow:
        bots = bots_in_scope(uow, scope, scope_id)
        working: dict[int, list[Order]] = defaultdict(list)
        for bot in bots:
            working[bot.id] = uow.orders.find(bot_id=bot.id, statuses=WORKING_STATUSES,
                                              limit=10_000)
        positions = {bot.id: uow.positions.find(bot_id=bot.id, open_only=True) for bot in bots}
    for bot in bots:
        if not working[bot.id] and not (flatten and positions[bot.id]):
            continue
        try:
            session = open_session(platform, bot, fetch_balance=False)
        except Exception as exc:  # one account's trouble must not stop the others
            report.errors.append(f"bot {bot.id}: {type(exc).__name__}: {exc}")
            log.error("kill switch could not reach a bot's exchange", bot_id=bot.id,
                      error=f"{type(exc).__name__}: {exc}")
            continue
        reports: list[_Report] = []
        for order in working[bot.id]:
            try:
                answer = session.exchange.cancel_order(
                    order.symbol, client_order_id=order.client_order_id,
                    exchange_order_id=order.exchange_order_id)
            except Exception as exc:  # the next sweep, or reconciliation, tries again
                report.errors.append(f"order {order.id}: {type(exc).__name__}: {exc}")
                continue
            if answer is None:
                report.not_found += 1  # pending and not on the exchange (yet)
                continue
            report.cancelled += 1
            try:
                trades = trades_of(session.exchange, order, answer)
            except Exception:  # reconciliation fetches them by trade id later
                trades = ()
            reports.append(_Report(order, answer, trades))
        store_cancels(platform, reports)
        if flatten and positions[bot.id]:
            intents = [OrderIntent(tenant_id=bot.tenant_id, bot_id=bot.id,
                                   account_id=bot.account_id, symbol=p.symbol,
                                   side="sell" if p.quantity > 0 else "buy",
                                   quantity=abs(p.quantity), bar_ns=flatten_key,
                                   reason=FLATTEN, reference_price=p.average_price)
                       for p in positions[bot.id]]
            results = place_orders(session, intents, flatten=True)
            report.flatten_orders += sum(1 for r in results if r.order is not None
                                         and r.outcome not in ("refused", "duplicate"))
    if report.cancelled or report.flatten_orders or report.errors:
        log.warning("kill switch sweep", scope=scope, scope_id=scope_id,
                    cancelled=report.cancelled, not_found=report.not_found,
                    flatten_orders=report.flatten_orders, errors=len(report.errors))
    return report


def store_cancels(platform: Platform, reports: list[_Report]) -> None:
    """Store what the exchange said about cancelled orders (an order that filled before the
    cancel keeps its fills)."""
    store_reports(platform, reports, actor="kill-switch")
