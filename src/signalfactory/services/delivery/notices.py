"""Notices to a tenant's subscribers from inside another unit of work: a failed scheduled
operation tells the operators' tenant through the same channels a campaign uses.

The campaign and its fan-out job are written in the caller's unit of work, so a notice exists
exactly when the event it reports was committed; the fan-out is announced after the commit
(and found by the workers' polling or the sweep if that announcement is lost).
"""

from __future__ import annotations

from signalfactory.domain.delivery import Campaign
from signalfactory.domain.errors import NotFoundError
from signalfactory.services.delivery.campaign_records import MAX_BODY_CHARS, check_campaign
from signalfactory.services.delivery.campaigns import CHUNK_SIZE, FANOUT_KIND
from signalfactory.services.jobs.registry import dispatch, submit
from signalfactory.services.platform import Platform
from signalfactory.services.ports import UnitOfWork


def queue_notice(platform: Platform, uow: UnitOfWork, tenant_id: int, subject: str,
                 body: str, *, dedupe_key: str) -> Campaign:
    """Store a campaign to every subscriber of ``tenant_id`` and its fan-out job in ``uow``.
    ``dedupe_key`` makes a repeated notice of the same event one fan-out. Raises
    NotFoundError, having written nothing, when there is no such tenant."""
    if not any(t.id == tenant_id for t in uow.accounts.list_tenants()):
        raise NotFoundError(f"no tenant {tenant_id} to send a notice to")
    if len(body) > MAX_BODY_CHARS:
        body = body[: MAX_BODY_CHARS - 1] + "…"
    campaign = uow.campaigns.add(check_campaign(uow, tenant_id, subject, body))
    job = submit(platform, FANOUT_KIND, {"campaign_id": campaign.id, "chunk_size": CHUNK_SIZE},
                 tenant_id=tenant_id, dedupe_key=dedupe_key, uow=uow)
    uow.on_commit(lambda: dispatch(platform, job.id))
    return campaign
