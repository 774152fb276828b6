"""Tier quotas: how many strategies and subscriptions a tenant may hold, and how many scans and
backtests it may start per UTC day.

Routers call ``enforce_quota(conn, principal, kind)`` inside the transaction that creates the
resource: a count quota that is full is a 403 (deleting something frees room), a daily quota
that is used up is a 429 with ``Retry-After`` until UTC midnight. Daily use is counted in the
same transaction, so a request that fails and rolls back does not use quota.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from signalfactory.adapters.storage.tables import strategies, tenants, usage_counters
from signalfactory.api.auth import API_REFUSALS, Principal
from signalfactory.api.problems import ApiProblem


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

# kind -> how many such resources a tenant holds now. Routers for new resource types add
# theirs with ``register_counter`` (subscriptions arrive with the live stream).
Counter = Callable[[Connection, int], int]
_COUNTERS: dict[str, Counter] = {}
_SINGULAR = {"strategies": "strategy", "subscriptions": "subscription"}
DAILY_KINDS: dict[str, str] = {"scans": "scans_per_day", "backtests": "backtests_per_day"}
COUNT_KINDS: tuple[str, ...] = ("strategies", "subscriptions")


def register_counter(kind: str, counter: Counter) -> None:
    if kind not in COUNT_KINDS:
        raise ValueError(f"{kind!r} is not a count quota; known: {', '.join(COUNT_KINDS)}")
    _COUNTERS[kind] = counter


def _count_strategies(conn: Connection, tenant_id: int) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(strategies).where(
        strategies.c.tenant_id == tenant_id, strategies.c.builtin.is_(sa.false()))).scalar_one())


register_counter("strategies", _count_strategies)


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


def enforce_quota(conn: Connection, principal: Principal, kind: str, *,
                  current: int | None = None, now: datetime | None = None) -> None:
    """Refuse (403 or 429) when the tenant's tier has no room for one more ``kind``.

    ``kind`` is a count quota ("strategies", "subscriptions") or a daily one ("scans",
    "backtests"). For count quotas ``current`` overrides the registered counter. Daily quotas
    are consumed by this call (rolled back with the caller's transaction).
    """
    limit = limit_for(principal.tier, kind)
    if kind in DAILY_KINDS:
        _consume_daily(conn, principal, kind, limit, now or datetime.now(UTC))
        return
    if limit is None:
        return
    # Serialise concurrent creations for one tenant on PostgreSQL so two requests cannot both
    # take the last slot; SQLite already serialises writers.
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(tenants.c.id).where(tenants.c.id == principal.tenant_id)
                     .with_for_update())
    if current is None:
        counter = _COUNTERS.get(kind)
        if counter is None:
            raise ValueError(f"no counter registered for quota {kind!r}; pass current=")
        current = counter(conn, principal.tenant_id)
    if current >= limit:
        API_REFUSALS.labels("quota").inc()
        noun = kind if limit != 1 else _SINGULAR[kind]
        raise ApiProblem(403, f"{principal.tier} tier allows {limit} {noun}; delete one or "
                              f"upgrade", code="quota-exceeded", quota=kind, limit=limit,
                         used=current, tier=principal.tier)


def _consume_daily(conn: Connection, principal: Principal, kind: str, limit: int | None,
                   now: datetime) -> None:
    day = now.astimezone(UTC).date()
    insert = _dialect_insert(conn)
    table = usage_counters
    stmt = insert(table).values(tenant_id=principal.tenant_id, kind=kind, day=day, count=1)
    update_where = None if limit is None else table.c.count < limit
    stmt = stmt.on_conflict_do_update(index_elements=["tenant_id", "kind", "day"],
                                      set_={"count": table.c.count + 1}, where=update_where)
    if limit is not None and limit <= 0:
        used = _daily_used(conn, principal.tenant_id, kind, day)
    else:
        row = conn.execute(stmt.returning(table.c.count)).first()
        if row is not None:
            return
        used = _daily_used(conn, principal.tenant_id, kind, day)
    retry = seconds_until_utc_midnight(now)
    API_REFUSALS.labels("daily_quota").inc()
    raise ApiProblem(429, f"{principal.tier} tier allows {limit} {kind} per day and today's "
                          f"are used; retry after 00:00 UTC (in {retry} s) or upgrade",
                     code="quota-exceeded", headers={"Retry-After": str(retry)}, quota=kind,
                     limit=limit, used=used, tier=principal.tier)


def _dialect_insert(conn: Connection) -> Any:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


def _daily_used(conn: Connection, tenant_id: int, kind: str, day: date) -> int:
    value = conn.execute(sa.select(usage_counters.c.count).where(
        usage_counters.c.tenant_id == tenant_id, usage_counters.c.kind == kind,
        usage_counters.c.day == day)).scalar()
    return int(value or 0)


def quota_usage(conn: Connection, principal: Principal,
                now: datetime | None = None) -> dict[str, dict[str, int | None]]:
    """Limits and current use for every quota kind (for GET /api/v1/me)."""
    day = (now or datetime.now(UTC)).astimezone(UTC).date()
    usage: dict[str, dict[str, int | None]] = {}
    for kind in COUNT_KINDS:
        counter = _COUNTERS.get(kind)
        used = counter(conn, principal.tenant_id) if counter else None
        usage[kind] = {"limit": limit_for(principal.tier, kind), "used": used}
    for kind in DAILY_KINDS:
        usage[f"{kind}_today"] = {"limit": limit_for(principal.tier, kind),
                                  "used": _daily_used(conn, principal.tenant_id, kind, day)}
    return usage


def tier_table() -> dict[str, dict[str, Any]]:
    return {tier: asdict(q) for tier, q in TIER_QUOTAS.items()}
