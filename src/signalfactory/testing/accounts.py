"""In-memory account ports: tenants and keys, usage counters, idempotency records."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import date, datetime

from signalfactory.domain.accounts import (
    IdempotencyRecord,
    KeyRecord,
    NewKeyRow,
    NewWebSession,
    StoredResponse,
    Tenant,
    TenantSummary,
    WebSessionRecord,
)
from signalfactory.domain.errors import ConflictError
from signalfactory.testing.memory import MemoryState


@dataclass
class _StoredKey:
    record: KeyRecord  # tenant name and tier are filled in when read
    digest: str


@dataclass
class AccountStore:
    # Tenant 1 exists from the first migration on (it owns built-ins and CLI work).
    tenants: dict[int, Tenant] = field(
        default_factory=lambda: {1: Tenant(id=1, name="default", tier="enterprise")})
    keys: dict[int, _StoredKey] = field(default_factory=dict)
    next_tenant: int = 2
    next_key: int = 1


class MemoryAccountRepository:
    def __init__(self, state: MemoryState) -> None:
        self.data = state.store("accounts", AccountStore)

    def create_tenant(self, name: str, tier: str) -> Tenant:
        if self.tenant_by_name(name) is not None:
            raise ConflictError(f"tenant {name!r} already exists; pick another name")
        tenant = Tenant(id=self.data.next_tenant, name=name, tier=tier)
        self.data.tenants[tenant.id] = tenant
        self.data.next_tenant += 1
        return tenant

    def list_tenants(self) -> list[TenantSummary]:
        return [TenantSummary(id=t.id, name=t.name, tier=t.tier,
                              active_keys=sum(1 for k in self.data.keys.values()
                                              if k.record.tenant_id == t.id
                                              and k.record.revoked_at is None))
                for t in sorted(self.data.tenants.values(), key=lambda t: t.id)]

    def tenant_by_name(self, name: str) -> Tenant | None:
        return next((t for t in self.data.tenants.values() if t.name == name), None)

    def set_tier(self, tenant_id: int, tier: str) -> None:
        tenant = self.data.tenants[tenant_id]
        self.data.tenants[tenant_id] = dataclasses.replace(tenant, tier=tier)

    def create_key(self, row: NewKeyRow) -> int:
        if any(k.digest == row.digest for k in self.data.keys.values()):
            raise ConflictError("an API key with this digest exists")
        key_id = self.data.next_key
        self.data.next_key += 1
        self.data.keys[key_id] = _StoredKey(KeyRecord(
            id=key_id, tenant_id=row.tenant_id, tenant_name="", tier="", role=row.role,
            prefix=row.prefix, name=row.name, created_at=row.created_at, revoked_at=None,
            last_used_at=None), row.digest)
        return key_id

    def _joined(self, stored: _StoredKey) -> KeyRecord:
        tenant = self.data.tenants[stored.record.tenant_id]
        return dataclasses.replace(stored.record, tenant_name=tenant.name, tier=tenant.tier)

    def list_keys(self, tenant_id: int | None = None) -> list[KeyRecord]:
        return self.keys_matching(tenant_id=tenant_id)

    def key_by_digest(self, key_digest: str) -> KeyRecord | None:
        return next((self._joined(k) for k in self.data.keys.values()
                     if k.digest == key_digest), None)

    def keys_matching(self, *, key_id: int | None = None, prefix: str | None = None,
                      tenant_id: int | None = None) -> list[KeyRecord]:
        return [self._joined(k) for i, k in sorted(self.data.keys.items())
                if (tenant_id is None or k.record.tenant_id == tenant_id)
                and (key_id is None or i == key_id)
                and (prefix is None or k.record.prefix.startswith(prefix))]

    def revoke_key(self, key_id: int, now: datetime) -> bool:
        stored = self.data.keys.get(key_id)
        if stored is None or stored.record.revoked_at is not None:
            return False
        stored.record = dataclasses.replace(stored.record, revoked_at=now)
        return True

    def touch_key(self, key_id: int, now: datetime) -> None:
        stored = self.data.keys.get(key_id)
        if stored is not None:
            stored.record = dataclasses.replace(stored.record, last_used_at=now)


@dataclass
class UsageStore:
    daily: dict[tuple[int, str, date], int] = field(default_factory=dict)
    #: what tenants hold, by (tenant, kind), for kinds no memory repository here stores
    #: (strategies: until the in-memory strategy repository reports its own count)
    held: dict[tuple[int, str], int] = field(default_factory=dict)


class MemoryUsageRepository:
    def __init__(self, state: MemoryState) -> None:
        self.state = state
        self.data = state.store("usage", UsageStore)

    def lock_tenant(self, tenant_id: int) -> None:
        """Memory transactions are serialised already."""

    def count_held(self, tenant_id: int, kind: str) -> int:
        if kind == "subscriptions":
            from signalfactory.testing.streaming import MemorySubscriptionRepository

            return len(MemorySubscriptionRepository(self.state).for_tenant(tenant_id))
        if kind == "strategies":
            return self.data.held.get((tenant_id, kind), 0)
        raise ValueError(f"{kind!r} is not a count quota; known: strategies, subscriptions")

    def take_daily(self, tenant_id: int, kind: str, day: date, limit: int | None) -> bool:
        used = self.data.daily.get((tenant_id, kind, day), 0)
        if limit is not None and used >= limit:
            return False
        self.data.daily[(tenant_id, kind, day)] = used + 1
        return True

    def daily_used(self, tenant_id: int, kind: str, day: date) -> int:
        return self.data.daily.get((tenant_id, kind, day), 0)


@dataclass
class IdempotencyStore:
    records: dict[int, IdempotencyRecord] = field(default_factory=dict)
    next_id: int = 1


class MemoryIdempotencyRepository:
    def __init__(self, state: MemoryState) -> None:
        self.data = state.store("idempotency", IdempotencyStore)

    def find(self, tenant_id: int, key: str) -> IdempotencyRecord | None:
        return next((r for r in self.data.records.values()
                     if r.tenant_id == tenant_id and r.key == key), None)

    def claim(self, tenant_id: int, key: str, method: str, path: str, request_hash: str,
              now: datetime) -> int | None:
        if self.find(tenant_id, key) is not None:
            return None
        record_id = self.data.next_id
        self.data.next_id += 1
        self.data.records[record_id] = IdempotencyRecord(
            id=record_id, tenant_id=tenant_id, key=key, request_hash=request_hash,
            state="in_flight", created_at=now, locked_at=now)
        return record_id

    def take_over(self, record_id: int, locked_at: datetime | None, now: datetime) -> bool:
        record = self.data.records.get(record_id)
        if record is None or record.state != "in_flight" or record.locked_at != locked_at:
            return False
        self.data.records[record_id] = dataclasses.replace(record, locked_at=now)
        return True

    def complete(self, record_id: int, response: StoredResponse, now: datetime) -> None:
        record = self.data.records.get(record_id)
        if record is not None:
            self.data.records[record_id] = dataclasses.replace(
                record, state="complete", status_code=response.status_code,
                headers=response.headers, body=response.body)

    def release(self, record_id: int) -> None:
        self.data.records.pop(record_id, None)

    def purge(self, created_before: datetime) -> int:
        old = [i for i, r in self.data.records.items() if r.created_at < created_before]
        for record_id in old:
            del self.data.records[record_id]
        return len(old)


@dataclass
class WebSessionStore:
    rows: dict[str, tuple[int, NewWebSession]] = field(default_factory=dict)  # by digest
    next_id: int = 1


class MemoryWebSessionRepository:
    def __init__(self, state: MemoryState) -> None:
        self.accounts = MemoryAccountRepository(state)
        self.data = state.store("web_sessions", WebSessionStore)

    def create(self, row: NewWebSession) -> int:
        if row.token_digest in self.data.rows:
            raise ConflictError("a session with this token exists")
        session_id = self.data.next_id
        self.data.next_id += 1
        self.data.rows[row.token_digest] = (session_id, row)
        return session_id

    def find(self, token_digest: str, kind: str) -> WebSessionRecord | None:
        found = self.data.rows.get(token_digest)
        if found is None or found[1].kind != kind:
            return None
        session_id, row = found
        keys = self.accounts.keys_matching(key_id=row.key_id)
        if not keys:
            return None
        return WebSessionRecord(id=session_id, kind=row.kind, key=keys[0],
                                csrf_token=row.csrf_token, created_at=row.created_at,
                                expires_at=row.expires_at)

    def delete(self, token_digest: str, kind: str) -> bool:
        found = self.data.rows.get(token_digest)
        if found is None or found[1].kind != kind:
            return False
        del self.data.rows[token_digest]
        return True

    def purge(self, expired_before: datetime) -> int:
        old = [d for d, (_, row) in self.data.rows.items() if row.expires_at < expired_before]
        for token_digest in old:
            del self.data.rows[token_digest]
        return len(old)
