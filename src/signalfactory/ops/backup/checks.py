"""Row counts and checksums recorded at backup time and recomputed after every restore.

Which tables: every table of the application's metadata that exists in the database (the
schema grows with migrations; no list is kept here). How:

- ``rows-sha256`` (SQLite): :func:`checksums.table_checksum`, the rows in primary-key order as
  canonical JSON, hashed in Python.
- ``pg-hash-sum`` (PostgreSQL 14+): computed by the server, the sum over all rows of
  ``hash_record_extended`` (64-bit hashes of the binary column values; json as text).
  Order-independent, so it needs no sort, and it runs at scan speed: hashing ten million bar
  rows in Python would take minutes. ``pg-md5-sum`` is the same over the MD5 of each row's
  text form, for older servers. Tampering is caught by AES-GCM before any of this runs; this
  check proves the restore brought every row back.
- bars of the columnar store: :func:`checksums.bar_store_checksum` per timeframe, over the
  numpy columns, so the Arrow files are checked by content, not only by file hash.

The method is stored with each figure, so a verify always recomputes it the same way.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from signalfactory.adapters.storage.checksums import bar_store_checksum, table_checksum
from signalfactory.adapters.storage.columnar import ColumnarBarStore
from signalfactory.adapters.storage.tables import metadata
from signalfactory.ops.backup.manifest import Manifest, TableCheck

ROWS_SHA256 = "rows-sha256"
PG_MD5_SUM = "pg-md5-sum"
PG_HASH_SUM = "pg-hash-sum"


def present_tables(conn: Connection) -> list[sa.Table]:
    names = set(sa.inspect(conn).get_table_names())
    return [table for name, table in metadata.tables.items() if name in names]


def pin_text_output(conn: Connection) -> None:
    """Make the server's text form of rows the same in every session that checks them."""
    if conn.dialect.name == "postgresql":
        for setting in ("TimeZone = 'UTC'", "DateStyle = 'ISO, MDY'",
                        "IntervalStyle = 'postgres'", "extra_float_digits = 1",
                        "bytea_output = 'hex'"):
            conn.exec_driver_sql(f"SET LOCAL {setting}")


def _pg_row(conn: Connection, table: sa.Table) -> str:
    """The table's row as a record the server can hash (json has no hash function: as text)."""
    quote = conn.dialect.identifier_preparer.quote
    cols = [f"t.{quote(c.name)}::text" if isinstance(c.type, sa.JSON) else f"t.{quote(c.name)}"
            for c in table.columns]
    return f"ROW({', '.join(cols)})"


def _pg_table_check(conn: Connection, table: sa.Table, fast: bool) -> TableCheck:
    quoted = conn.dialect.identifier_preparer.quote(table.name)
    if fast:  # binary hashing of each column: no text conversion, ~4x faster than md5
        row_hash, method = f"hash_record_extended({_pg_row(conn, table)}, 0)", PG_HASH_SUM
    else:
        row_hash = "('x' || substr(md5(t::text), 1, 16))::bit(64)::bigint"
        method = PG_MD5_SUM
    rows, total = conn.exec_driver_sql(
        f"SELECT count(*), coalesce(sum({row_hash}), 0)::text FROM {quoted} AS t").one()
    digest = hashlib.sha256(f"{table.name}|{rows}|{total}".encode()).hexdigest()
    return TableCheck(rows=int(rows), checksum=digest, method=method)


def table_checks(conn: Connection, methods: dict[str, str] | None = None,
                 ) -> dict[str, TableCheck]:
    """Checks of every application table in ``conn``'s database (call inside a transaction).

    ``methods`` (from a manifest) makes each table be checked the way it was at backup time.
    """
    methods = methods or {}
    out: dict[str, TableCheck] = {}
    if conn.dialect.name == "postgresql":
        pin_text_output(conn)
        version = int(conn.exec_driver_sql("SHOW server_version_num").scalar_one())
        for table in present_tables(conn):
            wanted = methods.get(table.name, PG_HASH_SUM if version >= 140000 else PG_MD5_SUM)
            out[table.name] = _pg_table_check(conn, table, fast=wanted == PG_HASH_SUM)
        return out
    for table in present_tables(conn):
        rows, digest = table_checksum(conn, table)
        out[table.name] = TableCheck(rows=rows, checksum=digest, method=ROWS_SHA256)
    return out


def bar_checks(conn: Connection, bars_root: Path | None) -> dict[str, TableCheck]:
    """Checks per timeframe of the columnar files under ``bars_root`` (none for a SQL store)."""
    if bars_root is None:
        return {}
    return {tf: TableCheck(rows=rows, checksum=digest, method="bars-sha256")
            for tf, (rows, digest) in bar_store_checksum(conn,
                                                         ColumnarBarStore(bars_root)).items()}


def differences(manifest: Manifest, tables: dict[str, TableCheck],
                bars: dict[str, TableCheck]) -> list[str]:
    """What differs between the manifest and a restored copy, one line per table."""
    problems = []
    for kind, expected, actual in (("table", manifest.tables, tables),
                                   ("bars", manifest.bars, bars)):
        for name in sorted(set(expected) | set(actual)):
            want, got = expected.get(name), actual.get(name)
            if want is None:
                if got is not None and got.rows:
                    problems.append(f"{kind} {name}: {got.rows} rows restored that the "
                                    "backup does not list")
                continue
            if got is None:
                problems.append(f"{kind} {name}: missing after restore "
                                f"(backup has {want.rows} rows)")
            elif got.rows != want.rows:
                problems.append(f"{kind} {name}: {got.rows} rows restored, backup has "
                                f"{want.rows}")
            elif got.checksum != want.checksum:
                problems.append(f"{kind} {name}: content checksum differs ({want.rows} rows)")
    return problems
