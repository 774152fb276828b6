"""The audit log over HTTP (admin role), page by page in ``seq`` order.

Admins of the default tenant (the platform's operators) read every entry, platform-wide ones
(``tenant_id`` null) included; admins of any other tenant read their own tenant's entries
only. Each entry carries its ``prev_hash`` and ``hash``, so a client can check the chain of
what it reads; the whole chain is checked by ``signalfactory audit verify``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from signalfactory.api.auth import AdminDep
from signalfactory.api.deps import PlatformDep
from signalfactory.api.schemas import AUTH_RESPONSES
from signalfactory.domain.audit import AuditEntry
from signalfactory.services.audit import log as audit

router = APIRouter(prefix="/api/v1", tags=["audit"], responses=AUTH_RESPONSES)


class AuditEntryOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "seq": 42, "at": "2026-12-10T09:00:00.000000Z", "tenant_id": 3,
        "actor": "key:7:sf_live_AbCd1234", "action": "api_key.revoked",
        "subject": "api_key:9", "details": {"prefix": "sf_live_XyZw9876", "role": "trader"},
        "prev_hash": "9f2c...", "hash": "1ab4..."}]})

    seq: int
    at: datetime
    tenant_id: int | None
    actor: str
    action: str
    subject: str
    details: dict[str, Any]
    prev_hash: str
    hash: str

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditEntryOut:
        return cls(seq=entry.seq, at=entry.at, tenant_id=entry.tenant_id, actor=entry.actor,
                   action=entry.action, subject=entry.subject, details=entry.details,
                   prev_hash=entry.prev_hash, hash=entry.hash)


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    next_after: int | None = Field(description="Pass as `after` for the next page; null: "
                                               "this was the last page")


@router.get("/audit", response_model=AuditPage,
            summary="Audit log entries (admin): all for the platform's operators, the "
                    "tenant's own for other tenants' admins")
def get_audit(principal: AdminDep, platform: PlatformDep,
              after: int = Query(0, ge=0, le=2**62, description="Entries after this seq"),
              limit: int = Query(100, ge=1, le=audit.MAX_LIST),
              action: str | None = Query(None, max_length=100, pattern=r"^[a-z0-9_.]+$",
                                         description="Only actions starting with this, "
                                                     "e.g. `api_key.` or `kill_switch.`"),
              ) -> AuditPage:
    with platform.database.read() as uow:
        entries = audit.list_entries(uow, after_seq=after, limit=limit + 1,
                                     tenant_id=audit.visible_tenant(principal.tenant_id),
                                     action=action)
    more = len(entries) > limit
    entries = entries[:limit]
    return AuditPage(items=[AuditEntryOut.of(e) for e in entries],
                     next_after=entries[-1].seq if more else None)
