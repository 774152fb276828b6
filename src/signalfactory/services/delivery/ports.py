"""Ports of delivery: endpoints, the outbox, campaigns, channels and the secret box."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

from signalfactory.domain.delivery import (
    Campaign,
    Delivery,
    DeliveryAttempt,
    DeliveryControls,
    DeliveryCount,
    Endpoint,
    NewCampaign,
    NewDelivery,
    NewEndpoint,
    RenderedMessage,
    SendResult,
)


class EndpointRepository(Protocol):
    """A tenant's destinations and which subscriptions use them."""

    def add(self, endpoint: NewEndpoint) -> Endpoint:
        """Store a new endpoint (ConflictError when the tenant has one of that name)."""
        ...

    def get(self, tenant_id: int | None, endpoint_id: int) -> Endpoint | None:
        """The endpoint, if it belongs to ``tenant_id`` (any tenant when None)."""
        ...

    def for_tenant(self, tenant_id: int) -> list[Endpoint]: ...

    def set_enabled(self, endpoint_id: int, enabled: bool, reason: str | None = None) -> None:
        ...

    def set_secrets(self, endpoint_id: int, secrets_sealed: bytes) -> None: ...

    def delete(self, tenant_id: int, endpoint_id: int) -> bool: ...

    def controls(self, subscription_id: int) -> DeliveryControls:
        """The subscription's delivery settings and linked endpoint ids."""
        ...

    def set_controls(self, subscription_id: int, controls: DeliveryControls) -> None:
        """Replace the subscription's delivery settings and endpoint links."""
        ...

    def routes(self, tenant_ids: Sequence[int] | None
               ) -> Mapping[int, Sequence[tuple[int, int]]]:
        """tenant id -> (subscription id, endpoint id) pairs of enabled endpoints: where a
        new signal of that tenant (after the subscription's filter) must go. ``None``: every
        tenant's (a built-in strategy's signal concerns them all)."""
        ...


class DeliveryRepository(Protocol):
    """The outbox: rows written with the signals they announce, leased by workers."""

    def enqueue(self, rows: Sequence[NewDelivery]) -> int:
        """Insert, skipping a row whose (endpoint, signal) exists; returns how many were new."""
        ...

    def claim_due(self, now: datetime, owner: str, lease_until: datetime, limit: int,
                  max_priority: int | None = None) -> list[Delivery]:
        """Lease up to ``limit`` due rows (pending and due, or sending with an expired
        lease), lowest priority value first, oldest first; each claimed row's status
        becomes ``sending`` and ``attempts`` grows by one."""
        ...

    def record_attempt(self, attempt: DeliveryAttempt) -> None: ...

    def mark_delivered(self, delivery_id: str, owner: str, now: datetime) -> bool:
        """True if this owner still held the lease (else another worker took over)."""
        ...

    def reschedule(self, delivery_id: str, owner: str, next_attempt_at: datetime,
                   error: str) -> bool: ...

    def dead_letter(self, delivery_id: str, owner: str, error: str) -> bool: ...

    def release(self, delivery_ids: Sequence[str], owner: str,
                next_attempt_at: datetime | None) -> int:
        """Hand leased rows back untried (breaker open, quiet hours, digest not due, worker
        stopping): pending again at ``next_attempt_at`` (None: now), the claim's attempt not
        counted. Returns how many this owner still held."""
        ...

    def suppress(self, delivery_ids: Sequence[str], reason: str) -> int: ...

    def get(self, tenant_id: int | None, delivery_id: str) -> Delivery | None: ...

    def find(self, tenant_id: int | None, *, status: str | None = None,
             endpoint_id: int | None = None, subscription_id: int | None = None,
             campaign_id: int | None = None, after_id: str | None = None,
             limit: int = 100) -> list[Delivery]:
        """Rows ordered by id (ids sort by creation time), after ``after_id``."""
        ...

    def attempts(self, delivery_id: str) -> list[DeliveryAttempt]: ...

    def replay(self, tenant_id: int | None, delivery_ids: Sequence[str] | None,
               now: datetime, *, endpoint_id: int | None = None) -> int:
        """Dead rows (these ids, or every dead row of the tenant/endpoint) back to pending
        with a fresh attempt budget; returns how many."""
        ...

    def counts(self) -> list[DeliveryCount]:
        """Rows per (priority, status): queue depth per priority and the DLQ size."""
        ...

    def sent_since(self, subscription_id: int, endpoint_id: int, since: datetime) -> int:
        """Messages of the subscription delivered or leased to the endpoint since ``since``
        (the throttle's count)."""
        ...


class CampaignRepository(Protocol):
    def add(self, campaign: NewCampaign) -> Campaign: ...

    def get(self, tenant_id: int | None, campaign_id: int) -> Campaign | None: ...

    def for_tenant(self, tenant_id: int) -> list[Campaign]: ...

    def progress(self, campaign_id: int, *, total: int | None = None, enqueued: int = 0,
                 status: str | None = None, finished_at: datetime | None = None) -> None:
        """Add ``enqueued`` to the counter row (one UPDATE: fan-out chunks on several
        workers count into it without a chord) and set the other fields given."""
        ...


class Channel(Protocol):
    """One kind of destination. ``target`` and ``secrets`` are the opened (clear) values."""

    kind: str

    def send(self, target: str, secrets: Sequence[str], message_id: str, timestamp: int,
             subject: str, body: str, payload: bytes, *, html: str | None = None,
             max_per_second: float | None = None) -> SendResult:
        """Deliver one message; never raises for a delivery failure (it is the result).
        ``html``: the rendered HTML body (e-mail; None: the text, escaped);
        ``max_per_second``: the endpoint's rate, the channel waits until it allows."""
        ...

    def check_target(self, target: str) -> str:
        """The target as it will be stored (normalised), or BadInputError saying what is
        wrong with it (bad URL, unknown scheme, a private address when not allowed). Pure:
        no message is sent."""
        ...


class MessageRenderer(Protocol):
    """Subject, text and HTML of a message from a template (sandboxed): the channel kind's
    default, or a subscription's own. Raises ``TemplateRenderError`` when it fails."""

    def render(self, kind: str, template: str | None,
               context: Mapping[str, object]) -> RenderedMessage: ...


class SecretBox(Protocol):
    """Encryption at rest of targets and secrets (they carry credentials)."""

    def seal(self, clear: bytes) -> bytes: ...

    def open(self, sealed: bytes) -> bytes: ...
