"""Deliveries: endpoints (add, test, enable/disable, remove), deliveries with their attempts,
the dead-letter queue with replay, and campaigns. Every change goes through the API."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from signalfactory.domain.delivery import DEAD, DELIVERY_STATUSES
from signalfactory.domain.errors import BadInputError
from signalfactory.services.delivery import campaign_records, records
from signalfactory.services.delivery.endpoints import list_endpoints
from signalfactory.web.rendering import render
from signalfactory.web.session import PlatformDep, WebUserDep

router = APIRouter(include_in_schema=False)
SHOWN = 100


@router.get("/deliveries")
def deliveries_page(request: Request, user: WebUserDep, platform: PlatformDep,
                    status: Annotated[str, Query(max_length=16)] = "",
                    endpoint: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None
                    ) -> Response:
    tenant = user.principal.tenant_id
    status = status if status in DELIVERY_STATUSES else ""
    with platform.database.read() as uow:
        endpoints = list_endpoints(uow, tenant)
        items = records.find_deliveries(uow, tenant, status=status or None,
                                        endpoint_id=endpoint, limit=SHOWN)
        dead = records.find_deliveries(uow, tenant, status=DEAD, limit=SHOWN)
        campaigns = (campaign_records.list_campaigns(uow, tenant)
                     if user.can("admin") else [])
    names = {e.id: e.name for e in endpoints}
    return render(request, "deliveries.html", {
        "user": user, "active": "deliveries", "endpoints": endpoints, "items": items,
        "dead": dead, "names": names, "statuses": DELIVERY_STATUSES, "status": status,
        "endpoint": endpoint, "campaigns": campaigns,
        "delivery_key": platform.secret_box is not None})


@router.get("/deliveries/{delivery_id}")
def delivery_page(request: Request, user: WebUserDep, platform: PlatformDep,
                  delivery_id: Annotated[str, Path(max_length=40,
                                                   pattern=r"^[A-Za-z0-9_-]+$")]) -> Response:
    try:
        with platform.database.read() as uow:
            found = records.get_delivery(uow, user.principal.tenant_id, delivery_id)
    except BadInputError as exc:
        return render(request, "error.html", {"user": user, "active": "deliveries",
                                              "message": str(exc)}, status_code=404)
    return render(request, "delivery.html", {"user": user, "active": "deliveries",
                                             "d": found.delivery, "attempts": found.attempts})
