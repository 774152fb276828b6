"""Canary rows (table ``ops_canaries``): written on a schedule and by `dr drill`, read back
from a restored copy to measure how much recent data a restore point lost."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from signalfactory.adapters.storage.tables import ops_canaries

#: canaries older than this are deleted when a new one is written (the table stays small)
KEEP = timedelta(days=8)


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything written here is UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def write_canary(conn: Connection, source: str, now: datetime | None = None) -> datetime:
    """Insert one canary stamped ``now`` (default: the current time); returns the stamp."""
    stamp = now or datetime.now(UTC)
    conn.execute(ops_canaries.insert().values(written_at=stamp, source=source))
    conn.execute(ops_canaries.delete().where(ops_canaries.c.written_at < stamp - KEEP))
    return stamp


def newest_canary(conn: Connection) -> datetime | None:
    """The newest canary's stamp; None when there is none (or no canary table: a copy made
    before migration 0015)."""
    if not sa.inspect(conn).has_table(ops_canaries.name):
        return None
    value = conn.execute(sa.select(ops_canaries.c.written_at)
                         .order_by(ops_canaries.c.written_at.desc()).limit(1)).scalar()
    return _aware(value) if value is not None else None
