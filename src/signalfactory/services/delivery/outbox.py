"""The transactional outbox: delivery rows written in the unit of work that stores the signals.

A signal and the rows that deliver it commit together or not at all, so a worker never
sends a signal that was rolled back and never misses one that was stored. Which endpoints a
signal goes to: every subscription whose filter matches it (the live stream's
``StreamFilter``: the tenant's visibility, strategies, symbols, minimum score), through the
subscription's enabled endpoints. Workers are woken after the commit; the rows are the
truth, the wake-up only saves a poll.
"""

from __future__ import annotations

from collections.abc import Sequence

from signalfactory.domain.delivery import REALTIME, NewDelivery
from signalfactory.domain.message_ids import new_message_id
from signalfactory.domain.streaming import SignalEvent, StreamFilter, Subscription
from signalfactory.services.platform import Platform
from signalfactory.services.ports import UnitOfWork

SIGNAL_CREATED = "signal.created"


def subscription_filter(subscription: Subscription) -> StreamFilter:
    """The subscription as the live stream filters it (empty lists: no restriction)."""
    return StreamFilter(tenant_id=subscription.tenant_id,
                        strategies=frozenset(subscription.strategies)
                        if subscription.strategies else None,
                        symbols=frozenset(subscription.symbols)
                        if subscription.symbols else None,
                        min_score=subscription.min_score, subscription_id=subscription.id)


def _tenants_concerned(events: Sequence[SignalEvent]) -> list[int] | None:
    """Tenants that can see at least one of the events: the owners, or every tenant (None)
    when a built-in strategy's signal is among them (built-ins are visible to all). Every
    tenant is asked for as such, not listed: the routes query finds the few that have any."""
    if any(e.builtin for e in events):
        return None
    return sorted({e.tenant_id for e in events})


def delivery_rows(uow: UnitOfWork, events: Sequence[SignalEvent]) -> list[NewDelivery]:
    """One row per (signal, endpoint) that some matching subscription routes it to."""
    if not events:
        return []
    routes = uow.endpoints.routes(_tenants_concerned(events))
    rows: list[NewDelivery] = []
    seen: set[tuple[int, int]] = set()
    for tenant_id, pairs in routes.items():
        if not pairs:
            continue
        filters = {s.id: subscription_filter(s) for s in uow.subscriptions.for_tenant(tenant_id)}
        for event in events:
            for subscription_id, endpoint_id in pairs:
                flt = filters.get(subscription_id)
                # One endpoint linked to two matching subscriptions still gets it once.
                if flt is None or (endpoint_id, event.id) in seen or not flt.matches(event):
                    continue
                seen.add((endpoint_id, event.id))
                rows.append(NewDelivery(
                    id=new_message_id(), tenant_id=tenant_id, endpoint_id=endpoint_id,
                    subscription_id=subscription_id, signal_id=event.id, priority=REALTIME,
                    payload={**event.payload, "type": SIGNAL_CREATED}))
    return rows


def enqueue_for_signals(platform: Platform, uow: UnitOfWork,
                        events: Sequence[SignalEvent]) -> list[str]:
    """Write the delivery rows of newly stored signals in ``uow`` (the signals' own unit of
    work) and wake the delivery workers once it commits. Returns the new rows' ids."""
    rows = delivery_rows(uow, events)
    if not rows:
        return []
    uow.deliveries.enqueue(rows)
    ids = [r.id for r in rows]
    announce(platform, uow, ids)
    return ids


def announce(platform: Platform, uow: UnitOfWork, ids: Sequence[str]) -> None:
    """Wake delivery workers after ``uow`` commits (never when it rolls back)."""
    queue = platform.delivery_queue
    if queue is not None and ids:
        chosen = list(ids)
        uow.on_commit(lambda: queue.announce(chosen))
