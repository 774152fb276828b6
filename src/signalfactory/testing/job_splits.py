"""The ``SplitRepository`` port in memory, with the SQL repository's semantics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from signalfactory.domain.job_splits import ChunkState, Completion, SplitState
from signalfactory.testing.memory import MemoryState


@dataclass
class ChunkRow:
    job_id: str
    executions: int = 0
    result: bytes | None = None
    seconds: float | None = None
    finished_at: datetime | None = None


@dataclass
class SplitRow:
    kind: str
    created_at: datetime
    chunks: list[ChunkRow]
    done: int = 0
    finished_at: datetime | None = None
    cut: str | None = None


@dataclass
class SplitStore:
    splits: dict[str, SplitRow] = field(default_factory=dict)


class MemorySplitRepository:
    def __init__(self, state: MemoryState) -> None:
        self.store = state.store("job_splits", SplitStore)

    def create(self, parent_job_id: str, kind: str, chunk_job_ids: Sequence[str],
               now: datetime, cut: str | None = None) -> bool:
        if parent_job_id in self.store.splits:
            return False
        self.store.splits[parent_job_id] = SplitRow(kind, now, [ChunkRow(j)
                                                                for j in chunk_job_ids],
                                                    cut=cut)
        return True

    def cut(self, parent_job_id: str) -> str | None:
        row = self.store.splits.get(parent_job_id)
        return None if row is None else row.cut

    def get(self, parent_job_id: str) -> SplitState | None:
        row = self.store.splits.get(parent_job_id)
        if row is None:
            return None
        return SplitState(parent_job_id, row.kind, len(row.chunks), row.done, tuple(
            ChunkState(i, c.job_id, c.executions, c.finished_at is not None, c.seconds)
            for i, c in enumerate(row.chunks)))

    def counts(self, parent_job_id: str) -> tuple[int, int] | None:
        row = self.store.splits.get(parent_job_id)
        return None if row is None else (row.done, len(row.chunks))

    def pending(self, parent_job_id: str) -> list[tuple[int, str]]:
        row = self.store.splits.get(parent_job_id)
        return [] if row is None else [(i, c.job_id) for i, c in enumerate(row.chunks)
                                       if c.finished_at is None]

    def _chunk(self, parent_job_id: str, index: int) -> ChunkRow | None:
        row = self.store.splits.get(parent_job_id)
        if row is None or not 0 <= index < len(row.chunks):
            return None
        return row.chunks[index]

    def started(self, parent_job_id: str, index: int) -> int:
        chunk = self._chunk(parent_job_id, index)
        if chunk is None:
            return 0
        chunk.executions += 1
        return chunk.executions

    def complete(self, parent_job_id: str, index: int, result: bytes, seconds: float,
                 now: datetime) -> Completion:
        row = self.store.splits.get(parent_job_id)
        chunk = self._chunk(parent_job_id, index)
        if row is None or chunk is None:
            return Completion(0, 0, False) if row is None else \
                Completion(row.done, len(row.chunks), False)
        counted = chunk.finished_at is None
        if counted:
            chunk.result, chunk.seconds, chunk.finished_at = result, seconds, now
            row.done += 1
            if row.done >= len(row.chunks):
                row.finished_at = now
        return Completion(row.done, len(row.chunks), counted)

    def results(self, parent_job_id: str) -> list[bytes]:
        row = self.store.splits.get(parent_job_id)
        return [] if row is None else [c.result for c in row.chunks if c.result is not None]

    def drop_results(self, parent_job_id: str) -> None:
        row = self.store.splits.get(parent_job_id)
        for chunk in row.chunks if row is not None else []:
            chunk.result = None
