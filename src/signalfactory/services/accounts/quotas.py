"""Tier quotas: how many strategies and subscriptions a tenant may hold, and how many scans and
backtests it may start per UTC day.

Call ``enforce_quota(uow, principal, kind)`` inside the unit of work that creates the
resource: a count quota that is full raises ``QuotaExceededError`` (the API answers 403;
deleting something frees room), a daily quota that is used up raises it with
``retry_after`` (429 with ``Retry-After`` until UTC midnight). Daily use is counted in the
same unit of work, so a request that fails and rolls back does not use quota.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from signalfactory.domain.accounts import Principal, QuotaExceededError
from signalfactory.observability.metrics import count_refusal
from signalfactory.services.ports import UnitOfWork


@dataclass(frozen=True)
class TierQuotas:
    """None means unlimited."""

    strategies: int | None
    subscriptions: int | None
    scans_per_day: int | None
    backtests_per_day: int | None


TIER_QUOTAS: dict[str, TierQuotas] = {
    "free": TierQuotas(strategies=3, subscriptions=2, scans_per_day=20, backtests_per_day=10),
    "premium": TierQuotas(strategies=50, subscriptions=25, scans_per_day=500,
                          backtests_per_day=200),
    "enterprise": TierQuotas(strategies=None, subscriptions=None, scans_per_day=None,
                             backtests_per_day=None),
}

#: what a tenant holds, counted by ``UsageRepository.count_held``
COUNT_KINDS: tuple[str, ...] = ("strategies", "subscriptions")
#: what a tenant starts, counted per UTC day; the name of its ``TierQuotas`` field
DAILY_KINDS: dict[str, str] = {"scans": "scans_per_day", "backtests": "backtests_per_day"}
_SINGULAR = {"strategies": "strategy", "subscriptions": "subscription"}


@dataclass(frozen=True)
class QuotaUse:
    limit: int | None
    used: int


def quotas_for(tier: str) -> TierQuotas:
    return TIER_QUOTAS.get(tier, TIER_QUOTAS["free"])


def limit_for(tier: str, kind: str) -> int | None:
    quotas = quotas_for(tier)
    if kind in DAILY_KINDS:
        value: int | None = getattr(quotas, DAILY_KINDS[kind])
        return value
    if kind in COUNT_KINDS:
        value = getattr(quotas, kind)
        return value
    known = ", ".join([*COUNT_KINDS, *DAILY_KINDS])
    raise ValueError(f"unknown quota kind {kind!r}; known: {known}")


def seconds_until_utc_midnight(now: datetime | None = None) -> int:
    now = now or datetime.now(UTC)
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
    return max(1, int((midnight - now).total_seconds() + 0.999))


def enforce_quota(uow: UnitOfWork, principal: Principal, kind: str, *,
                  current: int | None = None, now: datetime | None = None) -> None:
    """Refuse (``QuotaExceededError``) when the tenant's tier has no room for one more
    ``kind``: a count quota ("strategies", "subscriptions") or a daily one ("scans",
    "backtests"). For count quotas ``current`` overrides the stored count. Daily quotas are
    consumed by this call (rolled back with the caller's unit of work)."""
    limit = limit_for(principal.tier, kind)
    if kind in DAILY_KINDS:
        _take_daily(uow, principal, kind, limit, now or datetime.now(UTC))
        return
    if limit is None:
        return
    uow.usage.lock_tenant(principal.tenant_id)
    if current is None:
        current = uow.usage.count_held(principal.tenant_id, kind)
    if current >= limit:
        count_refusal("quota", principal.tenant_name, principal.key_prefix)
        noun = kind if limit != 1 else _SINGULAR[kind]
        raise QuotaExceededError(f"{principal.tier} tier allows {limit} {noun}; delete one "
                                 "or upgrade", quota=kind, limit=limit, used=current,
                                 tier=principal.tier)


def _take_daily(uow: UnitOfWork, principal: Principal, kind: str, limit: int | None,
                now: datetime) -> None:
    day = now.astimezone(UTC).date()
    if uow.usage.take_daily(principal.tenant_id, kind, day, limit):
        return
    used = uow.usage.daily_used(principal.tenant_id, kind, day)
    retry = seconds_until_utc_midnight(now)
    count_refusal("daily_quota", principal.tenant_name, principal.key_prefix)
    raise QuotaExceededError(f"{principal.tier} tier allows {limit} {kind} per day and "
                             f"today's are used; retry after 00:00 UTC (in {retry} s) or "
                             "upgrade", quota=kind, limit=limit, used=used,
                             tier=principal.tier, retry_after=retry)


def quota_usage(uow: UnitOfWork, principal: Principal,
                now: datetime | None = None) -> dict[str, QuotaUse]:
    """Limits and current use of every quota kind (for GET /api/v1/me): the count kinds by
    name, the daily ones as ``<kind>_today``."""
    day = (now or datetime.now(UTC)).astimezone(UTC).date()
    usage = {kind: QuotaUse(limit_for(principal.tier, kind),
                            uow.usage.count_held(principal.tenant_id, kind))
             for kind in COUNT_KINDS}
    for kind in DAILY_KINDS:
        usage[f"{kind}_today"] = QuotaUse(limit_for(principal.tier, kind),
                                          uow.usage.daily_used(principal.tenant_id, kind, day))
    return usage


def tier_table() -> dict[str, dict[str, int | None]]:
    return {tier: asdict(q) for tier, q in TIER_QUOTAS.items()}
