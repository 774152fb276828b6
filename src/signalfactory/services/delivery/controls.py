"""A subscription's delivery controls: its endpoints, quiet hours in its time zone, a
throttle, digest mode and a message template."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from signalfactory.domain.delivery import DeliveryControls
from signalfactory.domain.errors import BadInputError, NotFoundError
from signalfactory.services.platform import Platform
from signalfactory.services.ports import UnitOfWork
from signalfactory.services.streaming.subscriptions import get_subscription

MINUTES_PER_DAY = 1440
MAX_TEMPLATE_CHARS = 20_000
MAX_DIGEST_MINUTES = 10_080  # a week
MAX_ENDPOINTS = 50


def check_controls(controls: DeliveryControls) -> DeliveryControls:
    """``controls`` when valid; else BadInputError naming every field to fix.

    The policy's ``domain.delivery_policy.validate_controls`` (branch dlv/policy) is the
    fuller check; once merged it replaces this.
    """
    problems: list[str] = []
    try:
        if not controls.timezone or len(controls.timezone) > 64:
            raise ValueError(controls.timezone)
        ZoneInfo(controls.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"timezone: {controls.timezone!r} is not an IANA time zone "
                        "(e.g. Europe/Paris, America/New_York, UTC)")
    if (controls.quiet_start is None) != (controls.quiet_end is None):
        problems.append("quiet hours: set both quiet_start and quiet_end, or neither")
    for field, value in (("quiet_start", controls.quiet_start),
                         ("quiet_end", controls.quiet_end)):
        if value is not None and not 0 <= value < MINUTES_PER_DAY:
            problems.append(f"{field}: minutes after local midnight, 0..{MINUTES_PER_DAY - 1}")
    if controls.quiet_start is not None and controls.quiet_start == controls.quiet_end:
        problems.append("quiet_end: must differ from quiet_start; omit both for no quiet "
                        "hours")
    if controls.max_per_hour is not None and controls.max_per_hour < 1:
        problems.append("max_per_hour: at least 1; omit it for no limit")
    if controls.digest_minutes is not None and not (
            1 <= controls.digest_minutes <= MAX_DIGEST_MINUTES):
        problems.append(f"digest_minutes: 1..{MAX_DIGEST_MINUTES}")
    if controls.template is not None and len(controls.template) > MAX_TEMPLATE_CHARS:
        problems.append(f"template: {len(controls.template)} characters, at most "
                        f"{MAX_TEMPLATE_CHARS}; shorten it")
    if len(set(controls.endpoint_ids)) > MAX_ENDPOINTS:
        problems.append(f"endpoint_ids: at most {MAX_ENDPOINTS}")
    if problems:
        raise BadInputError("; ".join(problems), source="delivery controls")
    return controls


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
                          if uow.endpoints.get(tenant_id, e) is None})
        if unknown:
            raise NotFoundError(f"no endpoint {', '.join(map(str, unknown))}; list yours "
                                "with GET /api/v1/endpoints")
        uow.endpoints.set_controls(subscription_id, checked)
        return uow.endpoints.controls(subscription_id)
