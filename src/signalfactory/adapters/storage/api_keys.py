"""Tenants and API keys in SQL: the ``AccountRepository`` port."""

from __future__ import annotations

from datetime import datetime
from functools import cache

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from signalfactory.adapters.storage.driver_cursor import fetch_first
from signalfactory.adapters.storage.signal_pages import datetime_io
from signalfactory.adapters.storage.tables import api_keys, tenants
from signalfactory.domain.accounts import (
    KeyRecord,
    NewKeyRow,
    Tenant,
    TenantSummary,
    as_utc,
)
from signalfactory.domain.errors import ConflictError

_KEY_COLUMNS = (api_keys.c.id, api_keys.c.tenant_id, tenants.c.name.label("tenant_name"),
                tenants.c.tier, api_keys.c.role, api_keys.c.prefix, api_keys.c.name,
                api_keys.c.created_at, api_keys.c.revoked_at, api_keys.c.last_used_at)


# Every authenticated request runs this lookup: as driver-level SQL (text built once per
# dialect, run on the driver's cursor, tuples out: driver_cursor.py) it costs well under
# 60 % of the prebuilt select's execution, which went through statement caching, result
# metadata and a mapping per row. The columns and their conversion are ``_KEY_COLUMNS``'
# and ``_key``'s: tests hold the two equal.
_KEY_BY_DIGEST = ("SELECT k.id, k.tenant_id, t.name, t.tier, k.role, k.prefix, k.name, "
                  "k.created_at, k.revoked_at, k.last_used_at FROM api_keys k "
                  "JOIN tenants t ON t.id = k.tenant_id WHERE k.digest = {}")


@cache
def _key_by_digest_sql(dialect: str) -> str:
    return _KEY_BY_DIGEST.format("%(key_digest)s" if dialect == "postgresql" else ":key_digest")


def _utc(value: datetime | None) -> datetime | None:
    return as_utc(value) if value is not None else None


def _key(row: Row[tuple[object, ...]]) -> KeyRecord:
    m = row._mapping
    return KeyRecord(id=int(m["id"]), tenant_id=int(m["tenant_id"]),
                     tenant_name=m["tenant_name"], tier=m["tier"], role=m["role"],
                     prefix=m["prefix"], name=m["name"], created_at=_utc(m["created_at"]),
                     revoked_at=_utc(m["revoked_at"]), last_used_at=_utc(m["last_used_at"]))


class SqlAccountRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # -- tenants -------------------------------------------------------------------------
    def create_tenant(self, name: str, tier: str) -> Tenant:
        if self.tenant_by_name(name) is not None:
            raise ConflictError(f"tenant {name!r} already exists; pick another name")
        tenant_id = self.conn.execute(tenants.insert().values(name=name, tier=tier)
                                      .returning(tenants.c.id)).scalar_one()
        return Tenant(id=int(tenant_id), name=name, tier=tier)

    def list_tenants(self) -> list[TenantSummary]:
        active = (sa.select(sa.func.count()).where(api_keys.c.tenant_id == tenants.c.id,
                                                   api_keys.c.revoked_at.is_(None))
                  .scalar_subquery())
        rows = self.conn.execute(sa.select(tenants.c.id, tenants.c.name, tenants.c.tier,
                                           active.label("active_keys")).order_by(tenants.c.id))
        return [TenantSummary(id=int(r.id), name=r.name, tier=r.tier,
                              active_keys=int(r.active_keys)) for r in rows]

    def tenant_by_name(self, name: str) -> Tenant | None:
        row = self.conn.execute(sa.select(tenants.c.id, tenants.c.name, tenants.c.tier)
                                .where(tenants.c.name == name)).first()
        return Tenant(id=int(row.id), name=row.name, tier=row.tier) if row is not None else None

    def set_tier(self, tenant_id: int, tier: str) -> None:
        self.conn.execute(tenants.update().where(tenants.c.id == tenant_id).values(tier=tier))

    # -- keys ----------------------------------------------------------------------------
    def create_key(self, row: NewKeyRow) -> int:
        return int(self.conn.execute(api_keys.insert().values(
            tenant_id=row.tenant_id, prefix=row.prefix, digest=row.digest, role=row.role,
            name=row.name, created_at=row.created_at).returning(api_keys.c.id)).scalar_one())

    def _keys(self) -> sa.Select[tuple[object, ...]]:
        return sa.select(*_KEY_COLUMNS).join(tenants, tenants.c.id == api_keys.c.tenant_id)

    def list_keys(self, tenant_id: int | None = None) -> list[KeyRecord]:
        query = self._keys()
        if tenant_id is not None:
            query = query.where(api_keys.c.tenant_id == tenant_id)
        return [_key(r) for r in self.conn.execute(query.order_by(api_keys.c.id))]

    def key_by_digest(self, key_digest: str) -> KeyRecord | None:
        dialect = self.conn.dialect
        row = fetch_first(self.conn, _key_by_digest_sql(dialect.name),
                          {"key_digest": key_digest})
        if row is None:
            return None
        _bind, read = datetime_io(dialect)

        def when(value: object) -> datetime | None:
            if value is None:
                return None
            return as_utc(read(value) if read is not None else value)  # type: ignore[arg-type]

        return KeyRecord(id=int(row[0]), tenant_id=int(row[1]), tenant_name=row[2],
                         tier=row[3], role=row[4], prefix=row[5], name=row[6],
                         created_at=when(row[7]), revoked_at=when(row[8]),
                         last_used_at=when(row[9]))

    def keys_matching(self, *, key_id: int | None = None, prefix: str | None = None,
                      tenant_id: int | None = None) -> list[KeyRecord]:
        query = self._keys()
        if tenant_id is not None:
            query = query.where(api_keys.c.tenant_id == tenant_id)
        if key_id is not None:
            query = query.where(api_keys.c.id == key_id)
        if prefix is not None:
            query = query.where(api_keys.c.prefix.startswith(prefix, autoescape=True))
        return [_key(r) for r in self.conn.execute(query.order_by(api_keys.c.id))]

    def revoke_key(self, key_id: int, now: datetime) -> bool:
        result = self.conn.execute(api_keys.update()
                                   .where(api_keys.c.id == key_id,
                                          api_keys.c.revoked_at.is_(None))
                                   .values(revoked_at=now))
        return result.rowcount == 1

    def touch_key(self, key_id: int, now: datetime) -> None:
        self.conn.execute(api_keys.update().where(api_keys.c.id == key_id)
                          .values(last_used_at=now))
