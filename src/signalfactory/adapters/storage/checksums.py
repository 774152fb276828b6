"""Row counts and content checksums per table, and of the bar store's content.

Used to prove that a refused ingest left the store exactly as it was, and by backups to prove
that a restore brought every row back.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from signalfactory.adapters.storage.bar_store import BarStore
from signalfactory.adapters.storage.tables import metadata
from signalfactory.domain.bars import FIELDS
from signalfactory.domain.timeframes import Timeframe

# Columns whose value is set by the server at insert time are part of the content all the same.


def _canonical(value: object) -> object:
    if isinstance(value, dict):
        return {k: _canonical(value[k]) for k in sorted(value)}
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)
    return value


def table_checksum(conn: Connection, table: sa.Table) -> tuple[int, str]:
    """(row count, sha256 of the rows in primary-key order)."""
    order = list(table.primary_key.columns) or list(table.columns)
    digest = hashlib.sha256()
    count = 0
    result = conn.execution_options(yield_per=10_000).execute(sa.select(table).order_by(*order))
    for row in result:
        digest.update(json.dumps([_canonical(v) for v in row], default=str).encode())
        digest.update(b"\n")
        count += 1
    return count, digest.hexdigest()


def database_checksums(conn: Connection) -> dict[str, tuple[int, str]]:
    inspector = sa.inspect(conn)
    present = set(inspector.get_table_names())
    return {name: table_checksum(conn, table) for name, table in metadata.tables.items()
            if name in present}


def bar_store_checksum(conn: Connection, store: BarStore) -> dict[str, tuple[int, str]]:
    out = {}
    for name in sorted(store.timeframes(conn)):
        cols = store.read_columns(conn, Timeframe.parse(name))
        digest = hashlib.sha256()
        for field in ("instrument_id", "ts", *FIELDS):
            digest.update(np.ascontiguousarray(getattr(cols, field)).tobytes())
        out[name] = (len(cols), digest.hexdigest())
    return out


def store_fingerprint(conn: Connection,
                      store: BarStore) -> dict[str, dict[str, tuple[int, str]]]:
    """Everything a caller could observe: tables plus the bars, whatever the store."""
    return {"tables": database_checksums(conn), "bars": bar_store_checksum(conn, store)}
