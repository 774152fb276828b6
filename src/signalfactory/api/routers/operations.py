"""The platform's operating mode at ``/api/v1/ops/read-only``: status (admin) and the
operator's switch (admins of the default tenant: it concerns every tenant).

The switch writes no row to decide (a flag file every process sees), so it works while the
primary database is down, as the key lookup that authorises it does (from the replica).
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from signalfactory.api.auth import AdminDep
from signalfactory.api.deps import PlatformDep
from signalfactory.api.problems import ApiProblem
from signalfactory.api.schemas import AUTH_RESPONSES, RequestModel
from signalfactory.services import read_only as service
from signalfactory.services.audit.log import visible_tenant

router = APIRouter(prefix="/api/v1/ops", tags=["operations"], responses=AUTH_RESPONSES)


class ReadOnlyIn(RequestModel):
    enabled: bool
    reason: str = Field(default="", max_length=service.MAX_REASON,
                        description="Why (required to switch on; audited)")


class ReadOnlyOut(BaseModel):
    read_only: bool
    reason: str | None = Field(description="Why writes are refused: the operator's switch "
                                           "or the primary database unreachable")


def _out(status: service.ReadOnlyStatus) -> ReadOnlyOut:
    return ReadOnlyOut(read_only=status.read_only, reason=status.reason)


@router.get("/read-only", summary="Whether the platform is read-only, and why")
def get_read_only(platform: PlatformDep, principal: AdminDep) -> ReadOnlyOut:
    return _out(service.status(platform))


@router.put("/read-only", summary="Switch the operator's read-only mode on or off")
def put_read_only(body: ReadOnlyIn, platform: PlatformDep, principal: AdminDep) -> ReadOnlyOut:
    if visible_tenant(principal.tenant_id) is not None:
        raise ApiProblem(403, "read-only mode concerns every tenant: only the platform's "
                              "operators (admins of the default tenant) switch it",
                         code="forbidden")
    return _out(service.switch(platform, body.enabled, body.reason,
                               actor=f"key:{principal.key_id}"))
