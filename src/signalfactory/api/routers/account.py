"""The calling tenant: who am I, my quotas, and (admins) my tenant's API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Path, Response, status
from pydantic import BaseModel, Field

from signalfactory.api.auth import AdminDep, PrincipalDep
from signalfactory.api.deps import PlatformDep
from signalfactory.api.schemas import AUTH_RESPONSES, Problem, RequestModel
from signalfactory.domain.accounts import KeyRecord
from signalfactory.domain.errors import NotFoundError
from signalfactory.services.accounts.quotas import quota_usage
from signalfactory.services.accounts.tenants import create_key, list_keys, resolve_key
from signalfactory.services.accounts.tenants import revoke_key as revoke

router = APIRouter(prefix="/api/v1", tags=["account"], responses=AUTH_RESPONSES)


class QuotaUse(BaseModel):
    limit: int | None
    used: int | None


class Me(BaseModel):
    tenant: str
    tier: str
    role: str
    key_prefix: str | None
    rate_limit: str
    quotas: dict[str, QuotaUse]


class ApiKey(BaseModel):
    id: int
    prefix: str
    role: str
    name: str
    status: str
    created_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiKeyList(BaseModel):
    items: list[ApiKey]
    count: int


@router.get("/me", response_model=Me, summary="The calling key: tenant, tier, role, quotas")
def get_me(principal: PrincipalDep, platform: PlatformDep) -> Me:
    item = platform.rate_limiter.item_for(principal.tier)
    with platform.database.read() as uow:
        usage = quota_usage(uow, principal)
    return Me(tenant=principal.tenant_name, tier=principal.tier, role=principal.role,
              key_prefix=principal.key_prefix,
              rate_limit=f"{item.amount} per {int(item.get_expiry())} s",
              quotas={k: QuotaUse(limit=v.limit, used=v.used) for k, v in usage.items()})


def _to_model(record: KeyRecord) -> ApiKey:
    return ApiKey(id=record.id, prefix=record.prefix, role=record.role, name=record.name,
                  status=record.status, created_at=record.created_at,
                  revoked_at=record.revoked_at, last_used_at=record.last_used_at)


@router.get("/keys", response_model=ApiKeyList,
            summary="List this tenant's API keys by prefix (admin)")
def get_keys(principal: AdminDep, platform: PlatformDep) -> ApiKeyList:
    with platform.database.read() as uow:
        items = [_to_model(r) for r in list_keys(uow, principal.tenant_id)]
    return ApiKeyList(items=items, count=len(items))


class ApiKeyIn(RequestModel):
    role: Literal["viewer", "trader", "admin"]
    name: str = Field(default="", max_length=100, pattern=r"^[^\x00]*$",
                      examples=["grafana dashboard"])


class NewApiKey(ApiKey):
    key: str = Field(description="The key itself: shown in this answer only, never again")


@router.post("/keys", response_model=NewApiKey, status_code=201,
             summary="Create an API key in this tenant (admin); the key is shown once")
def post_key(body: ApiKeyIn, principal: AdminDep, platform: PlatformDep,
             response: Response) -> NewApiKey:
    response.headers["Cache-Control"] = "no-store"
    with platform.database.write() as uow:
        new, key_id = create_key(uow, principal.tenant_id, body.role, body.name.strip(),
                                 now=platform.clock.now())
        record = resolve_key(uow, str(key_id), tenant_id=principal.tenant_id)
    return NewApiKey(**_to_model(record).model_dump(), key=new.secret)


@router.delete("/keys/{key_id}", response_model=ApiKey, status_code=status.HTTP_200_OK,
               summary="Revoke one of this tenant's API keys (admin)",
               responses={404: {"model": Problem, "description": "No such key in this tenant"}})
def revoke_key(principal: AdminDep, platform: PlatformDep,
               key_id: int = Path(ge=1, le=2**31 - 1)) -> ApiKey:
    with platform.database.write() as uow:
        try:
            record = resolve_key(uow, str(key_id), tenant_id=principal.tenant_id)
        except NotFoundError:
            # Same answer whether the key is another tenant's or does not exist at all.
            raise NotFoundError(f"this tenant has no API key {key_id}") from None
        revoke(uow, record.id, now=platform.clock.now(), actor=principal.audit_actor)
        record = resolve_key(uow, str(key_id), tenant_id=principal.tenant_id)
    return _to_model(record)
