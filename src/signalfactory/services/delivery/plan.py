"""What to do with each claimed outbox row before anything is sent: the subscriber's controls
(quiet hours, digest, throttle) and the endpoint's state decide, as pure functions of what
the claim read, so the sending step only sends."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from signalfactory.domain import delivery_policy as policy
from signalfactory.domain.delivery import Delivery, DeliveryControls, Endpoint

#: payload types a subscriber's throttle and digest apply to (a throttle summary is not one)
SIGNAL_TYPES = frozenset({"signal.created"})
THROTTLE_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class Unit:
    """One message to send: a row, or the rows a digest lists (sent as one message)."""

    endpoint: Endpoint
    rows: tuple[Delivery, ...]
    template: str | None = None

    @property
    def message_id(self) -> str:
        # A digest goes out under its oldest row's id: stable on every retry of the group.
        return self.rows[0].id


@dataclass
class Plan:
    send: list[Unit] = field(default_factory=list)
    #: rows handed back untried until the given time (quiet hours, digest not due yet)
    defer: dict[datetime, list[str]] = field(default_factory=dict)
    #: rows not sent on purpose, with the reason
    suppress: dict[str, list[str]] = field(default_factory=dict)
    #: throttled rows per (subscription, endpoint): a summary is sent for them later
    throttled: dict[tuple[int, int], list[Delivery]] = field(default_factory=dict)
    #: rows that can never be sent (their endpoint is gone)
    dead: list[tuple[str, str]] = field(default_factory=list)


def plan_rows(rows: list[Delivery], endpoints: Mapping[int, Endpoint | None],
              controls: Mapping[int, DeliveryControls], sent: Mapping[tuple[int, int], int],
              now: datetime) -> Plan:
    """Decide each row's fate. ``sent`` counts, per (subscription, endpoint), the messages
    of the last hour other than these rows (the throttle's budget)."""
    plan = Plan()
    used = dict(sent)
    digests: dict[tuple[int, int], list[Delivery]] = {}
    for row in rows:
        endpoint = endpoints.get(row.endpoint_id)
        if endpoint is None:
            plan.dead.append((row.id, "the endpoint no longer exists"))
            continue
        if not endpoint.enabled:
            reason = f"endpoint disabled: {endpoint.disabled_reason or 'by its owner'}"
            plan.suppress.setdefault(reason, []).append(row.id)
            continue
        ctl = controls.get(row.subscription_id) if row.subscription_id is not None else None
        if ctl is None:
            plan.send.append(Unit(endpoint, (row,)))
            continue
        quiet = policy.quiet_until(ctl, now)
        if quiet is not None and quiet > now:
            plan.defer.setdefault(quiet, []).append(row.id)
            continue
        key = (row.subscription_id or 0, row.endpoint_id)
        if row.payload.get("type") not in SIGNAL_TYPES:
            plan.send.append(Unit(endpoint, (row,), ctl.template))
            continue
        due = policy.digest_due_at(ctl, row.created_at)
        if due is not None:
            if due > now:
                plan.defer.setdefault(due, []).append(row.id)
            else:
                digests.setdefault(key, []).append(row)
            continue
        if not policy.throttle_allows(ctl, used.get(key, 0)):
            plan.throttled.setdefault(key, []).append(row)
            continue
        used[key] = used.get(key, 0) + 1
        plan.send.append(Unit(endpoint, (row,), ctl.template))
    for (subscription_id, endpoint_id), group in digests.items():
        endpoint = endpoints[endpoint_id]
        if endpoint is not None:
            plan.send.append(Unit(endpoint, tuple(group), controls[subscription_id].template))
    return plan
