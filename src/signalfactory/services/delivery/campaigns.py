"""Campaigns: one message (an announcement, a daily report) to every subscriber of a tenant,
or to chosen subscriptions, fanned out over the job workers.

``start_campaign`` stores the campaign and its ``campaign.fanout`` job in one unit of work.
The fan-out job fixes the recipients, one per (subscription, endpoint) with each endpoint
once, sets the campaign's ``total`` and submits one ``campaign.chunk`` job per slice. The
chunks run wherever workers are (Celery at scale, the embedded runner on one machine), and
each writes its BULK-priority outbox rows and adds its count to the campaign's counter row in
the unit of work that stores its result. The chunk that brings the counter to ``total``
marks the campaign done: completion is a counter, not a chord, so no worker waits on others.

Outbox ids are derived from (campaign, subscription, endpoint): a chunk re-run after its
worker was killed writes the same ids, and the outbox skips ids it holds, so a message is
never queued twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from signalfactory.domain.delivery import BULK, Campaign, NewCampaign, NewDelivery
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.message_ids import derived_message_id
from signalfactory.services.delivery.campaign_records import check_campaign
from signalfactory.services.delivery.outbox import announce
from signalfactory.services.jobs.registry import dispatch, submit
from signalfactory.services.platform import Platform
from signalfactory.services.ports import UnitOfWork

FANOUT_KIND = "campaign.fanout"
CHUNK_KIND = "campaign.chunk"
CAMPAIGN_MESSAGE = "campaign.message"

# Campaign states: stored, recipients fixed and chunks submitted, every row in the outbox.
PENDING = "pending"
FANNING_OUT = "fanning_out"
DONE = "done"

#: recipients per chunk job: big enough that one INSERT amortises its round trip, small
#: enough that a chunk re-run after a crash repeats little and 100,000 recipients spread
#: over every worker
CHUNK_SIZE = 1000


@dataclass(frozen=True)
class Recipient:
    subscription_id: int
    endpoint_id: int


def start_campaign(platform: Platform, tenant_id: int, new: NewCampaign, *,
                   chunk_size: int = CHUNK_SIZE) -> Campaign:
    """Store the campaign and submit its fan-out job (both or neither). Bad input raises
    BadInputError (NotFoundError for a subscription the tenant does not have) and stores
    nothing."""
    if new.tenant_id != tenant_id:
        raise BadInputError("a campaign is sent to the caller's own tenant only")
    if not 1 <= chunk_size <= 100_000:
        raise BadInputError("chunk_size: between 1 and 100000")
    with platform.database.write() as uow:
        checked = check_campaign(uow, tenant_id, new.subject, new.body, new.subscription_ids)
        campaign = uow.campaigns.add(checked)
        job = submit(platform, FANOUT_KIND, {"campaign_id": campaign.id,
                                             "chunk_size": chunk_size},
                     tenant_id=tenant_id, dedupe_key=f"campaign:{campaign.id}", uow=uow)
        uow.on_commit(lambda: dispatch(platform, job.id))
    return campaign


def recipients(uow: UnitOfWork, campaign: Campaign) -> list[Recipient]:
    """Every (subscription, enabled endpoint) of the campaign, each endpoint once (the first
    subscription that links it): one destination gets one copy of the message."""
    routes = uow.endpoints.routes([campaign.tenant_id]).get(campaign.tenant_id, ())
    chosen = set(campaign.subscription_ids)
    seen: set[int] = set()
    found: list[Recipient] = []
    for subscription_id, endpoint_id in routes:
        if (chosen and subscription_id not in chosen) or endpoint_id in seen:
            continue
        seen.add(endpoint_id)
        found.append(Recipient(subscription_id, endpoint_id))
    return found


def chunked(items: Sequence[Recipient], size: int) -> list[list[Recipient]]:
    return [list(items[start:start + size]) for start in range(0, len(items), size)]


def message_id(campaign: Campaign, recipient: Recipient) -> str:
    """The same for every run of a chunk: the key of exactly-once queueing."""
    key = f"msg_c{campaign.id}_{recipient.subscription_id}_{recipient.endpoint_id}"
    return derived_message_id(key, int(campaign.created_at.timestamp() * 1000))


def campaign_rows(campaign: Campaign, chunk: Sequence[Recipient]) -> list[NewDelivery]:
    payload: dict[str, object] = {"type": CAMPAIGN_MESSAGE, "campaign_id": campaign.id,
                                  "subject": campaign.subject, "body": campaign.body}
    return [NewDelivery(id=message_id(campaign, r), tenant_id=campaign.tenant_id,
                        endpoint_id=r.endpoint_id, subscription_id=r.subscription_id,
                        campaign_id=campaign.id, priority=BULK, payload=payload)
            for r in chunk]


def plan_fanout(platform: Platform, uow: UnitOfWork, campaign: Campaign,
                chunks: Sequence[Sequence[Recipient]]) -> list[str]:
    """Fix the total and submit the chunk jobs in ``uow`` (the fan-out job's result).
    Dedupe keys per chunk make a second planning a no-op rather than a second campaign."""
    total = sum(len(c) for c in chunks)
    now = platform.clock.now()
    if total == 0:
        uow.campaigns.progress(campaign.id, total=0, status=DONE, finished_at=now)
        return []
    uow.campaigns.progress(campaign.id, total=total, status=FANNING_OUT)
    job_ids = []
    for index, chunk in enumerate(chunks):
        payload = {"campaign_id": campaign.id, "chunk": index,
                   "recipients": [[r.subscription_id, r.endpoint_id] for r in chunk]}
        job = submit(platform, CHUNK_KIND, payload, tenant_id=campaign.tenant_id,
                     dedupe_key=f"campaign:{campaign.id}:chunk:{index}", uow=uow)
        job_ids.append(job.id)

    def dispatch_all() -> None:
        for job_id in job_ids:
            dispatch(platform, job_id)

    uow.on_commit(dispatch_all)
    return job_ids


def write_chunk(platform: Platform, uow: UnitOfWork, campaign: Campaign,
                rows: Sequence[NewDelivery]) -> int:
    """Queue one chunk's rows and count them into the campaign, in ``uow`` (the chunk job's
    result, written once). Returns how many rows were new."""
    added = uow.deliveries.enqueue(rows)
    # The counter counts recipients handled, not rows new: a row that was there already
    # (same derived id) was handled by an earlier run, and the total must still be reached.
    uow.campaigns.progress(campaign.id, enqueued=len(rows))
    # Under PostgreSQL the UPDATE above waits for a concurrent chunk's to commit and then
    # sees its count, so exactly the last chunk reads enqueued == total.
    after = uow.campaigns.get(None, campaign.id)
    if after is not None and after.enqueued >= after.total and after.status != DONE:
        uow.campaigns.progress(campaign.id, status=DONE, finished_at=platform.clock.now())
    # Waking the delivery workers needs no list: they claim due rows by priority.
    announce(platform, uow, [r.id for r in rows[:1]])
    return added
