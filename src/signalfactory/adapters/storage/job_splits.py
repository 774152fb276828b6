"""The ``SplitRepository`` port in SQL: ``job_splits`` (the counter rows) and
``job_split_chunks``.

Counting a chunk done is one conditional UPDATE of its row (``finished_at IS NULL``) followed,
only when that matched, by ``done = done + 1`` on the counter row: a chunk counted twice would
need two transactions to both see it unfinished, which the row lock of the first UPDATE rules
out on PostgreSQL and SQLite's single writer rules out there.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from signalfactory.adapters.storage.tables import job_split_chunks, job_splits
from signalfactory.domain.job_splits import ChunkState, Completion, SplitState


class SqlSplitRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def create(self, parent_job_id: str, kind: str, chunk_job_ids: Sequence[str],
               now: datetime, cut: str | None = None) -> bool:
        if self.conn.execute(sa.select(job_splits.c.parent_job_id).where(
                job_splits.c.parent_job_id == parent_job_id)).first() is not None:
            return False
        self.conn.execute(sa.insert(job_splits).values(
            parent_job_id=parent_job_id, kind=kind, total=len(chunk_job_ids), done=0,
            created_at=now, cut=cut))
        if chunk_job_ids:
            self.conn.execute(sa.insert(job_split_chunks), [
                {"parent_job_id": parent_job_id, "idx": i, "job_id": job_id, "executions": 0}
                for i, job_id in enumerate(chunk_job_ids)])
        return True

    def get(self, parent_job_id: str) -> SplitState | None:
        head = self.conn.execute(sa.select(job_splits).where(
            job_splits.c.parent_job_id == parent_job_id)).mappings().first()
        if head is None:
            return None
        c = job_split_chunks.c
        rows = self.conn.execute(sa.select(
            c.idx, c.job_id, c.executions, c.finished_at, c.seconds).where(
            c.parent_job_id == parent_job_id).order_by(c.idx)).all()
        return SplitState(
            parent_job_id=parent_job_id, kind=str(head["kind"]), total=int(head["total"]),
            done=int(head["done"]),
            chunks=tuple(ChunkState(int(r.idx), str(r.job_id), int(r.executions),
                                    r.finished_at is not None,
                                    None if r.seconds is None else float(r.seconds))
                         for r in rows))

    def counts(self, parent_job_id: str) -> tuple[int, int] | None:
        # the counter row only: on SQLite a chunk row's ``finished_at`` lies past its result
        # blob, so reading it walks the blob's overflow pages (tens of ms a chunk)
        s = job_splits.c
        row = self.conn.execute(sa.select(s.done, s.total).where(
            s.parent_job_id == parent_job_id)).first()
        return None if row is None else (int(row[0]), int(row[1]))

    def pending(self, parent_job_id: str) -> list[tuple[int, str]]:
        c = job_split_chunks.c
        # a chunk holding its result is finished: SQLite's typeof() reads the blob's type
        # alone, where ``finished_at`` (after the blob) would walk all its overflow pages
        held = sa.func.typeof(c.result) != "null" if self.conn.dialect.name == "sqlite" \
            else c.result.is_not(None)
        rows = self.conn.execute(sa.select(c.idx, c.job_id).where(
            c.parent_job_id == parent_job_id,
            sa.case((held, sa.false()), else_=c.finished_at.is_(None))).order_by(c.idx)).all()
        return [(int(r.idx), str(r.job_id)) for r in rows]

    def cut(self, parent_job_id: str) -> str | None:
        value = self.conn.execute(sa.select(job_splits.c.cut).where(
            job_splits.c.parent_job_id == parent_job_id)).scalar_one_or_none()
        return None if value is None else str(value)

    def started(self, parent_job_id: str, index: int) -> int:
        c = job_split_chunks.c
        row = self.conn.execute(
            sa.update(job_split_chunks).where(c.parent_job_id == parent_job_id, c.idx == index)
            .values(executions=c.executions + 1).returning(c.executions)).first()
        return 0 if row is None else int(row[0])

    def complete(self, parent_job_id: str, index: int, result: bytes, seconds: float,
                 now: datetime) -> Completion:
        c = job_split_chunks.c
        counted = self.conn.execute(
            sa.update(job_split_chunks).where(c.parent_job_id == parent_job_id, c.idx == index,
                                              c.finished_at.is_(None))
            .values(result=result, seconds=seconds, finished_at=now)).rowcount == 1
        s = job_splits.c
        if counted:
            self.conn.execute(sa.update(job_splits).where(s.parent_job_id == parent_job_id)
                              .values(done=s.done + 1))
            self.conn.execute(sa.update(job_splits).where(
                s.parent_job_id == parent_job_id, s.done >= s.total).values(finished_at=now))
        row = self.conn.execute(sa.select(s.done, s.total).where(
            s.parent_job_id == parent_job_id)).first()
        if row is None:
            return Completion(0, 0, False)
        return Completion(int(row[0]), int(row[1]), counted)

    def results(self, parent_job_id: str) -> list[bytes]:
        c = job_split_chunks.c
        rows = self.conn.execute(sa.select(c.result).where(
            c.parent_job_id == parent_job_id, c.result.is_not(None)).order_by(c.idx)).all()
        return [bytes(r[0]) for r in rows]

    def drop_results(self, parent_job_id: str) -> None:
        c = job_split_chunks.c
        self.conn.execute(sa.update(job_split_chunks).where(c.parent_job_id == parent_job_id)
                          .values(result=None))
