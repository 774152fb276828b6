"""Idempotency records in SQL (``IdempotencyRepository``).

The unique (tenant_id, key) constraint is the lock: of two concurrent requests with one key
exactly one inserts the in-flight row; the other's insert fails and it reads the winner's.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from signalfactory.adapters.storage.tables import idempotency_keys
from signalfactory.domain.accounts import IdempotencyRecord, StoredResponse, as_utc

_T = idempotency_keys


class SqlIdempotencyRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def find(self, tenant_id: int, key: str) -> IdempotencyRecord | None:
        row = self.conn.execute(sa.select(_T).where(_T.c.tenant_id == tenant_id,
                                                    _T.c.key == key)).first()
        if row is None:
            return None
        headers = tuple((str(k), str(v)) for k, v in row.response_headers or [])
        return IdempotencyRecord(
            id=int(row.id), tenant_id=int(row.tenant_id), key=row.key,
            request_hash=row.request_hash, state=row.state, created_at=as_utc(row.created_at),
            locked_at=as_utc(row.locked_at) if row.locked_at else None,
            status_code=row.status_code, headers=headers, body=row.response_body)

    def claim(self, tenant_id: int, key: str, method: str, path: str, request_hash: str,
              now: datetime) -> int | None:
        try:
            # A savepoint: a lost race leaves the caller's transaction usable.
            with self.conn.begin_nested():
                record_id = self.conn.execute(_T.insert().values(
                    tenant_id=tenant_id, key=key, method=method, path=path,
                    request_hash=request_hash, state="in_flight", created_at=now,
                    locked_at=now).returning(_T.c.id)).scalar_one()
        except IntegrityError:
            return None
        return int(record_id)

    def take_over(self, record_id: int, locked_at: datetime | None, now: datetime) -> bool:
        taken = self.conn.execute(_T.update().where(
            _T.c.id == record_id, _T.c.state == "in_flight", _T.c.locked_at == locked_at)
            .values(locked_at=now))
        return taken.rowcount == 1

    def complete(self, record_id: int, response: StoredResponse, now: datetime) -> None:
        self.conn.execute(_T.update().where(_T.c.id == record_id).values(
            state="complete", status_code=response.status_code,
            response_headers=[list(pair) for pair in response.headers],
            response_body=response.body, completed_at=now))

    def release(self, record_id: int) -> None:
        self.conn.execute(_T.delete().where(_T.c.id == record_id))

    def purge(self, created_before: datetime) -> int:
        result = self.conn.execute(_T.delete().where(_T.c.created_at < created_before))
        return int(result.rowcount or 0)
