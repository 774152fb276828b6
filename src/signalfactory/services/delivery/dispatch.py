"""The dispatcher: lease due outbox rows, send them, record every attempt, settle each row.

Three short steps, two transactions. (1) One write claims the rows (a lease of
``delivery_lease_seconds``) and reads their endpoints, controls and throttle counts. (2) No
transaction is open while sending: messages to different endpoints go out concurrently in a
small thread pool, one endpoint's messages in order, each guarded by a per-process circuit
breaker so one dead endpoint never holds up the others. (3) One write records the attempts
and settles the rows per the delivery policy. A worker that dies between (1) and (3) leaves
leased rows that another worker takes over when the lease expires and sends again under the
same message id, so a receiver sees a repeat only as the same ``webhook-id``.
"""

from __future__ import annotations

import json
import random
import threading
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from signalfactory.domain import delivery_policy as policy
from signalfactory.domain.delivery import (
    DEFAULT,
    PRIORITY_NAMES,
    Delivery,
    DeliveryAttempt,
    Endpoint,
    NewDelivery,
    SendResult,
    TemplateRenderError,
)
from signalfactory.domain.endpoint_secrets import active_secrets, decode_secrets
from signalfactory.domain.errors import OperationalError
from signalfactory.domain.message_ids import new_message_id
from signalfactory.observability.logging import get_logger
from signalfactory.observability.metrics import (
    DELIVERIES,
    DELIVERY_ATTEMPT_DURATION,
    DELIVERY_LAG,
)
from signalfactory.services.delivery.messages import digest_payload, render_unit
from signalfactory.services.delivery.outbox import announce
from signalfactory.services.delivery.plan import THROTTLE_WINDOW, Plan, Unit, plan_rows
from signalfactory.services.platform import Platform
from signalfactory.services.ports import UnitOfWork

log = get_logger("signalfactory.delivery")

EXCERPT_CHARS = 500
#: an open breaker's rows come back after this long (its half-open probe decides then)
BREAKER_DEFER = timedelta(seconds=30)
#: stop sending a batch once this share of its lease is spent: the rest go back untried
#: rather than being sent twice (another worker could take them over after the lease)
LEASE_SHARE = 0.8


@dataclass(frozen=True)
class DispatchReport:
    claimed: int = 0
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    suppressed: int = 0
    #: handed back untried (breaker open, quiet hours, digest not due, worker stopping)
    deferred: int = 0
    disabled_endpoints: tuple[int, ...] = ()


@dataclass
class DispatchState:
    """What one process keeps between batches: the breakers, a random source for jitter
    and the pool that sends to several endpoints at once."""

    breaker: policy.CircuitBreaker = field(default_factory=policy.CircuitBreaker)
    rng: random.Random = field(default_factory=random.Random)
    pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(8, thread_name_prefix="delivery-send"))


_STATES: weakref.WeakKeyDictionary[Platform, DispatchState] = weakref.WeakKeyDictionary()
_STATES_LOCK = threading.Lock()


def dispatch_state(platform: Platform) -> DispatchState:
    with _STATES_LOCK:
        state = _STATES.get(platform)
        if state is None:
            state = _STATES[platform] = DispatchState()
        return state


@dataclass(frozen=True)
class _Sent:
    unit: Unit
    result: SendResult | None  # None: not sent (breaker open, lease running out, stopping)
    started_at: datetime


def deliver_due(platform: Platform, owner: str, *, limit: int,
                max_priority: int | None = None,
                stopping: threading.Event | None = None) -> DispatchReport:
    """Claim up to ``limit`` due rows (priority ``<= max_priority`` when given), send them
    and settle them. ``stopping`` set mid-batch hands the unsent rows back."""
    state = dispatch_state(platform)
    now = platform.clock.now()
    lease = timedelta(seconds=platform.settings.delivery_lease_seconds)
    deadline = platform.clock.monotonic() + lease.total_seconds() * LEASE_SHARE
    with platform.database.write() as uow:
        rows = uow.deliveries.claim_due(now, owner, now + lease, limit, max_priority)
        if not rows:
            return DispatchReport()
        plan = _plan(uow, rows, now)
    by_endpoint: dict[int, list[Unit]] = {}
    for unit in plan.send:
        by_endpoint.setdefault(unit.endpoint.id, []).append(unit)
    futures = [state.pool.submit(_send_all, platform, state, units, deadline, stopping)
               for units in by_endpoint.values()]
    sent = [s for f in futures for s in f.result()]
    return _settle(platform, state, owner, rows, plan, sent)


def _plan(uow: UnitOfWork, rows: list[Delivery], now: datetime) -> Plan:
    endpoints = {e: uow.endpoints.get(None, e) for e in {r.endpoint_id for r in rows}}
    controls = {s: uow.endpoints.controls(s)
                for s in {r.subscription_id for r in rows if r.subscription_id is not None}}
    mine: dict[tuple[int, int], int] = {}
    for r in rows:
        if r.subscription_id is not None:
            key = (r.subscription_id, r.endpoint_id)
            mine[key] = mine.get(key, 0) + 1
    # The throttle counts what went out in the last hour, not the rows this claim leased.
    sent = {key: uow.deliveries.sent_since(key[0], key[1], now - THROTTLE_WINDOW) - n
            for key, n in mine.items() if controls[key[0]].max_per_hour is not None}
    return plan_rows(rows, endpoints, controls, sent, now)


def _send_all(platform: Platform, state: DispatchState, units: Sequence[Unit],
              deadline: float, stopping: threading.Event | None) -> list[_Sent]:
    out = []
    gone = False  # a 410 disabled the endpoint: its other messages are not sent
    for unit in units:
        started = platform.clock.now()
        key = f"endpoint:{unit.endpoint.id}"
        if (gone or (stopping is not None and stopping.is_set())
                or platform.clock.monotonic() > deadline
                or not state.breaker.allow(key, platform.clock.monotonic())):
            out.append(_Sent(unit, None, started))
            continue
        result = send_unit(platform, unit, started)
        outcome = policy.classify(result)
        # Only a failure that says "the destination is down" counts against the breaker; a
        # 4xx is an answer from a destination that is up.
        state.breaker.record(key, outcome != "retry", platform.clock.monotonic())
        gone = outcome == "disable"
        out.append(_Sent(unit, result, started))
    return out


def send_unit(platform: Platform, unit: Unit, started: datetime) -> SendResult:
    """Open the endpoint's target and secrets, render and send one message."""
    endpoint = unit.endpoint
    channel = platform.channels.get(endpoint.kind)
    if channel is None:
        return SendResult(ok=False, error=f"no {endpoint.kind} channel is configured in this "
                                          "process")
    try:
        target, secrets = open_endpoint(platform, endpoint, started)
    except OperationalError as exc:
        return SendResult(ok=False, error=str(exc))
    payload = unit.rows[0].payload if len(unit.rows) == 1 else digest_payload(unit.rows)
    try:
        message = render_unit(platform.renderer, unit.rows, endpoint.kind, unit.template)
    except TemplateRenderError as exc:
        return SendResult(ok=False, error=str(exc), permanent=True)
    try:
        return channel.send(target, secrets, unit.message_id, int(started.timestamp()),
                            message.subject, message.body, canonical_json(payload),
                            html=message.html, max_per_second=endpoint.max_per_second)
    except Exception as exc:  # a channel must not raise; if one does, it is a failed attempt
        log.error("delivery channel raised", channel=endpoint.kind,
                  error=f"{type(exc).__name__}: {exc}")
        return SendResult(ok=False, error=f"{type(exc).__name__}: {exc}")


def canonical_json(payload: dict[str, object]) -> bytes:
    """The bytes a webhook signs and sends: sorted keys, no spaces, UTF-8."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


def open_endpoint(platform: Platform, endpoint: Endpoint,
                  now: datetime) -> tuple[str, list[str]]:
    """The clear target and the signing secrets valid at ``now`` (current first)."""
    box = platform.secret_box
    if box is None:
        raise OperationalError("no delivery key is configured (SIGNALFACTORY_DELIVERY_KEY): "
                               "endpoint targets cannot be opened")
    target = box.open(endpoint.target_sealed).decode()
    if endpoint.secrets_sealed is None:
        return target, []
    secrets = active_secrets(decode_secrets(box.open(endpoint.secrets_sealed)), now)
    return target, list(secrets)


def _settle(platform: Platform, state: DispatchState, owner: str, rows: list[Delivery],
            plan: Plan, sent: list[_Sent]) -> DispatchReport:
    now = platform.clock.now()
    counts = {"delivered": 0, "retry": 0, "dead": 0, "deferred": 0}
    disabled: list[int] = []
    lags: list[tuple[int, float]] = []
    with platform.database.write() as uow:
        repo = uow.deliveries
        for when, ids in plan.defer.items():
            counts["deferred"] += repo.release(ids, owner, when)
        suppressed = sum(repo.suppress(ids, reason) for reason, ids in plan.suppress.items())
        for ident, error in plan.dead:
            counts["dead"] += repo.dead_letter(ident, owner, error)
        for (subscription_id, endpoint_id), held in plan.throttled.items():
            suppressed += repo.suppress([r.id for r in held], "throttled")
            _enqueue_summary(platform, uow, subscription_id, endpoint_id, held, now)
            endpoint = uow.endpoints.get(None, endpoint_id)
            DELIVERIES.labels(endpoint.kind if endpoint else "unknown",
                              "suppressed").inc(len(held))
        for item in sent:
            ids = [r.id for r in item.unit.rows]
            if item.result is None:
                when = now + BREAKER_DEFER if item.unit.endpoint.enabled else now
                counts["deferred"] += repo.release(ids, owner, when)
                continue
            outcome = _record(platform, state, uow, owner, item, now, disabled)
            counts[outcome] += len(ids)
            if outcome == "delivered":
                lags.extend((r.priority, (now - r.created_at).total_seconds())
                            for r in item.unit.rows)
    for priority, lag in lags:
        DELIVERY_LAG.labels(PRIORITY_NAMES.get(priority, str(priority))).observe(max(lag, 0))
    return DispatchReport(claimed=len(rows), delivered=counts["delivered"],
                          retried=counts["retry"], dead=counts["dead"], suppressed=suppressed,
                          deferred=counts["deferred"], disabled_endpoints=tuple(disabled))


def _record(platform: Platform, state: DispatchState, uow: UnitOfWork, owner: str,
            item: _Sent, now: datetime, disabled: list[int]) -> str:
    """Store the attempt of every row of the unit and settle them; returns the outcome."""
    result = item.result
    if result is None:
        raise ValueError("only a sent unit has an attempt to record")
    repo = uow.deliveries
    kind = item.unit.endpoint.kind
    outcome: str = policy.classify(result)
    error = result.error or (f"HTTP {result.status_code}" if result.status_code else None)
    excerpt = result.response_excerpt[:EXCERPT_CHARS] if result.response_excerpt else None
    for row in item.unit.rows:
        repo.record_attempt(DeliveryAttempt(
            delivery_id=row.id, attempt=row.attempts, started_at=item.started_at,
            status_code=result.status_code, latency_ms=result.latency_s * 1000.0,
            error=None if result.ok else error, response_excerpt=excerpt))
    DELIVERY_ATTEMPT_DURATION.labels(kind).observe(result.latency_s)
    ids = [r.id for r in item.unit.rows]
    if outcome == "delivered":
        for ident in ids:
            repo.mark_delivered(ident, owner, now)
    elif outcome == "retry":
        attempts = max(r.attempts for r in item.unit.rows)
        delay = policy.next_retry_delay(max(attempts, 1), state.rng, result.retry_after_s)
        if delay is None:
            outcome = "dead"
            for ident in ids:
                repo.dead_letter(ident, owner, f"gave up after {attempts} attempts: {error}")
        else:
            for ident in ids:
                repo.reschedule(ident, owner, now + timedelta(seconds=delay), error or "failed")
    else:
        if outcome == "disable":
            endpoint_id = item.unit.endpoint.id
            uow.endpoints.set_enabled(endpoint_id, False,
                                      f"the receiver answered {result.status_code} Gone")
            disabled.append(endpoint_id)
            outcome = "dead"
        for ident in ids:
            repo.dead_letter(ident, owner, error or "refused")
    DELIVERIES.labels(kind, outcome).inc(len(ids))
    return outcome


def _enqueue_summary(platform: Platform, uow: UnitOfWork, subscription_id: int,
                     endpoint_id: int, held: list[Delivery], now: datetime) -> None:
    """One message, once the throttle window has passed, saying what was held back."""
    row = NewDelivery(
        id=new_message_id(), tenant_id=held[0].tenant_id, endpoint_id=endpoint_id,
        subscription_id=subscription_id, priority=DEFAULT, next_attempt_at=now + THROTTLE_WINDOW,
        payload={"type": "signal.summary", "count": len(held),
                 "signal_ids": [r.signal_id for r in held],
                 "text": policy.summary_line(len(held), "hour")})
    uow.deliveries.enqueue([row])
    announce(platform, uow, [row.id])
