"""Tenants and API keys: create, list, change tier, mint, resolve, revoke, authenticate.

Everything works on a ``UnitOfWork`` the caller opened (one transaction), except
``authenticate``, which opens its own: it runs on every request.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta

from signalfactory.domain.accounts import (
    KeyRecord,
    NewKeyRow,
    Principal,
    Tenant,
    TenantSummary,
    check_tier,
)
from signalfactory.domain.api_keys import (
    KEY_MARKER,
    PREFIX_LENGTH,
    ROLES,
    NewKey,
    digest,
)
from signalfactory.domain.api_keys import generate_key as _generate_key
from signalfactory.domain.errors import (
    BadInputError,
    ConflictError,
    NotFoundError,
    ReadOnlyError,
)
from signalfactory.services.audit import log as audit
from signalfactory.services.platform import Platform
from signalfactory.services.ports import UnitOfWork

# last_used_at is written at most this often per key, so a busy key costs one write a minute.
LAST_USED_RESOLUTION = timedelta(seconds=60)


# -- tenants --------------------------------------------------------------------------------

def create_tenant(uow: UnitOfWork, name: str, tier: str = "free") -> Tenant:
    name = name.strip()
    if not name or len(name) > 100:
        raise BadInputError("a tenant name must have 1 to 100 characters")
    return uow.accounts.create_tenant(name, check_tier(tier))


def list_tenants(uow: UnitOfWork) -> list[TenantSummary]:
    return uow.accounts.list_tenants()


def tenant_by_name(uow: UnitOfWork, name: str) -> Tenant:
    tenant = uow.accounts.tenant_by_name(name)
    if tenant is None:
        raise NotFoundError(f"tenant {name!r} does not exist; create it with "
                            f"`signalfactory tenants create {name}`")
    return tenant


def set_tier(uow: UnitOfWork, name: str, tier: str, *, actor: str = "system",
             now: datetime | None = None) -> Tenant:
    """Move the tenant to ``tier``; a change is audited (the same tier again is not one)."""
    tenant = tenant_by_name(uow, name)
    uow.accounts.set_tier(tenant.id, check_tier(tier))
    if tier != tenant.tier:
        audit.record(uow, actor, audit.TENANT_TIER_CHANGED, f"tenant:{tenant.id}",
                     {"tenant": tenant.name, "from": tenant.tier, "to": tier},
                     tenant_id=tenant.id, at=now)
    return Tenant(id=tenant.id, name=tenant.name, tier=tier)


# -- keys -----------------------------------------------------------------------------------

def create_key(uow: UnitOfWork, tenant_id: int, role: str, name: str = "", *,
               now: datetime, actor: str = "system") -> tuple[NewKey, int]:
    """Mint a key for the tenant; the caller shows ``NewKey.secret`` once and forgets it.
    Audited (by id, prefix and role: the digest and the secret stay out of the log)."""
    if role not in ROLES:
        raise BadInputError(f"role {role!r} is not known; use one of {', '.join(ROLES)}")
    if len(name) > 100:
        raise BadInputError("a key name has at most 100 characters")
    new = _generate_key()
    key_id = uow.accounts.create_key(NewKeyRow(tenant_id=tenant_id, prefix=new.prefix,
                                               digest=new.digest, role=role, name=name,
                                               created_at=now))
    audit.record(uow, actor, audit.API_KEY_CREATED, f"api_key:{key_id}",
                 {"prefix": new.prefix, "role": role, "name": name}, tenant_id=tenant_id,
                 at=now)
    return new, key_id


def list_keys(uow: UnitOfWork, tenant_id: int | None = None) -> list[KeyRecord]:
    return uow.accounts.list_keys(tenant_id)


def resolve_key(uow: UnitOfWork, prefix_or_id: str, tenant_id: int | None = None) -> KeyRecord:
    """One key by id or by (unambiguous) prefix, optionally only within one tenant."""
    text = prefix_or_id.strip()
    if text.isdigit():
        rows = uow.accounts.keys_matching(key_id=int(text), tenant_id=tenant_id)
    elif text.startswith(KEY_MARKER) and len(text) > len(KEY_MARKER) + 3:
        # A whole key pasted by mistake still resolves by its prefix.
        rows = uow.accounts.keys_matching(prefix=text[:PREFIX_LENGTH], tenant_id=tenant_id)
    else:
        raise BadInputError(f"{text!r} is neither a key id nor a key prefix such as "
                            "sf_live_AbCd1234 (see `signalfactory keys list`)")
    if not rows:
        raise NotFoundError(f"no API key matches {text!r}; see `signalfactory keys list`")
    if len(rows) > 1:
        ids = ", ".join(str(r.id) for r in rows)
        raise ConflictError(f"prefix {text!r} matches keys {ids}; revoke by id instead")
    return rows[0]


def revoke_key(uow: UnitOfWork, key_id: int, *, now: datetime, actor: str = "system") -> bool:
    """Revoke; False when the key was already revoked (revoking twice is harmless, and
    audited once)."""
    found = uow.accounts.keys_matching(key_id=key_id)
    revoked = uow.accounts.revoke_key(key_id, now)
    if revoked and found:
        audit.record(uow, actor, audit.API_KEY_REVOKED, f"api_key:{key_id}",
                     {"prefix": found[0].prefix, "role": found[0].role},
                     tenant_id=found[0].tenant_id, at=now)
    return revoked


def needs_touch(record: KeyRecord, now: datetime) -> bool:
    if record.last_used_at is None:
        return True
    return now - record.last_used_at >= LAST_USED_RESOLUTION


# -- authentication -------------------------------------------------------------------------

class KeyRefusedError(BadInputError):
    """A well-formed key that is unknown or revoked; ``reason`` labels the refusal."""

    code = "unauthorized"

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def authenticate(platform: Platform, secret: str, uow: UnitOfWork | None = None) -> Principal:
    """Who a well-formed key belongs to; ``KeyRefusedError`` when it is unknown or revoked.

    Reads the primary, never a replica: a revoked key must stop working at once; except in
    read-only mode, when the primary is down and the replica is all there is (nothing can be
    revoked meanwhile). Records the key's use at most once per ``LAST_USED_RESOLUTION``, and
    not at all in read-only mode (a lost last-used time must not refuse a read).

    ``uow``: the caller's read of the primary (``read(primary=True)``) to look the key up
    in, so a request that reads more in the same hop opens one connection.
    """
    if uow is not None:
        record = uow.accounts.key_by_digest(digest(secret))
    else:
        with platform.database.read(primary=True) as own:
            record = own.accounts.key_by_digest(digest(secret))
    if record is None:
        raise KeyRefusedError("the API key is not known; ask an admin for a key "
                              "(`signalfactory keys create`)", reason="unknown_key")
    if record.revoked_at is not None:
        raise KeyRefusedError(f"the API key {record.prefix}... was revoked; use another key",
                              reason="revoked_key")
    now = platform.clock.now()
    if needs_touch(record, now):
        with contextlib.suppress(ReadOnlyError), platform.database.write() as uow:
            uow.accounts.touch_key(record.id, now)
    return Principal(tenant_id=record.tenant_id, tenant_name=record.tenant_name,
                     tier=record.tier, role=record.role, key_id=record.id,
                     key_prefix=record.prefix)
