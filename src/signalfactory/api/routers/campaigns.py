"""Campaigns over HTTP: one message to every subscriber of the tenant (or some
subscriptions), fanned out in chunks at low priority; progress as a counter. Admin role."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from signalfactory.api.auth import AdminDep
from signalfactory.api.deps import PlatformDep
from signalfactory.api.schemas import AUTH_RESPONSES, Problem, RequestModel
from signalfactory.domain.delivery import Campaign, NewCampaign
from signalfactory.services.delivery import campaign_records as service
from signalfactory.services.delivery.campaigns import start_campaign

router = APIRouter(prefix="/api/v1", tags=["delivery"], responses=AUTH_RESPONSES)

CAMPAIGN_ID = Path(ge=1, le=2**31 - 1)
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such campaign in this tenant"}}


class CampaignIn(RequestModel):
    subject: str = Field(min_length=1, max_length=service.MAX_SUBJECT_CHARS,
                         examples=["Daily report"])
    body: str = Field(min_length=1, max_length=service.MAX_BODY_CHARS)
    subscription_ids: list[Annotated[int, Field(ge=1, le=2**31 - 1)]] = Field(
                                        default_factory=list,
                                        max_length=service.MAX_SUBSCRIPTIONS,
                                        description="Empty: every subscription")


class CampaignOut(BaseModel):
    id: int
    subject: str
    body: str
    subscription_ids: list[int]
    status: str = Field(description="pending | fanning_out | done")
    total: int = Field(description="Recipients (endpoint deliveries) to enqueue")
    enqueued: int
    progress: float = Field(ge=0, le=1)
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, c: Campaign) -> CampaignOut:
        progress = 1.0 if c.status == "done" else (
            min(1.0, c.enqueued / c.total) if c.total else 0.0)
        return cls(id=c.id, subject=c.subject, body=c.body,
                   subscription_ids=list(c.subscription_ids), status=c.status, total=c.total,
                   enqueued=c.enqueued, progress=progress, created_at=c.created_at,
                   finished_at=c.finished_at)


class CampaignList(BaseModel):
    items: list[CampaignOut]


@router.post("/campaigns", response_model=CampaignOut, status_code=202,
             summary="Send a message to every subscriber (or these subscriptions)",
             responses={404: {"model": Problem, "description": "No such subscription"}})
def post_campaign(body: CampaignIn, principal: AdminDep, platform: PlatformDep) -> CampaignOut:
    campaign = start_campaign(platform, principal.tenant_id, NewCampaign(
        tenant_id=principal.tenant_id, subject=body.subject, body=body.body,
        subscription_ids=tuple(body.subscription_ids)))
    return CampaignOut.of(campaign)


@router.get("/campaigns", response_model=CampaignList, summary="This tenant's campaigns")
def list_campaigns(principal: AdminDep, platform: PlatformDep) -> CampaignList:
    with platform.database.read() as uow:
        items = service.list_campaigns(uow, principal.tenant_id)
    return CampaignList(items=[CampaignOut.of(c) for c in items])


@router.get("/campaigns/{campaign_id}", response_model=CampaignOut, responses=NOT_FOUND,
            summary="One campaign with its progress")
def get_campaign(principal: AdminDep, platform: PlatformDep,
                 campaign_id: int = CAMPAIGN_ID) -> CampaignOut:
    with platform.database.read() as uow:
        return CampaignOut.of(service.get_campaign(uow, principal.tenant_id, campaign_id))
