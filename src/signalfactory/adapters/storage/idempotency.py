"""Idempotency records: claim a key, then store the response or release the claim.

The unique (tenant_id, key) constraint is the lock: of two concurrent requests with one key
exactly one inserts the in-flight row; the other finds it and is told to come back (409).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from signalfactory.adapters.storage.tables import idempotency_keys

RETENTION = timedelta(hours=24)
# An in-flight claim older than this belongs to a process that died mid-request; a retry may
# take it over. Mutating POSTs are short (long work runs as jobs), so this is generous.
STALE_CLAIM = timedelta(minutes=5)

Outcome = Literal["new", "replay", "mismatch", "in_flight"]


@dataclass(frozen=True)
class Claim:
    outcome: Outcome
    record_id: int | None = None
    status_code: int | None = None
    headers: list[list[str]] | None = None
    body: bytes | None = None


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def claim(engine: Engine, tenant_id: int, key: str, method: str, path: str,
          request_hash: str, now: datetime | None = None) -> Claim:
    """Claim ``key`` for this request, or say what became of an earlier one."""
    now = now or datetime.now(UTC)
    t = idempotency_keys
    for _ in range(3):
        with engine.begin() as conn:
            row = conn.execute(sa.select(t).where(t.c.tenant_id == tenant_id,
                                                  t.c.key == key)).first()
            if row is not None:
                if _aware(row.created_at) < now - RETENTION:
                    conn.execute(t.delete().where(t.c.id == row.id))
                elif row.request_hash != request_hash:
                    return Claim("mismatch", row.id)
                elif row.state == "complete":
                    return Claim("replay", row.id, row.status_code, row.response_headers,
                                 row.response_body)
                else:
                    locked = _aware(row.locked_at or row.created_at)
                    if locked >= now - STALE_CLAIM:
                        return Claim("in_flight", row.id)
                    taken = conn.execute(t.update().where(
                        t.c.id == row.id, t.c.state == "in_flight",
                        t.c.locked_at == row.locked_at).values(locked_at=now))
                    return Claim("new" if taken.rowcount == 1 else "in_flight", row.id)
        try:
            with engine.begin() as conn:
                record_id = conn.execute(t.insert().values(
                    tenant_id=tenant_id, key=key, method=method, path=path,
                    request_hash=request_hash, state="in_flight", created_at=now,
                    locked_at=now).returning(t.c.id)).scalar_one()
            return Claim("new", record_id)
        except IntegrityError:
            continue  # another request claimed it between our read and insert: look again
    return Claim("in_flight")


def complete(engine: Engine, record_id: int, status_code: int, headers: list[list[str]],
             body: bytes, now: datetime | None = None) -> None:
    with engine.begin() as conn:
        conn.execute(idempotency_keys.update().where(idempotency_keys.c.id == record_id).values(
            state="complete", status_code=status_code, response_headers=headers,
            response_body=body, completed_at=now or datetime.now(UTC)))


def release(engine: Engine, record_id: int) -> None:
    """Forget a claim whose request did nothing (auth, validation, server errors)."""
    with engine.begin() as conn:
        conn.execute(idempotency_keys.delete().where(idempotency_keys.c.id == record_id))


def purge_expired(engine: Engine, now: datetime | None = None) -> int:
    cutoff = (now or datetime.now(UTC)) - RETENTION
    with engine.begin() as conn:
        result = conn.execute(idempotency_keys.delete()
                              .where(idempotency_keys.c.created_at < cutoff))
    return int(result.rowcount or 0)


def record_for(engine: Engine, tenant_id: int, key: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(idempotency_keys).where(
            idempotency_keys.c.tenant_id == tenant_id, idempotency_keys.c.key == key)).first()
    return dict(row._mapping) if row is not None else None
