"""A subscription's delivery controls: its endpoints, quiet hours in its time zone, a
throttle, digest mode and a message template."""

from __future__ import annotations

from signalfactory.domain.delivery import DeliveryControls
from signalfactory.domain.delivery_policy import (
    MAX_DIGEST_MINUTES,
    MAX_TEMPLATE_CHARS,
    validate_controls,
)
from signalfactory.domain.errors import BadInputError, NotFoundError
from signalfactory.services.platform import Platform
from signalfactory.services.ports import UnitOfWork
from signalfactory.services.streaming.subscriptions import get_subscription

__all__ = ["MAX_DIGEST_MINUTES", "MAX_TEMPLATE_CHARS", "check_controls", "get_controls",
           "set_controls"]

MAX_ENDPOINTS = 50


def check_controls(controls: DeliveryControls) -> DeliveryControls:
    """``controls`` when valid (the policy's rules, and a bound on linked endpoints); else
    BadInputError naming every field to fix."""
    if len(set(controls.endpoint_ids)) > MAX_ENDPOINTS:
        raise BadInputError(f"endpoint_ids: at most {MAX_ENDPOINTS}",
                            source="delivery controls")
    return validate_controls(controls)


def get_controls(uow: UnitOfWork, tenant_id: int, subscription_id: int) -> DeliveryControls:
    get_subscription(uow, tenant_id, subscription_id)  # another tenant's: 404
    return uow.endpoints.controls(subscription_id)


def set_controls(platform: Platform, tenant_id: int, subscription_id: int,
                 controls: DeliveryControls) -> DeliveryControls:
    """Replace the subscription's delivery controls; every endpoint must be the tenant's."""
    checked = check_controls(controls)
    with platform.database.write() as uow:
        get_subscription(uow, tenant_id, subscription_id)
        unknown = sorted({e for e in checked.endpoint_ids
                          if not 0 < e < 2**31 or uow.endpoints.get(tenant_id, e) is None})
        if unknown:
            raise NotFoundError(f"no endpoint {', '.join(map(str, unknown))}; list yours "
                                "with GET /api/v1/endpoints")
        uow.endpoints.set_controls(subscription_id, checked)
        return uow.endpoints.controls(subscription_id)
