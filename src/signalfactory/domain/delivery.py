"""Delivery records: where messages go (endpoints), what is owed to them (the outbox), what
each attempt did, and campaigns.

An outbox row (``Delivery``) is written in the same transaction as the signal it announces;
its ``id`` is the message id every attempt carries (``webhook-id``), so a receiver can drop a
repeat. Targets and secrets are stored sealed (encrypted); these records carry the sealed
bytes and a redacted ``target_hint`` for display, never the clear text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from signalfactory.domain.errors import SignalFactoryError

EndpointKind = Literal["webhook", "apprise", "email"]
ENDPOINT_KINDS: tuple[EndpointKind, ...] = ("webhook", "apprise", "email")

# Outbox states. pending: due at ``next_attempt_at``; sending: leased by a worker;
# delivered; dead: every attempt failed (the dead-letter queue); suppressed: not sent on
# purpose (quiet hours folded it into a digest, throttle summarised it, endpoint disabled).
PENDING = "pending"
SENDING = "sending"
DELIVERED = "delivered"
DEAD = "dead"
SUPPRESSED = "suppressed"
DELIVERY_STATUSES = (PENDING, SENDING, DELIVERED, DEAD, SUPPRESSED)

# Priorities: lower runs first. Real-time signals never wait behind a campaign or digest.
REALTIME = 0
DEFAULT = 1
BULK = 2
PRIORITY_NAMES = {REALTIME: "realtime", DEFAULT: "default", BULK: "bulk"}


@dataclass(frozen=True)
class NewEndpoint:
    tenant_id: int
    name: str
    kind: EndpointKind
    target_sealed: bytes
    target_hint: str
    secrets_sealed: bytes | None = None
    max_per_second: float | None = None


@dataclass(frozen=True)
class Endpoint:
    """A destination: a webhook URL, an Apprise URL or an e-mail address (sealed)."""

    id: int
    tenant_id: int
    name: str
    kind: EndpointKind
    target_sealed: bytes
    target_hint: str
    secrets_sealed: bytes | None
    enabled: bool
    disabled_reason: str | None
    max_per_second: float | None
    created_at: datetime


@dataclass(frozen=True)
class DeliveryControls:
    """A subscription's delivery settings: which endpoints, when and how much."""

    endpoint_ids: tuple[int, ...] = ()
    timezone: str = "UTC"
    #: quiet hours as minutes after local midnight, [start, end) (may wrap midnight)
    quiet_start: int | None = None
    quiet_end: int | None = None
    #: at most this many messages per hour per endpoint; the rest are summarised
    max_per_hour: int | None = None
    #: digest mode: one message per this many minutes listing the signals
    digest_minutes: int | None = None
    #: a template overriding the channel kind's default (sandboxed Jinja2)
    template: str | None = None


@dataclass(frozen=True)
class NewDelivery:
    id: str
    tenant_id: int
    endpoint_id: int
    payload: dict[str, object]
    priority: int = REALTIME
    subscription_id: int | None = None
    signal_id: int | None = None
    campaign_id: int | None = None
    status: str = PENDING
    next_attempt_at: datetime | None = None  # None: due now


@dataclass(frozen=True)
class Delivery:
    """One message owed to one endpoint: the outbox row."""

    id: str
    tenant_id: int
    endpoint_id: int
    subscription_id: int | None
    signal_id: int | None
    campaign_id: int | None
    priority: int
    status: str
    payload: dict[str, object]
    attempts: int
    next_attempt_at: datetime | None
    lease_owner: str | None
    lease_until: datetime | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


@dataclass(frozen=True)
class SendResult:
    """What one attempt got back. ``status_code`` is None when no HTTP answer came."""

    ok: bool
    status_code: int | None = None
    latency_s: float = 0.0
    error: str | None = None
    retry_after_s: float | None = None
    response_excerpt: str | None = None
    #: per-recipient failures of a channel that fans out itself (Apprise URLs)
    failures: tuple[str, ...] = field(default=())
    #: every attempt would fail the same way (a template that does not render): dead-letter
    permanent: bool = False


@dataclass(frozen=True)
class DeliveryAttempt:
    delivery_id: str
    attempt: int
    started_at: datetime
    status_code: int | None
    latency_ms: float
    error: str | None
    response_excerpt: str | None


@dataclass(frozen=True)
class NewCampaign:
    tenant_id: int
    subject: str
    body: str
    #: which subscriptions receive it: empty means every subscription of the tenant
    subscription_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class Campaign:
    id: int
    tenant_id: int
    subject: str
    body: str
    subscription_ids: tuple[int, ...]
    status: str  # pending | fanning_out | done
    total: int
    enqueued: int
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class DeliveryCount:
    priority: int
    status: str
    count: int


@dataclass(frozen=True)
class RenderedMessage:
    """A message's human forms, rendered from a template before a channel sends it.
    ``html`` is None when the template gives none (e-mail then escapes the text)."""

    subject: str
    body: str
    html: str | None = None


class TemplateRenderError(SignalFactoryError):
    """A stored template failed on a message (at send time). Every attempt would fail the
    same way: the dispatcher dead-letters the row with this text, it does not retry."""

    code = "template"
