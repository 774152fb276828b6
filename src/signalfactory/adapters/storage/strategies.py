"""Stored strategies, versions and evaluation runs in SQL (the ``StrategyRepository`` port)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from signalfactory.adapters.storage.tables_core import strategies, strategy_runs, strategy_versions
from signalfactory.domain.strategies.stored import (
    BuiltinInterest,
    NewStrategy,
    NewStrategyVersion,
    StoredStrategy,
    StrategyRun,
)


def _select(*, count_versions: bool = True) -> sa.Select[Any]:
    columns: list[Any] = [
        strategies.c.id, strategies.c.tenant_id, strategies.c.name, strategies.c.kind,
        strategies.c.builtin, strategies.c.description,
        strategy_versions.c.id.label("version_id"), strategy_versions.c.version,
        strategy_versions.c.rule_text, strategy_versions.c.class_path,
        strategy_versions.c.parameters, strategy_versions.c.timeframe,
        strategy_versions.c.code_hash, strategy_versions.c.created_by,
        strategy_versions.c.created_at, strategy_versions.c.source]
    if count_versions:
        counted = strategy_versions.alias("counted")
        columns.append(sa.select(sa.func.count()).select_from(counted)
                       .where(counted.c.strategy_id == strategies.c.id)
                       .correlate(strategies).scalar_subquery().label("versions"))
    return sa.select(*columns).join(strategy_versions,
                                    strategy_versions.c.strategy_id == strategies.c.id)


def _newest() -> sa.Subquery:
    return (sa.select(strategy_versions.c.strategy_id,
                      sa.func.max(strategy_versions.c.version).label("v"))
            .group_by(strategy_versions.c.strategy_id).subquery())


def _stored(row: sa.Row[Any]) -> StoredStrategy:
    return StoredStrategy(
        id=row.id, version_id=row.version_id, tenant_id=row.tenant_id, name=row.name,
        kind=row.kind, version=row.version, rule_text=row.rule_text,
        class_path=row.class_path, parameters=row.parameters or {}, timeframe=row.timeframe,
        code_hash=row.code_hash, created_by=row.created_by, created_at=row.created_at,
        builtin=bool(row.builtin), description=row.description or "",
        versions=int(getattr(row, "versions", 1) or 1), source=row.source)


def _visible(tenant_id: int) -> sa.ColumnElement[bool]:
    return sa.or_(strategies.c.tenant_id == tenant_id, strategies.c.builtin.is_(sa.true()))


class SqlStrategyRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def strategy_id(self, tenant_id: int, name: str) -> int | None:
        found = self.conn.execute(sa.select(strategies.c.id).where(
            strategies.c.tenant_id == tenant_id, strategies.c.name == name)).scalar()
        return None if found is None else int(found)

    def create(self, strategy: NewStrategy) -> int:
        return int(self.conn.execute(strategies.insert().returning(strategies.c.id).values(
            tenant_id=strategy.tenant_id, name=strategy.name, kind=strategy.kind,
            description=strategy.description, builtin=strategy.builtin)).scalar_one())

    def add_version(self, version: NewStrategyVersion) -> int:
        return int(self.conn.execute(strategy_versions.insert()
                                     .returning(strategy_versions.c.id).values(
            strategy_id=version.strategy_id, version=version.version,
            rule_text=version.rule_text, class_path=version.class_path,
            parameters=dict(version.parameters), timeframe=version.timeframe,
            code_hash=version.code_hash, created_by=version.created_by,
            source=version.source)).scalar_one())

    def newest(self, strategy_id: int) -> StoredStrategy | None:
        row = self.conn.execute(_select().where(strategies.c.id == strategy_id)
                                .order_by(strategy_versions.c.version.desc()).limit(1)).first()
        return None if row is None else _stored(row)

    def version(self, version_id: int) -> StoredStrategy | None:
        row = self.conn.execute(_select().where(strategy_versions.c.id == version_id)).first()
        return None if row is None else _stored(row)

    def find(self, tenant_id: int, name: str,
             version: int | None = None) -> StoredStrategy | None:
        query = _select().where(_visible(tenant_id), strategies.c.name == name)
        if version is not None:
            query = query.where(strategy_versions.c.version == version)
        # The tenant's own strategy wins over a built-in of the same name; newest first.
        row = self.conn.execute(query.order_by(strategies.c.builtin.asc(),
                                               strategy_versions.c.version.desc())
                                .limit(1)).first()
        return None if row is None else _stored(row)

    def visible(self, tenant_id: int) -> list[StoredStrategy]:
        newest = _newest()
        query = (_select().join(newest, sa.and_(newest.c.strategy_id == strategies.c.id,
                                                newest.c.v == strategy_versions.c.version))
                 .where(_visible(tenant_id)).order_by(strategies.c.name, strategies.c.builtin))
        out: dict[str, StoredStrategy] = {}
        for row in self.conn.execute(query):
            out.setdefault(row.name, _stored(row))  # own (builtin false) sorts first
        return list(out.values())

    def history(self, strategy_id: int) -> list[StoredStrategy]:
        rows = self.conn.execute(_select().where(strategies.c.id == strategy_id)
                                 .order_by(strategy_versions.c.version))
        return [_stored(r) for r in rows]

    def watched(self, timeframe: str, builtins: BuiltinInterest) -> list[StoredStrategy]:
        wanted: sa.ColumnElement[bool] = strategies.c.builtin.is_(sa.false())
        if builtins.every:
            wanted = sa.true()
        elif builtins.names:
            wanted = sa.or_(wanted, strategies.c.name.in_(sorted(builtins.names)))
        newest = _newest()
        query = (_select(count_versions=False)
                 .join(newest, sa.and_(newest.c.strategy_id == strategies.c.id,
                                       newest.c.v == strategy_versions.c.version))
                 .where(wanted, strategy_versions.c.timeframe == timeframe)
                 .order_by(strategy_versions.c.id))
        return [_stored(r) for r in self.conn.execute(query)]

    def record_run(self, run: StrategyRun) -> int:
        return int(self.conn.execute(strategy_runs.insert().returning(strategy_runs.c.id)
                                     .values(**_run_row(run))).scalar_one())

    def record_runs(self, runs: Sequence[StrategyRun]) -> None:
        if runs:  # one executemany: live evaluation records a run per watched version
            self.conn.execute(strategy_runs.insert(), [_run_row(r) for r in runs])

    def versions_stamp(self) -> tuple[int, int]:
        count, newest = self.conn.execute(sa.select(
            sa.func.count(), sa.func.coalesce(sa.func.max(strategy_versions.c.id), 0))
            .select_from(strategy_versions)).one()
        return int(count), int(newest)


def _run_row(run: StrategyRun) -> dict[str, object]:
    return {"strategy_version_id": run.strategy_version_id, "timeframe": run.timeframe,
            "status": run.status, "error": run.error, "instruments": run.instruments,
            "signals_written": run.signals_written, "started_at": run.started_at,
            "finished_at": run.finished_at}
