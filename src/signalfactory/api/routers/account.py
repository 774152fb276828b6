"""The calling tenant: who am I, my quotas, and (admins) my tenant's API keys."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Path, status
from pydantic import BaseModel

from signalfactory.adapters.storage import api_keys as key_store
from signalfactory.api.auth import AdminDep, PrincipalDep
from signalfactory.api.deps import PlatformDep, ReadConnDep
from signalfactory.api.quotas import quota_usage
from signalfactory.api.schemas import AUTH_RESPONSES, Problem
from signalfactory.domain.errors import NotFoundError

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
def get_me(principal: PrincipalDep, platform: PlatformDep, conn: ReadConnDep) -> Me:
    item = platform.rate_limiter.item_for(principal.tier)
    usage = quota_usage(conn, principal)
    return Me(tenant=principal.tenant_name, tier=principal.tier, role=principal.role,
              key_prefix=principal.key_prefix,
              rate_limit=f"{item.amount} per {int(item.get_expiry())} s",
              quotas={k: QuotaUse(**v) for k, v in usage.items()})


def _to_model(record: key_store.KeyRecord) -> ApiKey:
    data = record.as_dict()
    return ApiKey(**{k: data[k] for k in ApiKey.model_fields})


@router.get("/keys", response_model=ApiKeyList,
            summary="List this tenant's API keys by prefix (admin)")
def get_keys(principal: AdminDep, conn: ReadConnDep) -> ApiKeyList:
    items = [_to_model(r) for r in key_store.list_keys(conn, principal.tenant_id)]
    return ApiKeyList(items=items, count=len(items))


@router.delete("/keys/{key_id}", response_model=ApiKey, status_code=status.HTTP_200_OK,
               summary="Revoke one of this tenant's API keys (admin)",
               responses={404: {"model": Problem, "description": "No such key in this tenant"}})
def revoke_key(principal: AdminDep, platform: PlatformDep,
               key_id: int = Path(ge=1, le=2**31 - 1)) -> ApiKey:
    with platform.engine.begin() as conn:
        try:
            record = key_store.resolve_key(conn, str(key_id), tenant_id=principal.tenant_id)
        except NotFoundError:
            # Same answer whether the key is another tenant's or does not exist at all.
            raise NotFoundError(f"this tenant has no API key {key_id}") from None
        key_store.revoke_key(conn, record.id)
        record = key_store.resolve_key(conn, str(key_id), tenant_id=principal.tenant_id)
    return _to_model(record)
