"""Sandbox runs in SQL (the ``SandboxRunRepository`` port)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from signalfactory.adapters.storage.tables import sandbox_runs
from signalfactory.domain.sandbox import SandboxRun


def _run(row: sa.Row[Any]) -> SandboxRun:
    return SandboxRun(
        strategy_version_id=row.strategy_version_id, tenant_id=row.tenant_id,
        code_hash=row.code_hash, purpose=row.purpose, instruments=row.instruments,
        bars=int(row.bars), first_bar=row.first_bar, last_bar=row.last_bar,
        started_at=row.created_at, duration_ms=float(row.duration_ms), outcome=row.outcome,
        limit_hit=row.limit_hit, error=row.error, signals=int(row.signals),
        fresh_worker=bool(row.fresh_worker))


class SqlSandboxRunRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add(self, run: SandboxRun) -> int:
        return int(self.conn.execute(sandbox_runs.insert().returning(sandbox_runs.c.id).values(
            tenant_id=run.tenant_id, strategy_version_id=run.strategy_version_id,
            code_hash=run.code_hash, purpose=run.purpose, instruments=run.instruments,
            bars=run.bars, first_bar=run.first_bar, last_bar=run.last_bar,
            created_at=run.started_at, duration_ms=run.duration_ms, outcome=run.outcome,
            limit_hit=run.limit_hit, error=run.error, signals=run.signals,
            fresh_worker=run.fresh_worker)).scalar_one())

    def recent(self, tenant_id: int, *, strategy_version_id: int | None = None,
               limit: int = 100) -> list[tuple[int, SandboxRun]]:
        query = (sa.select(sandbox_runs).where(sandbox_runs.c.tenant_id == tenant_id)
                 .order_by(sandbox_runs.c.id.desc()).limit(limit))
        if strategy_version_id is not None:
            query = query.where(sandbox_runs.c.strategy_version_id == strategy_version_id)
        return [(int(row.id), _run(row)) for row in self.conn.execute(query)]
