"""Job kinds of delivery: a campaign's fan-out and its chunks (see ``campaigns``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from signalfactory.domain.delivery import Campaign
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.jobs import JsonObject
from signalfactory.services.delivery.campaigns import (
    CHUNK_KIND,
    DONE,
    FANOUT_KIND,
    Recipient,
    campaign_rows,
    chunked,
    plan_fanout,
    recipients,
    write_chunk,
)
from signalfactory.services.jobs.payloads import parse_payload
from signalfactory.services.jobs.registry import TaskContext, register_task
from signalfactory.services.ports import UnitOfWork


class FanoutPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    campaign_id: int = Field(ge=1)
    chunk_size: int = Field(default=1000, ge=1, le=100_000)


class ChunkPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    campaign_id: int = Field(ge=1)
    chunk: int = Field(ge=0)
    recipients: list[tuple[int, int]] = Field(max_length=100_000)


def _campaign(ctx: TaskContext, campaign_id: int) -> Campaign:
    with ctx.platform.database.read(primary=True) as uow:
        campaign = uow.campaigns.get(ctx.tenant_id, campaign_id)
    if campaign is None:  # deleted with its tenant, or a hand-made payload: no retry helps
        raise BadInputError(f"no campaign {campaign_id} for tenant {ctx.tenant_id}")
    return campaign


def fanout_task(ctx: TaskContext, payload: JsonObject) -> JsonObject:
    """Fix the recipients and submit one chunk job per slice of them."""
    args = parse_payload(FanoutPayload, payload, FANOUT_KIND)
    campaign = _campaign(ctx, args.campaign_id)
    if campaign.status == DONE:
        return {"campaign_id": campaign.id, "total": campaign.total, "chunks": 0}
    with ctx.platform.database.read(primary=True) as uow:
        chunks = chunked(recipients(uow, campaign), args.chunk_size)
    ctx.progress(0.5)

    def write(uow: UnitOfWork) -> None:
        plan_fanout(ctx.platform, uow, campaign, chunks)

    ctx.on_commit(write)
    return {"campaign_id": campaign.id, "total": sum(len(c) for c in chunks),
            "chunks": len(chunks)}


def chunk_task(ctx: TaskContext, payload: JsonObject) -> JsonObject:
    """Queue one slice's outbox rows and count them into the campaign, exactly once."""
    args = parse_payload(ChunkPayload, payload, CHUNK_KIND)
    campaign = _campaign(ctx, args.campaign_id)
    rows = campaign_rows(campaign, [Recipient(s, e) for s, e in args.recipients])
    ctx.progress(0.5)
    added: list[int] = []

    def write(uow: UnitOfWork) -> None:
        added.append(write_chunk(ctx.platform, uow, campaign, rows))

    ctx.on_commit(write)
    return {"campaign_id": campaign.id, "chunk": args.chunk, "rows": len(rows)}


register_task(FANOUT_KIND, fanout_task)
register_task(CHUNK_KIND, chunk_task)
