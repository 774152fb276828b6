"""Dashboard sessions and sign-in links in SQL: the ``WebSessionRepository`` port."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from signalfactory.adapters.storage.api_keys import _KEY_COLUMNS, _key
from signalfactory.adapters.storage.tables import api_keys, tenants, web_sessions
from signalfactory.domain.accounts import NewWebSession, WebSessionRecord, as_utc


class SqlWebSessionRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def create(self, row: NewWebSession) -> int:
        return int(self.conn.execute(web_sessions.insert().values(
            kind=row.kind, token_digest=row.token_digest, key_id=row.key_id,
            csrf_token=row.csrf_token, created_at=row.created_at,
            expires_at=row.expires_at).returning(web_sessions.c.id)).scalar_one())

    def find(self, token_digest: str, kind: str) -> WebSessionRecord | None:
        # One query per request: the session, its key and the key's tenant.
        row: Any = self.conn.execute(
            sa.select(web_sessions.c.id.label("session_id"), web_sessions.c.kind,
                      web_sessions.c.csrf_token, web_sessions.c.created_at.label("s_created"),
                      web_sessions.c.expires_at, *_KEY_COLUMNS)
            .join(api_keys, api_keys.c.id == web_sessions.c.key_id)
            .join(tenants, tenants.c.id == api_keys.c.tenant_id)
            .where(web_sessions.c.token_digest == token_digest, web_sessions.c.kind == kind)
        ).first()
        if row is None:
            return None
        m = row._mapping
        return WebSessionRecord(id=int(m["session_id"]), kind=m["kind"], key=_key(row),
                                csrf_token=m["csrf_token"], created_at=as_utc(m["s_created"]),
                                expires_at=as_utc(m["expires_at"]))

    def delete(self, token_digest: str, kind: str) -> bool:
        result = self.conn.execute(web_sessions.delete().where(
            web_sessions.c.token_digest == token_digest, web_sessions.c.kind == kind))
        return result.rowcount == 1

    def purge(self, expired_before: datetime) -> int:
        result = self.conn.execute(web_sessions.delete().where(
            web_sessions.c.expires_at < expired_before))
        return int(result.rowcount)
