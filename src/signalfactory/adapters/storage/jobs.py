"""The ``JobRepository`` port in SQL: the ``jobs`` and ``job_schedules`` tables.

Every state change is one UPDATE whose WHERE clause states the state it expects
(``status='running' AND lease_owner=:me``), so two workers, a zombie and a cancel can race
without corrupting anything: the loser's UPDATE matches no row.

Times come from the caller's clock; lease expiry therefore tolerates clock skew between
workers up to the lease length.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from signalfactory.adapters.storage.tables import job_schedules, jobs
from signalfactory.domain.jobs import (
    CANCEL_REQUESTED,
    CANCELLED,
    DEAD,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    Job,
    JobCount,
    JsonObject,
    NewJob,
    SettledJob,
)

_TIMES = ("lease_expires_at", "run_after", "dispatched_at", "created_at", "started_at",
          "finished_at")


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything we write is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def job_from_row(row: Mapping[str, Any] | sa.RowMapping) -> Job:
    values = dict(row)
    for key in _TIMES:
        values[key] = as_utc(values[key])
    values["cancel_requested"] = bool(values["cancel_requested"])
    values["progress"] = float(values["progress"])
    return Job(**values)


def dialect_insert(conn: Connection, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
    """``INSERT`` with ``ON CONFLICT`` support for the connection's dialect."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _claimable(table: sa.FromClause, now: datetime) -> sa.ColumnElement[bool]:
    """Queued and due. (A running job whose lease expired is queued again by
    :meth:`SqlJobRepository.reap_expired` first, its loss counted, so that a lost worker never
    spends an attempt.)"""
    c = table.c
    return sa.and_(c.status == QUEUED, c.run_after <= now)


def _claim_values(owner: str, now: datetime, lease_seconds: float) -> dict[str, object]:
    return {"status": RUNNING, "lease_owner": owner,
            "lease_expires_at": now + timedelta(seconds=lease_seconds),
            "attempts": jobs.c.attempts + 1,
            "started_at": sa.func.coalesce(jobs.c.started_at, now)}


def _owned(job_id: str, tenant_id: int | None) -> sa.ColumnElement[bool]:
    if tenant_id is None:
        return jobs.c.id == job_id
    return sa.and_(jobs.c.id == job_id, jobs.c.tenant_id == tenant_id)


def _expired(now: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(jobs.c.status == RUNNING, jobs.c.lease_expires_at < now)


class SqlJobRepository:
    """Jobs and schedules over one connection (the unit of work's transaction)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # -- submitting and reading ---------------------------------------------------------
    def insert(self, new: NewJob, now: datetime) -> tuple[Job, bool]:
        # ON CONFLICT DO NOTHING makes concurrent submissions with one key insert one row.
        values = {"id": str(uuid.uuid4()), "tenant_id": new.tenant_id, "kind": new.kind,
                  "payload": new.payload, "status": QUEUED, "progress": 0.0, "attempts": 0,
                  "max_attempts": new.max_attempts, "priority": new.priority,
                  "losses": 0, "max_losses": new.max_losses,
                  "cancel_requested": False, "dedupe_key": new.dedupe_key,
                  "run_after": new.run_after or now,
                  "created_at": now}
        stmt = dialect_insert(self.conn, jobs).values(**values)
        if new.dedupe_key is not None:
            stmt = stmt.on_conflict_do_nothing(index_elements=["tenant_id", "dedupe_key"])
        inserted = self.conn.execute(stmt.returning(*jobs.c)).mappings().first()
        if inserted is not None:
            return job_from_row(inserted), True
        existing = self.conn.execute(sa.select(jobs).where(
            jobs.c.tenant_id == new.tenant_id, jobs.c.dedupe_key == new.dedupe_key,
        )).mappings().one()
        return job_from_row(existing), False

    def get(self, job_id: str, tenant_id: int | None = None) -> Job | None:
        row = self.conn.execute(sa.select(jobs).where(_owned(job_id, tenant_id))
                                ).mappings().first()
        return job_from_row(row) if row is not None else None

    def find(self, *, tenant_id: int | None, status: str | None = None,
             kind: str | None = None, limit: int = 100, offset: int = 0) -> list[Job]:
        query = sa.select(jobs).order_by(jobs.c.created_at.desc(), jobs.c.id.desc())
        if tenant_id is not None:
            query = query.where(jobs.c.tenant_id == tenant_id)
        if status is not None:
            query = query.where(jobs.c.status == status)
        if kind is not None:
            query = query.where(jobs.c.kind == kind)
        rows = self.conn.execute(query.limit(limit).offset(offset)).mappings().all()
        return [job_from_row(r) for r in rows]

    def newest(self, kind: str, status: str) -> Job | None:
        row = self.conn.execute(sa.select(jobs).where(jobs.c.kind == kind,
                                                      jobs.c.status == status)
                                .order_by(jobs.c.finished_at.desc()).limit(1)
                                ).mappings().first()
        return job_from_row(row) if row is not None else None

    def counts(self) -> list[JobCount]:
        rows = self.conn.execute(sa.select(jobs.c.kind, jobs.c.status, sa.func.count())
                                 .where(jobs.c.status.in_((QUEUED, RUNNING, DEAD)))
                                 .group_by(jobs.c.kind, jobs.c.status))
        return [JobCount(str(r[0]), str(r[1]), int(r[2])) for r in rows]

    # -- claiming and running -----------------------------------------------------------
    def _pick(self, now: datetime) -> sa.Select[tuple[str]]:
        pick_from = jobs.alias("pick")
        return (sa.select(pick_from.c.id).where(_claimable(pick_from, now))
                .order_by(pick_from.c.priority.desc(), pick_from.c.created_at, pick_from.c.id)
                .limit(1))

    def has_claimable(self, now: datetime) -> bool:
        return self.conn.execute(self._pick(now)).first() is not None

    def claim_next(self, owner: str, lease_seconds: float, now: datetime) -> Job | None:
        # PostgreSQL picks with FOR UPDATE SKIP LOCKED so claimers never wait on each other;
        # SQLite serialises writers, and the single UPDATE with its sub-select is atomic.
        pick = self._pick(now)
        if self.conn.dialect.name == "postgresql":
            pick = pick.with_for_update(skip_locked=True)
        stmt = (sa.update(jobs)
                .where(jobs.c.id == pick.scalar_subquery(), _claimable(jobs, now))
                .values(**_claim_values(owner, now, lease_seconds))
                .returning(*jobs.c))
        row = self.conn.execute(stmt).mappings().first()
        return job_from_row(row) if row is not None else None

    def claim(self, job_id: str, owner: str, lease_seconds: float,
              now: datetime) -> Job | None:
        stmt = (sa.update(jobs).where(jobs.c.id == job_id, _claimable(jobs, now))
                .values(**_claim_values(owner, now, lease_seconds)).returning(*jobs.c))
        row = self.conn.execute(stmt).mappings().first()
        return job_from_row(row) if row is not None else None

    def heartbeat(self, job_id: str, owner: str, lease_seconds: float, now: datetime,
                  progress: float | None = None) -> bool | None:
        values: dict[str, object] = {"lease_expires_at": now + timedelta(seconds=lease_seconds)}
        if progress is not None:
            values["progress"] = progress
        row = self.conn.execute(
            sa.update(jobs).where(jobs.c.id == job_id, jobs.c.lease_owner == owner,
                                  jobs.c.status == RUNNING)
            .values(**values).returning(jobs.c.cancel_requested)).first()
        return None if row is None else bool(row[0])

    def finish(self, job_id: str, owner: str, *, status: str, now: datetime,
               result: JsonObject | None = None, error: str | None = None,
               run_after: datetime | None = None) -> bool:
        values: dict[str, object] = {"status": status, "lease_owner": None,
                                     "lease_expires_at": None, "error": error}
        if status == QUEUED:
            values.update(run_after=run_after or now, dispatched_at=None)
        else:
            values.update(finished_at=now, result=result)
            if status == SUCCEEDED:
                values["progress"] = 1.0
        updated = self.conn.execute(sa.update(jobs).where(
            jobs.c.id == job_id, jobs.c.lease_owner == owner, jobs.c.status == RUNNING,
        ).values(**values))
        return updated.rowcount == 1

    def release(self, job_id: str, owner: str, now: datetime,
                run_after: datetime | None = None) -> bool:
        updated = self.conn.execute(sa.update(jobs).where(
            jobs.c.id == job_id, jobs.c.lease_owner == owner, jobs.c.status == RUNNING,
        ).values(status=QUEUED, lease_owner=None, lease_expires_at=None,
                 run_after=run_after or now,
                 attempts=sa.case((jobs.c.attempts > 0, jobs.c.attempts - 1), else_=0),
                 dispatched_at=None))
        return updated.rowcount == 1

    def wake(self, job_id: str, now: datetime) -> bool:
        updated = self.conn.execute(sa.update(jobs).where(
            jobs.c.id == job_id, jobs.c.status == QUEUED, jobs.c.run_after > now,
        ).values(run_after=now))
        return updated.rowcount == 1

    def has_expired(self, now: datetime) -> bool:
        return self.conn.execute(sa.select(jobs.c.id).where(_expired(now)).limit(1)
                                 ).first() is not None

    def reap_expired(self, now: datetime) -> list[SettledJob]:
        expired = _expired(now)
        cleared = {"lease_owner": None, "lease_expires_at": None}
        rows = self.conn.execute(
            sa.update(jobs).where(expired, jobs.c.cancel_requested.is_(True))
            .values(status=CANCELLED, finished_at=now, **cleared)
            .returning(jobs.c.kind, jobs.c.id)).all()
        settled = [SettledJob(str(r[0]), CANCELLED, str(r[1])) for r in rows]
        losses = jobs.c.losses + 1
        lost = (sa.literal("the worker running it stopped responding (its lease expired) ")
                + sa.cast(losses, sa.String) + sa.literal(
                    " times, the limit for lost workers (job_max_losses): the task may crash "
                    "its worker or exhaust its memory; read the worker logs, then retry it"))
        rows = self.conn.execute(
            sa.update(jobs).where(expired, losses >= jobs.c.max_losses)
            .values(status=DEAD, error=lost, losses=losses, finished_at=now, **cleared)
            .returning(jobs.c.kind, jobs.c.id, jobs.c.tenant_id, jobs.c.error)).all()
        settled += [SettledJob(str(r[0]), DEAD, str(r[1]), int(r[2]), str(r[3])) for r in rows]
        # The rest run again: the lost run counts as a loss, and its attempt is handed back
        # (the next claim counts it again), as when a stopping worker releases a job.
        rows = self.conn.execute(
            sa.update(jobs).where(expired)
            .values(status=QUEUED, losses=losses, run_after=now, dispatched_at=None,
                    attempts=sa.case((jobs.c.attempts > 0, jobs.c.attempts - 1), else_=0),
                    **cleared)
            .returning(jobs.c.kind, jobs.c.id)).all()
        return settled + [SettledJob(str(r[0]), QUEUED, str(r[1])) for r in rows]

    # -- operator and user actions ------------------------------------------------------
    def cancel(self, job_id: str, tenant_id: int | None, now: datetime) -> str | None:
        # Writes come first so that SQLite takes its write lock at the start of the
        # transaction instead of upgrading a read snapshot.
        done = self.conn.execute(
            sa.update(jobs).where(_owned(job_id, tenant_id), jobs.c.status.in_((QUEUED, DEAD)))
            .values(status=CANCELLED, finished_at=now, cancel_requested=True))
        if done.rowcount:
            return CANCELLED
        asked = self.conn.execute(
            sa.update(jobs).where(_owned(job_id, tenant_id), jobs.c.status == RUNNING)
            .values(cancel_requested=True))
        if asked.rowcount:
            return CANCEL_REQUESTED
        status = self.conn.execute(sa.select(jobs.c.status).where(_owned(job_id, tenant_id))
                                   ).scalar()
        return None if status is None else str(status)

    def retry(self, job_id: str, tenant_id: int | None, now: datetime) -> bool:
        updated = self.conn.execute(sa.update(jobs).where(
            _owned(job_id, tenant_id), jobs.c.status.in_((DEAD, FAILED, CANCELLED)),
        ).values(status=QUEUED, attempts=0, losses=0, cancel_requested=False, result=None,
                 progress=0.0, finished_at=None, run_after=now, dispatched_at=None))
        return updated.rowcount == 1

    def prune(self, older_than: datetime) -> int:
        deleted = self.conn.execute(sa.delete(jobs).where(
            jobs.c.status.in_((SUCCEEDED, FAILED, CANCELLED)), jobs.c.finished_at < older_than))
        return int(deleted.rowcount or 0)

    # -- broker bookkeeping -------------------------------------------------------------
    def mark_dispatched(self, job_ids: Sequence[str], at: datetime) -> None:
        if job_ids:
            self.conn.execute(sa.update(jobs).where(jobs.c.id.in_(list(job_ids)))
                              .values(dispatched_at=at))

    def undispatched(self, now: datetime, stale_seconds: float, limit: int = 500) -> list[str]:
        stale = now - timedelta(seconds=stale_seconds)
        query = (sa.select(jobs.c.id).where(sa.or_(
            sa.and_(jobs.c.status == QUEUED, jobs.c.run_after <= now,
                    sa.or_(jobs.c.dispatched_at.is_(None), jobs.c.dispatched_at < stale)),
            _expired(now),
        )).order_by(jobs.c.priority.desc(), jobs.c.created_at).limit(limit))
        return [str(r[0]) for r in self.conn.execute(query)]

    # -- schedules ----------------------------------------------------------------------
    def lock_schedule(self, name: str, now: datetime) -> datetime | None:
        # Touch the row first: it locks it on PostgreSQL, and the unit of work already holds
        # SQLite's write lock, so concurrent schedulers queue up instead of racing.
        self.conn.execute(sa.update(job_schedules).where(job_schedules.c.name == name)
                          .values(updated_at=now))
        return as_utc(self.conn.execute(sa.select(job_schedules.c.last_slot).where(
            job_schedules.c.name == name)).scalar())

    def record_first_slot(self, name: str, slot: datetime, job_id: str | None,
                          now: datetime) -> None:
        self.conn.execute(dialect_insert(self.conn, job_schedules).values(
            name=name, last_slot=slot, last_job_id=job_id, updated_at=now,
        ).on_conflict_do_nothing(index_elements=["name"]))

    def advance_schedule(self, name: str, slot: datetime, job_id: str | None,
                         now: datetime) -> None:
        self.conn.execute(sa.update(job_schedules).where(
            job_schedules.c.name == name, job_schedules.c.last_slot < slot,
        ).values(last_slot=slot, last_job_id=job_id, updated_at=now))
