"""The strategy catalog's repository in memory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from signalfactory.domain.strategies.stored import (
    BuiltinInterest,
    NewStrategy,
    NewStrategyVersion,
    StoredStrategy,
    StrategyRun,
)
from signalfactory.testing.memory import MemoryState


@dataclass
class StrategyStore:
    """Strategy rows, version rows and runs by id (ids count from 1, as in the database)."""

    strategies: dict[int, tuple[NewStrategy, datetime]] = field(default_factory=dict)
    versions: dict[int, tuple[NewStrategyVersion, datetime]] = field(default_factory=dict)
    runs: dict[int, StrategyRun] = field(default_factory=dict)


def strategy_store(state: MemoryState) -> StrategyStore:
    return state.store("strategies", StrategyStore)


class MemoryStrategyRepository:
    def __init__(self, state: MemoryState) -> None:
        self.store = strategy_store(state)

    def _stored(self, version_id: int) -> StoredStrategy:
        version, created_at = self.store.versions[version_id]
        strategy, _ = self.store.strategies[version.strategy_id]
        return StoredStrategy(
            id=version.strategy_id, version_id=version_id, tenant_id=strategy.tenant_id,
            name=strategy.name, kind=strategy.kind, version=version.version,
            rule_text=version.rule_text, class_path=version.class_path,
            parameters=dict(version.parameters), timeframe=version.timeframe,
            code_hash=version.code_hash, created_by=version.created_by,
            created_at=created_at, builtin=strategy.builtin,
            description=strategy.description,
            versions=sum(1 for v, _ in self.store.versions.values()
                         if v.strategy_id == version.strategy_id), source=version.source)

    def _all_versions(self, strategy_id: int) -> list[StoredStrategy]:
        return sorted((self._stored(i) for i, (v, _) in self.store.versions.items()
                       if v.strategy_id == strategy_id), key=lambda s: s.version)

    def strategy_id(self, tenant_id: int, name: str) -> int | None:
        return next((i for i, (s, _) in self.store.strategies.items()
                     if s.tenant_id == tenant_id and s.name == name), None)

    def create(self, strategy: NewStrategy) -> int:
        if self.strategy_id(strategy.tenant_id, strategy.name) is not None:
            raise ValueError(f"strategy {strategy.name!r} exists (unique per tenant)")
        new_id = len(self.store.strategies) + 1
        self.store.strategies[new_id] = (strategy, datetime.now(UTC))
        return new_id

    def add_version(self, version: NewStrategyVersion) -> int:
        if any(v.strategy_id == version.strategy_id and v.version == version.version
               for v, _ in self.store.versions.values()):
            raise ValueError(f"version {version.version} exists")
        new_id = len(self.store.versions) + 1
        self.store.versions[new_id] = (version, datetime.now(UTC))
        return new_id

    def newest(self, strategy_id: int) -> StoredStrategy | None:
        versions = self._all_versions(strategy_id)
        return versions[-1] if versions else None

    def version(self, version_id: int) -> StoredStrategy | None:
        return self._stored(version_id) if version_id in self.store.versions else None

    def _visible_ids(self, tenant_id: int, name: str | None = None) -> list[int]:
        """Visible strategy ids, the tenant's own before built-ins (as the SQL orders)."""
        ids = [i for i, (s, _) in self.store.strategies.items()
               if (s.tenant_id == tenant_id or s.builtin) and (name is None or s.name == name)]
        return sorted(ids, key=lambda i: (self.store.strategies[i][0].name,
                                          self.store.strategies[i][0].builtin))

    def find(self, tenant_id: int, name: str,
             version: int | None = None) -> StoredStrategy | None:
        for strategy_id in self._visible_ids(tenant_id, name):
            versions = [v for v in self._all_versions(strategy_id)
                        if version is None or v.version == version]
            if versions:
                return versions[-1]
        return None

    def visible(self, tenant_id: int) -> list[StoredStrategy]:
        out: dict[str, StoredStrategy] = {}
        for strategy_id in self._visible_ids(tenant_id):
            newest = self.newest(strategy_id)
            if newest is not None:
                out.setdefault(newest.name, newest)
        return list(out.values())

    def history(self, strategy_id: int) -> list[StoredStrategy]:
        return self._all_versions(strategy_id)

    def watched(self, timeframe: str, builtins: BuiltinInterest) -> list[StoredStrategy]:
        found = []
        for strategy_id, (strategy, _) in self.store.strategies.items():
            if strategy.builtin and not (builtins.every or strategy.name in builtins.names):
                continue
            newest = self.newest(strategy_id)
            if newest is not None and newest.timeframe == timeframe:
                found.append(replace(newest, versions=1))
        return sorted(found, key=lambda s: s.version_id)

    def record_run(self, run: StrategyRun) -> int:
        new_id = len(self.store.runs) + 1
        self.store.runs[new_id] = run
        return new_id

    def record_runs(self, runs: Sequence[StrategyRun]) -> None:
        for run in runs:
            self.record_run(run)

    def versions_stamp(self) -> tuple[int, int]:
        return len(self.store.versions), max(self.store.versions, default=0)
