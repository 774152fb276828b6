"""SQL over the ``jobs`` table: insert, claim under a lease, heartbeat, finish guarded by the lease.

The row is the only record of a job. Every state change is one UPDATE whose WHERE clause states
the state it expects (``status='running' AND lease_owner=:me``), so two workers, a zombie and a
cancel can race without corrupting anything: the loser's UPDATE matches no row.

Times are UTC from the process clock; lease expiry therefore tolerates clock skew between
workers up to the lease length.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from signalfactory.adapters.storage.tables import jobs

QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
DEAD = "dead"
STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED, DEAD)
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED, DEAD})


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything we write is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Job:
    id: str
    tenant_id: int
    kind: str
    payload: dict[str, Any]
    status: str
    progress: float
    result: dict[str, Any] | None
    error: str | None
    attempts: int
    max_attempts: int
    priority: int
    cancel_requested: bool
    dedupe_key: str | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    run_after: datetime
    dispatched_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def job_from_row(row: Mapping[str, Any] | sa.RowMapping) -> Job:
    values = dict(row)
    for key in ("lease_expires_at", "run_after", "dispatched_at", "created_at", "started_at",
                "finished_at"):
        values[key] = as_utc(values[key])
    values["cancel_requested"] = bool(values["cancel_requested"])
    values["progress"] = float(values["progress"])
    return Job(**values)


def dialect_insert(conn: Connection, table: sa.Table) -> Any:
    """``INSERT`` with ``ON CONFLICT`` support for the connection's dialect."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def insert_job(conn: Connection, *, kind: str, payload: dict[str, Any], tenant_id: int,
               max_attempts: int, priority: int = 0, dedupe_key: str | None = None,
               run_after: datetime | None = None) -> tuple[Job, bool]:
    """Insert a queued job; with a dedupe key already used by the tenant, return that job.

    Returns ``(job, created)``. ``ON CONFLICT DO NOTHING`` makes concurrent submissions with
    one key insert exactly one row on both backends.
    """
    now = utcnow()
    values = {"id": str(uuid.uuid4()), "tenant_id": tenant_id, "kind": kind,
              "payload": payload, "status": QUEUED, "progress": 0.0, "attempts": 0,
              "max_attempts": max_attempts, "priority": priority, "cancel_requested": False,
              "dedupe_key": dedupe_key, "run_after": run_after or now, "created_at": now}
    stmt = dialect_insert(conn, jobs).values(**values)
    if dedupe_key is not None:
        stmt = stmt.on_conflict_do_nothing(index_elements=["tenant_id", "dedupe_key"])
    inserted = conn.execute(stmt.returning(*jobs.c)).mappings().first()
    if inserted is not None:
        return job_from_row(inserted), True
    existing = conn.execute(sa.select(jobs).where(
        jobs.c.tenant_id == tenant_id, jobs.c.dedupe_key == dedupe_key)).mappings().one()
    return job_from_row(existing), False


def fetch_job(conn: Connection, job_id: str, tenant_id: int | None = None) -> Job | None:
    query = sa.select(jobs).where(jobs.c.id == job_id)
    if tenant_id is not None:
        query = query.where(jobs.c.tenant_id == tenant_id)
    row = conn.execute(query).mappings().first()
    return job_from_row(row) if row is not None else None


def list_jobs(conn: Connection, *, tenant_id: int | None, status: str | None = None,
              kind: str | None = None, limit: int = 100, offset: int = 0) -> list[Job]:
    query = sa.select(jobs).order_by(jobs.c.created_at.desc(), jobs.c.id.desc())
    if tenant_id is not None:
        query = query.where(jobs.c.tenant_id == tenant_id)
    if status is not None:
        query = query.where(jobs.c.status == status)
    if kind is not None:
        query = query.where(jobs.c.kind == kind)
    rows = conn.execute(query.limit(limit).offset(offset)).mappings().all()
    return [job_from_row(r) for r in rows]


# -- claiming -------------------------------------------------------------------------------

def _claimable(table: Any, now: datetime) -> sa.ColumnElement[bool]:
    """Queued and due, or running under a lease that expired (its worker is gone)."""
    return sa.or_(
        sa.and_(table.c.status == QUEUED, table.c.run_after <= now),
        sa.and_(table.c.status == RUNNING, table.c.lease_expires_at < now,
                table.c.attempts < table.c.max_attempts, table.c.cancel_requested.is_(False)),
    )


def _claim_values(owner: str, now: datetime, lease_seconds: float) -> dict[str, Any]:
    return {"status": RUNNING, "lease_owner": owner,
            "lease_expires_at": now + timedelta(seconds=lease_seconds),
            "attempts": jobs.c.attempts + 1,
            "started_at": sa.func.coalesce(jobs.c.started_at, now)}


def claim_next(engine: Engine, owner: str, lease_seconds: float) -> Job | None:
    """Take the most urgent runnable job, or None. Safe against any number of claimers.

    PostgreSQL picks the row with ``FOR UPDATE SKIP LOCKED`` so claimers never wait on each
    other; SQLite serialises writers, and the single UPDATE with its sub-select is atomic.
    A read-only peek first keeps idle pollers from taking SQLite's write lock.
    """
    now = utcnow()
    pick_from = jobs.alias("pick")
    pick = (sa.select(pick_from.c.id).where(_claimable(pick_from, now))
            .order_by(pick_from.c.priority.desc(), pick_from.c.created_at, pick_from.c.id)
            .limit(1))
    with engine.connect() as conn:
        if conn.execute(pick).first() is None:
            return None
    if engine.dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    stmt = (sa.update(jobs)
            .where(jobs.c.id == pick.scalar_subquery(), _claimable(jobs, now))
            .values(**_claim_values(owner, now, lease_seconds))
            .returning(*jobs.c))
    with engine.begin() as conn:
        row = conn.execute(stmt).mappings().first()
    return job_from_row(row) if row is not None else None


def claim_job(engine: Engine, job_id: str, owner: str, lease_seconds: float) -> Job | None:
    """Take one named job (what a Celery message names) if it is runnable now."""
    now = utcnow()
    stmt = (sa.update(jobs).where(jobs.c.id == job_id, _claimable(jobs, now))
            .values(**_claim_values(owner, now, lease_seconds)).returning(*jobs.c))
    with engine.begin() as conn:
        row = conn.execute(stmt).mappings().first()
    return job_from_row(row) if row is not None else None


def heartbeat(engine: Engine, job_id: str, owner: str, lease_seconds: float,
              progress: float | None = None) -> bool | None:
    """Renew the lease (and store progress). Returns cancel_requested, or None if the lease
    is no longer ours (another worker took the job over, or it was released)."""
    values: dict[str, Any] = {"lease_expires_at": utcnow() + timedelta(seconds=lease_seconds)}
    if progress is not None:
        values["progress"] = progress
    stmt = (sa.update(jobs).where(jobs.c.id == job_id, jobs.c.lease_owner == owner,
                                  jobs.c.status == RUNNING)
            .values(**values).returning(jobs.c.cancel_requested))
    with engine.begin() as conn:
        row = conn.execute(stmt).first()
    return None if row is None else bool(row[0])


def finish(conn: Connection, job_id: str, owner: str, *, status: str,
           result: dict[str, Any] | None = None, error: str | None = None,
           run_after: datetime | None = None) -> bool:
    """Leave the running state, only if ``owner`` still holds the lease. True when stored.

    ``status=QUEUED`` hands the job back for a later attempt at ``run_after``.
    """
    now = utcnow()
    values: dict[str, Any] = {"status": status, "lease_owner": None, "lease_expires_at": None,
                              "error": error}
    if status == QUEUED:
        values.update(run_after=run_after or now, dispatched_at=None)
    else:
        values.update(finished_at=now, result=result)
        if status == SUCCEEDED:
            values["progress"] = 1.0
    updated = conn.execute(sa.update(jobs).where(
        jobs.c.id == job_id, jobs.c.lease_owner == owner, jobs.c.status == RUNNING,
    ).values(**values))
    return updated.rowcount == 1


def release(engine: Engine, job_id: str, owner: str) -> bool:
    """Hand a job back untried (worker shutting down): the attempt is not counted."""
    with engine.begin() as conn:
        updated = conn.execute(sa.update(jobs).where(
            jobs.c.id == job_id, jobs.c.lease_owner == owner, jobs.c.status == RUNNING,
        ).values(status=QUEUED, lease_owner=None, lease_expires_at=None, run_after=utcnow(),
                 attempts=sa.case((jobs.c.attempts > 0, jobs.c.attempts - 1), else_=0),
                 dispatched_at=None))
    return updated.rowcount == 1


def reap_expired(engine: Engine) -> list[tuple[str, str]]:
    """Settle running jobs whose worker vanished and that may not run again.

    A lost job that was asked to cancel becomes cancelled; one that used its last attempt
    becomes dead (the dead letter) instead of being retried forever. Returns (kind, status).
    """
    now = utcnow()
    expired = sa.and_(jobs.c.status == RUNNING, jobs.c.lease_expires_at < now)
    with engine.connect() as conn:
        if conn.execute(sa.select(jobs.c.id).where(expired).limit(1)).first() is None:
            return []
    settled: list[tuple[str, str]] = []
    lost = "the worker running it stopped responding (its lease expired)"
    with engine.begin() as conn:
        rows = conn.execute(sa.update(jobs).where(expired, jobs.c.cancel_requested.is_(True))
                            .values(status=CANCELLED, finished_at=now, lease_owner=None,
                                    lease_expires_at=None)
                            .returning(jobs.c.kind)).all()
        settled += [(r[0], CANCELLED) for r in rows]
        rows = conn.execute(sa.update(jobs).where(expired,
                                                  jobs.c.attempts >= jobs.c.max_attempts)
                            .values(status=DEAD, finished_at=now, lease_owner=None,
                                    lease_expires_at=None,
                                    error=f"{lost} on its last allowed attempt")
                            .returning(jobs.c.kind)).all()
        settled += [(r[0], DEAD) for r in rows]
    return settled


# -- operator and user actions ---------------------------------------------------------------

def _owned(job_id: str, tenant_id: int | None) -> sa.ColumnElement[bool]:
    if tenant_id is None:
        return jobs.c.id == job_id
    return sa.and_(jobs.c.id == job_id, jobs.c.tenant_id == tenant_id)


def cancel(conn: Connection, job_id: str, tenant_id: int | None = None) -> str | None:
    """Cancel now if queued (or discard if dead), else ask the running task to stop.

    Returns 'cancelled', 'requested', the terminal status the job already had, or None when
    there is no such job (for this tenant). Writes come first so that SQLite takes its write
    lock at the start of the transaction instead of upgrading a read snapshot.
    """
    done = conn.execute(sa.update(jobs).where(_owned(job_id, tenant_id),
                                              jobs.c.status.in_((QUEUED, DEAD)))
                        .values(status=CANCELLED, finished_at=utcnow(), cancel_requested=True))
    if done.rowcount:
        return CANCELLED
    asked = conn.execute(sa.update(jobs).where(_owned(job_id, tenant_id),
                                               jobs.c.status == RUNNING)
                         .values(cancel_requested=True))
    if asked.rowcount:
        return "requested"
    status = conn.execute(sa.select(jobs.c.status).where(_owned(job_id, tenant_id))).scalar()
    return None if status is None else str(status)


def retry(conn: Connection, job_id: str, tenant_id: int | None = None) -> bool:
    """Queue a dead, failed or cancelled job again with a fresh attempt budget."""
    updated = conn.execute(sa.update(jobs).where(
        _owned(job_id, tenant_id), jobs.c.status.in_((DEAD, FAILED, CANCELLED)),
    ).values(status=QUEUED, attempts=0, cancel_requested=False, result=None, progress=0.0,
             finished_at=None, run_after=utcnow(), dispatched_at=None))
    return updated.rowcount == 1


def mark_dispatched(engine: Engine, job_ids: Iterable[str],
                    at: datetime | None = None) -> None:
    ids = list(job_ids)
    if not ids:
        return
    with engine.begin() as conn:
        conn.execute(sa.update(jobs).where(jobs.c.id.in_(ids))
                     .values(dispatched_at=at or utcnow()))


def undispatched(engine: Engine, stale_seconds: float, limit: int = 500) -> list[str]:
    """Jobs a Celery worker should be told about: queued and due with no recent message, or
    running under an expired lease (their worker died)."""
    now = utcnow()
    stale = now - timedelta(seconds=stale_seconds)
    query = (sa.select(jobs.c.id).where(sa.or_(
        sa.and_(jobs.c.status == QUEUED, jobs.c.run_after <= now,
                sa.or_(jobs.c.dispatched_at.is_(None), jobs.c.dispatched_at < stale)),
        sa.and_(jobs.c.status == RUNNING, jobs.c.lease_expires_at < now),
    )).order_by(jobs.c.priority.desc(), jobs.c.created_at).limit(limit))
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(query)]


def counts(conn: Connection) -> dict[tuple[str, str], int]:
    """(kind, status) -> count for the states the gauges show."""
    rows = conn.execute(sa.select(jobs.c.kind, jobs.c.status, sa.func.count())
                        .where(jobs.c.status.in_((QUEUED, RUNNING, DEAD)))
                        .group_by(jobs.c.kind, jobs.c.status))
    return {(r[0], r[1]): int(r[2]) for r in rows}


def prune(conn: Connection, older_than: datetime) -> int:
    """Delete finished jobs (not dead ones: they wait for a person) older than a cut-off."""
    deleted = conn.execute(sa.delete(jobs).where(
        jobs.c.status.in_((SUCCEEDED, FAILED, CANCELLED)), jobs.c.finished_at < older_than))
    return int(deleted.rowcount or 0)
