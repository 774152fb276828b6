"""Tenants and API keys: create, list, revoke, look up by digest, record last use."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from signalfactory.adapters.storage.tables import api_keys, tenants
from signalfactory.domain.api_keys import (
    KEY_MARKER,
    PREFIX_LENGTH,
    ROLES,
    NewKey,
    generate_key,
)
from signalfactory.domain.errors import BadInputError, ConflictError, NotFoundError

TIERS: tuple[str, ...] = ("free", "premium", "enterprise")
# last_used_at is written at most this often per key, so a busy key costs one write a minute.
LAST_USED_RESOLUTION = timedelta(seconds=60)


@dataclass(frozen=True)
class KeyRecord:
    """An API key row joined with its tenant (what authentication needs)."""

    id: int
    tenant_id: int
    tenant_name: str
    tier: str
    role: str
    prefix: str
    name: str
    created_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return _aware(value).isoformat() if value is not None else None

        return {"id": self.id, "tenant": self.tenant_name, "tenant_id": self.tenant_id,
                "prefix": self.prefix, "role": self.role, "name": self.name,
                "created_at": iso(self.created_at), "revoked_at": iso(self.revoked_at),
                "last_used_at": iso(self.last_used_at),
                "status": "revoked" if self.revoked_at else "active"}


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything we store is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _now() -> datetime:
    return datetime.now(UTC)


_KEY_COLUMNS = (api_keys.c.id, api_keys.c.tenant_id, tenants.c.name.label("tenant_name"),
                tenants.c.tier, api_keys.c.role, api_keys.c.prefix, api_keys.c.name,
                api_keys.c.created_at, api_keys.c.revoked_at, api_keys.c.last_used_at)


def _record(row: Any) -> KeyRecord:
    return KeyRecord(**row._mapping)


# -- tenants --------------------------------------------------------------------------------

def validate_tier(tier: str) -> str:
    if tier not in TIERS:
        raise BadInputError(f"tier {tier!r} is not known; use one of {', '.join(TIERS)}")
    return tier


def create_tenant(conn: Connection, name: str, tier: str = "free") -> dict[str, Any]:
    name = name.strip()
    if not name or len(name) > 100:
        raise BadInputError("a tenant name must have 1 to 100 characters")
    validate_tier(tier)
    if conn.execute(sa.select(tenants.c.id).where(tenants.c.name == name)).first():
        raise ConflictError(f"tenant {name!r} already exists; pick another name")
    tenant_id = conn.execute(tenants.insert().values(name=name, tier=tier)
                             .returning(tenants.c.id)).scalar_one()
    return {"id": tenant_id, "name": name, "tier": tier}


def list_tenants(conn: Connection) -> list[dict[str, Any]]:
    active = (sa.select(sa.func.count()).where(api_keys.c.tenant_id == tenants.c.id,
                                               api_keys.c.revoked_at.is_(None))
              .scalar_subquery())
    rows = conn.execute(sa.select(tenants.c.id, tenants.c.name, tenants.c.tier,
                                  active.label("active_keys")).order_by(tenants.c.id))
    return [dict(r._mapping) for r in rows]


def tenant_by_name(conn: Connection, name: str) -> dict[str, Any]:
    row = conn.execute(sa.select(tenants.c.id, tenants.c.name, tenants.c.tier)
                       .where(tenants.c.name == name)).first()
    if row is None:
        raise NotFoundError(f"tenant {name!r} does not exist; create it with "
                            f"`signalfactory tenants create {name}`")
    return dict(row._mapping)


def set_tier(conn: Connection, name: str, tier: str) -> None:
    tenant = tenant_by_name(conn, name)
    conn.execute(tenants.update().where(tenants.c.id == tenant["id"])
                 .values(tier=validate_tier(tier)))


# -- keys -----------------------------------------------------------------------------------

def create_key(conn: Connection, tenant_id: int, role: str, name: str = "") -> tuple[NewKey,
                                                                                       int]:
    """Mint a key for the tenant; the caller shows ``NewKey.secret`` once and forgets it."""
    if role not in ROLES:
        raise BadInputError(f"role {role!r} is not known; use one of {', '.join(ROLES)}")
    if len(name) > 100:
        raise BadInputError("a key name has at most 100 characters")
    new = generate_key()
    key_id = conn.execute(api_keys.insert().values(
        tenant_id=tenant_id, prefix=new.prefix, digest=new.digest, role=role, name=name,
        created_at=_now()).returning(api_keys.c.id)).scalar_one()
    return new, key_id


def list_keys(conn: Connection, tenant_id: int | None = None) -> list[KeyRecord]:
    query = sa.select(*_KEY_COLUMNS).join(tenants, tenants.c.id == api_keys.c.tenant_id)
    if tenant_id is not None:
        query = query.where(api_keys.c.tenant_id == tenant_id)
    return [_record(r) for r in conn.execute(query.order_by(api_keys.c.id))]


def find_by_digest(conn: Connection, key_digest: str) -> KeyRecord | None:
    row = conn.execute(sa.select(*_KEY_COLUMNS)
                       .join(tenants, tenants.c.id == api_keys.c.tenant_id)
                       .where(api_keys.c.digest == key_digest)).first()
    return _record(row) if row is not None else None


def resolve_key(conn: Connection, prefix_or_id: str, tenant_id: int | None = None) -> KeyRecord:
    """One key by id or by (unambiguous) prefix, optionally only within one tenant."""
    query = sa.select(*_KEY_COLUMNS).join(tenants, tenants.c.id == api_keys.c.tenant_id)
    if tenant_id is not None:
        query = query.where(api_keys.c.tenant_id == tenant_id)
    text = prefix_or_id.strip()
    if text.isdigit():
        query = query.where(api_keys.c.id == int(text))
    elif text.startswith(KEY_MARKER) and len(text) > len(KEY_MARKER) + 3:
        # A whole key pasted by mistake still resolves by its prefix.
        query = query.where(api_keys.c.prefix.startswith(text[:PREFIX_LENGTH],
                                                          autoescape=True))
    else:
        raise BadInputError(f"{text!r} is neither a key id nor a key prefix such as "
                            "sf_live_AbCd1234 (see `signalfactory keys list`)")
    rows = [_record(r) for r in conn.execute(query)]
    if not rows:
        raise NotFoundError(f"no API key matches {text!r}; see `signalfactory keys list`")
    if len(rows) > 1:
        ids = ", ".join(str(r.id) for r in rows)
        raise ConflictError(f"prefix {text!r} matches keys {ids}; revoke by id instead")
    return rows[0]


def revoke_key(conn: Connection, key_id: int) -> bool:
    """Revoke; returns False when the key was already revoked (revoking twice is harmless)."""
    result = conn.execute(api_keys.update()
                          .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                          .values(revoked_at=_now()))
    return result.rowcount == 1


def needs_touch(record: KeyRecord, now: datetime | None = None) -> bool:
    if record.last_used_at is None:
        return True
    return (now or _now()) - _aware(record.last_used_at) >= LAST_USED_RESOLUTION


def touch_last_used(conn: Connection, key_id: int, now: datetime | None = None) -> None:
    conn.execute(api_keys.update().where(api_keys.c.id == key_id)
                 .values(last_used_at=now or _now()))
