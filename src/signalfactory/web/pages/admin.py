"""Admin: the tenant, its API keys (created through ``POST /api/v1/keys``: shown once;
revoked through ``DELETE /api/v1/keys/{id}``), usage against the tier's quotas, and the
tiers. Admins of the installation's own tenant also see every tenant."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from signalfactory.domain.accounts import TIERS
from signalfactory.domain.api_keys import ROLES
from signalfactory.domain.tenants import DEFAULT_TENANT_ID
from signalfactory.services.accounts.quotas import quota_usage, tier_table
from signalfactory.services.accounts.tenants import list_keys, list_tenants
from signalfactory.web.rendering import render
from signalfactory.web.session import PlatformDep, WebUserDep

router = APIRouter(include_in_schema=False)


@router.get("/admin")
def admin_page(request: Request, user: WebUserDep, platform: PlatformDep) -> Response:
    if not user.can("admin"):
        return render(request, "error.html", {
            "user": user, "active": "admin",
            "message": f"the admin page needs the admin role; you have the "
                       f"{user.principal.role} role"}, status_code=403)
    principal = user.principal
    with platform.database.read(primary=True) as uow:
        keys = list_keys(uow, principal.tenant_id)
        usage = quota_usage(uow, principal)
        tenants = list_tenants(uow) if principal.tenant_id == DEFAULT_TENANT_ID else []
    rates = {}
    for tier in TIERS:
        window = platform.rate_limiter.item_for(tier)
        rates[tier] = f"{window.amount} per {int(window.get_expiry())} s"
    return render(request, "admin.html", {
        "user": user, "active": "admin", "keys": keys, "usage": usage, "roles": ROLES,
        "tiers": tier_table(), "rates": rates, "tenants": tenants})
