"""The kill switch over HTTP at ``/api/v1/risk/kill-switch``: status (any role), engage,
re-arm and resume (``admin``).

Scopes: ``global`` (id 0) for the platform's operators only (admins of the default tenant);
``tenant`` (the caller's own; the default when no scope is given) and ``bot`` (one of the
caller's bots). Engaging cancels the scope's working orders (and with ``flatten`` closes its
positions); the switch stays engaged until it is re-armed and then resumed: two calls.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from signalfactory.api.auth import AdminDep, Principal, PrincipalDep
from signalfactory.api.deps import PlatformDep
from signalfactory.api.schemas import AUTH_RESPONSES, Problem, RequestModel
from signalfactory.domain.trading.bots import KillSwitch
from signalfactory.domain.trading.records import TradingState
from signalfactory.services.audit.log import visible_tenant
from signalfactory.services.trading import killswitch as service

router = APIRouter(prefix="/api/v1/risk", tags=["risk"], responses=AUTH_RESPONSES)

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such tenant or bot"}}


class ScopeIn(RequestModel):
    scope: Literal["global", "tenant", "bot"] = "tenant"
    scope_id: int | None = Field(default=None, ge=0, le=2**31 - 1,
                                 description="Bot id, tenant id (default: yours), 0 for global")
    reason: str = Field(default="", max_length=500)


class EngageIn(ScopeIn):
    reason: str = Field(min_length=1, max_length=500, description="Why (audited)")
    flatten: bool = Field(default=False, description="Also close the scope's positions")


class SwitchOut(BaseModel):
    scope: str
    scope_id: int
    engaged: bool
    rearmed: bool
    flatten: bool
    changed_at: datetime
    changed_by: str
    reason: str

    @classmethod
    def of(cls, s: KillSwitch) -> SwitchOut:
        return cls(scope=s.scope, scope_id=s.scope_id, engaged=s.engaged, rearmed=s.rearmed,
                   flatten=s.flatten, changed_at=s.changed_at, changed_by=s.changed_by,
                   reason=s.reason)


class StateOut(BaseModel):
    scope: str
    scope_id: int
    state: str
    reason: str
    changed_at: datetime
    changed_by: str

    @classmethod
    def of(cls, s: TradingState) -> StateOut:
        return cls(scope=s.scope, scope_id=s.scope_id, state=s.state, reason=s.reason,
                   changed_at=s.changed_at, changed_by=s.changed_by)


class StatusOut(BaseModel):
    switches: list[SwitchOut]
    states: list[StateOut] = Field(description="Scopes not trading normally (reducing, "
                                               "halted)")


class EngageOut(BaseModel):
    switch: SwitchOut
    changed: bool = Field(description="False: it was engaged already")
    cancelled: int
    not_found: int
    flatten_orders: int
    errors: list[str]


class ResumeOut(BaseModel):
    resumed: str = Field(description="kill-switch, or state (a halted or reducing scope)")


def _scope(body: ScopeIn, principal: Principal) -> tuple[str, int, int | None]:
    scope_id = body.scope_id
    if scope_id is None:
        scope_id = 0 if body.scope == "global" else principal.tenant_id
    return body.scope, scope_id, visible_tenant(principal.tenant_id)


@router.get("/kill-switch", response_model=StatusOut,
            summary="Kill switches and non-active trading states that concern this tenant")
def get_status(principal: PrincipalDep, platform: PlatformDep) -> StatusOut:
    switches, states = service.kill_switches(platform, visible_tenant(principal.tenant_id))
    return StatusOut(switches=[SwitchOut.of(s) for s in switches],
                     states=[StateOut.of(s) for s in states])


@router.post("/kill-switch/engage", response_model=EngageOut, responses=NOT_FOUND,
             summary="Engage: refuse new orders, cancel working ones, optionally flatten")
def engage(body: EngageIn, principal: AdminDep, platform: PlatformDep) -> EngageOut:
    scope, scope_id, owner = _scope(body, principal)
    report = service.engage_kill_switch(platform, scope, scope_id, actor=principal.audit_actor,
                                        reason=body.reason, flatten=body.flatten,
                                        tenant_id=owner)
    sweep = report.sweep
    return EngageOut(switch=SwitchOut.of(report.switch), changed=report.changed,
                     cancelled=sweep.cancelled, not_found=sweep.not_found,
                     flatten_orders=sweep.flatten_orders, errors=sweep.errors)


@router.post("/kill-switch/rearm", response_model=SwitchOut, responses=NOT_FOUND,
             summary="Re-arm an engaged switch (trading stays halted until resume)")
def rearm(body: ScopeIn, principal: AdminDep, platform: PlatformDep) -> SwitchOut:
    scope, scope_id, owner = _scope(body, principal)
    return SwitchOut.of(service.rearm_kill_switch(platform, scope, scope_id,
                                                  actor=principal.audit_actor,
                                                  reason=body.reason, tenant_id=owner))


@router.post("/kill-switch/resume", response_model=ResumeOut, responses=NOT_FOUND,
             summary="Resume trading: release a re-armed switch, or lift a halted state")
def resume(body: ScopeIn, principal: AdminDep, platform: PlatformDep) -> ResumeOut:
    scope, scope_id, owner = _scope(body, principal)
    return ResumeOut(resumed=service.resume_trading(platform, scope, scope_id,
                                                    actor=principal.audit_actor,
                                                    reason=body.reason, tenant_id=owner))
