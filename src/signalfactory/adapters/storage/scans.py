"""Stored scans and their ranked results in SQL (the ``ScanRepository`` port)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from signalfactory.adapters.storage.tables_core import scan_results, scans
from signalfactory.domain.scans import NewScan, ScanResult, StoredScan


class SqlScanRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add(self, scan: NewScan, results: Sequence[ScanResult] = ()) -> int:
        scan_id = int(self.conn.execute(scans.insert().returning(scans.c.id).values(
            tenant_id=scan.tenant_id, strategy_version_id=scan.strategy_version_id,
            rule_text=scan.rule_text, universe=scan.universe, timeframe=scan.timeframe,
            as_of=scan.as_of, top=scan.top, status=scan.status, error=scan.error,
            instruments=scan.instruments, matches=scan.matches,
            finished_at=scan.finished_at)).scalar_one())
        if results:
            self.conn.execute(scan_results.insert(), [
                {"scan_id": scan_id, "rank": r.rank, "instrument_id": r.instrument_id,
                 "symbol": r.symbol, "side": r.side, "score": r.score, "price": r.price,
                 "bar_ts": r.bar_ts, "values": dict(r.values)} for r in results])
        return scan_id

    def recent(self, tenant_id: int, limit: int) -> list[StoredScan]:
        rows: Any = self.conn.execute(sa.select(scans).where(scans.c.tenant_id == tenant_id)
                                      .order_by(scans.c.id.desc()).limit(limit))
        return [StoredScan(
            id=row.id, tenant_id=row.tenant_id, status=row.status, error=row.error,
            strategy_version_id=row.strategy_version_id, rule_text=row.rule_text,
            universe=row.universe, timeframe=row.timeframe, as_of=row.as_of, top=row.top,
            instruments=row.instruments, matches=row.matches, created_at=row.created_at,
            finished_at=row.finished_at) for row in rows]

    def get(self, tenant_id: int, scan_id: int) -> StoredScan | None:
        row: Any = self.conn.execute(sa.select(scans).where(
            scans.c.id == scan_id, scans.c.tenant_id == tenant_id)).first()
        if row is None:
            return None
        results = tuple(
            ScanResult(rank=r.rank, instrument_id=r.instrument_id, symbol=r.symbol,
                       side=r.side, score=r.score, price=r.price, bar_ts=r.bar_ts,
                       values=r._mapping["values"] or {})
            for r in self.conn.execute(sa.select(scan_results)
                                       .where(scan_results.c.scan_id == scan_id)
                                       .order_by(scan_results.c.rank)))
        return StoredScan(
            id=row.id, tenant_id=row.tenant_id, status=row.status, error=row.error,
            strategy_version_id=row.strategy_version_id, rule_text=row.rule_text,
            universe=row.universe, timeframe=row.timeframe, as_of=row.as_of, top=row.top,
            instruments=row.instruments, matches=row.matches, created_at=row.created_at,
            finished_at=row.finished_at, results=results)
