"""The audit log in SQL: the ``AuditRepository`` port.

Appends are serialised per database. SQLite: a write unit of work holds the write lock from
its first statement (BEGIN IMMEDIATE), so nothing else can append until it ends. PostgreSQL: a
transaction-scoped advisory lock, taken before the newest entry is read and released at commit
or rollback. The unique ``prev_hash`` column is the last line: were the lock ever bypassed, the
second of two entries chaining onto one predecessor would fail to insert.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from signalfactory.adapters.storage.tables import audit_log
from signalfactory.domain.accounts import as_utc
from signalfactory.domain.audit import AuditEntry, AuditHead

#: the PostgreSQL advisory lock key of audit appends ("sfaudit" in ASCII, fits a bigint)
APPEND_LOCK_KEY = 0x7366617564697400


def _entry(row: Row[tuple[object, ...]]) -> AuditEntry:
    m = row._mapping
    at: datetime = m["at"]
    return AuditEntry(seq=int(m["seq"]), at=as_utc(at),
                      tenant_id=None if m["tenant_id"] is None else int(m["tenant_id"]),
                      actor=m["actor"], action=m["action"], subject=m["subject"],
                      details=m["details"], prev_hash=m["prev_hash"], hash=m["hash"])


def newest_entry(conn: Connection) -> AuditHead | None:
    """The newest entry of the database behind ``conn`` (None: empty, or no audit table in
    this schema yet); backups record it in their manifest."""
    if not sa.inspect(conn).has_table(audit_log.name):
        return None
    return SqlAuditRepository(conn).head()


class SqlAuditRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def lock_head(self) -> AuditHead | None:
        if self.conn.dialect.name == "postgresql":
            self.conn.execute(sa.select(sa.func.pg_advisory_xact_lock(APPEND_LOCK_KEY)))
        return self.head()

    def append(self, entry: AuditEntry) -> None:
        self.conn.execute(audit_log.insert().values(
            seq=entry.seq, at=entry.at, tenant_id=entry.tenant_id, actor=entry.actor,
            action=entry.action, subject=entry.subject, details=entry.details,
            prev_hash=entry.prev_hash, hash=entry.hash))

    def head(self) -> AuditHead | None:
        row = self.conn.execute(sa.select(audit_log.c.seq, audit_log.c.hash)
                                .order_by(audit_log.c.seq.desc()).limit(1)).first()
        return AuditHead(int(row.seq), row.hash) if row is not None else None

    def page(self, *, after_seq: int = 0, limit: int = 1000, tenant_id: int | None = None,
             action: str | None = None) -> list[AuditEntry]:
        query = sa.select(audit_log).where(audit_log.c.seq > after_seq)
        if tenant_id is not None:
            query = query.where(audit_log.c.tenant_id == tenant_id)
        if action is not None:
            query = query.where(audit_log.c.action.startswith(action, autoescape=True))
        rows = self.conn.execute(query.order_by(audit_log.c.seq).limit(limit))
        return [_entry(r) for r in rows]
