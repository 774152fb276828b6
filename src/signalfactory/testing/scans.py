"""The scan repository in memory."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from signalfactory.domain.scans import NewScan, ScanResult, StoredScan
from signalfactory.testing.memory import MemoryState


@dataclass
class ScanStore:
    scans: dict[int, tuple[NewScan, datetime, tuple[ScanResult, ...]]] = field(
        default_factory=dict)


def scan_store(state: MemoryState) -> ScanStore:
    return state.store("scans", ScanStore)


class MemoryScanRepository:
    def __init__(self, state: MemoryState) -> None:
        self.store = scan_store(state)

    def add(self, scan: NewScan, results: Sequence[ScanResult] = ()) -> int:
        ranks = [r.rank for r in results]
        if len(set(ranks)) != len(ranks):
            raise ValueError("a rank appears twice in one scan")
        new_id = len(self.store.scans) + 1
        self.store.scans[new_id] = (scan, datetime.now(UTC),
                                    tuple(sorted(results, key=lambda r: r.rank)))
        return new_id

    def get(self, tenant_id: int, scan_id: int) -> StoredScan | None:
        found = self.store.scans.get(scan_id)
        if found is None or found[0].tenant_id != tenant_id:
            return None
        scan, created_at, results = found
        return StoredScan(
            id=scan_id, tenant_id=scan.tenant_id, status=scan.status, error=scan.error,
            strategy_version_id=scan.strategy_version_id, rule_text=scan.rule_text,
            universe=scan.universe, timeframe=scan.timeframe, as_of=scan.as_of,
            top=scan.top, instruments=scan.instruments, matches=scan.matches,
            created_at=created_at, finished_at=scan.finished_at, results=results)

    def recent(self, tenant_id: int, limit: int) -> list[StoredScan]:
        mine = [i for i in sorted(self.store.scans, reverse=True)
                if self.store.scans[i][0].tenant_id == tenant_id][:limit]
        return [dataclasses.replace(found, results=()) for i in mine
                if (found := self.get(tenant_id, i)) is not None]
