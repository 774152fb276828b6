"""In-memory job ports: the ``JobRepository`` over a plain store, and a recording queue."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

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
from signalfactory.testing.memory import MemoryState


@dataclass
class ScheduleRow:
    last_slot: datetime
    last_job_id: str | None
    updated_at: datetime


@dataclass
class JobStore:
    """What the ``jobs`` and ``job_schedules`` tables hold."""

    jobs: dict[str, Job] = field(default_factory=dict)
    schedules: dict[str, ScheduleRow] = field(default_factory=dict)


def _claimable(job: Job, now: datetime) -> bool:
    return job.status == QUEUED and job.run_after <= now


def _expired(job: Job, now: datetime) -> bool:
    return (job.status == RUNNING and job.lease_expires_at is not None
            and job.lease_expires_at < now)


class MemoryJobRepository:
    """The ``JobRepository`` port in memory, with the SQL repository's semantics."""

    def __init__(self, state: MemoryState) -> None:
        self.store = state.store("jobs", JobStore)

    def _owned(self, job_id: str, tenant_id: int | None) -> Job | None:
        job = self.store.jobs.get(job_id)
        if job is None or (tenant_id is not None and job.tenant_id != tenant_id):
            return None
        return job

    def _put(self, job: Job) -> Job:
        self.store.jobs[job.id] = job
        return job

    # -- submitting and reading --
    def insert(self, new: NewJob, now: datetime) -> tuple[Job, bool]:
        if new.dedupe_key is not None:
            for job in self.store.jobs.values():
                if job.tenant_id == new.tenant_id and job.dedupe_key == new.dedupe_key:
                    return job, False
        job = Job(id=str(uuid.uuid4()), tenant_id=new.tenant_id, kind=new.kind,
                  payload=dict(new.payload), status=QUEUED, progress=0.0, result=None,
                  error=None, attempts=0, max_attempts=new.max_attempts,
                  priority=new.priority, cancel_requested=False, dedupe_key=new.dedupe_key,
                  lease_owner=None, lease_expires_at=None, run_after=new.run_after or now,
                  dispatched_at=None, created_at=now, started_at=None, finished_at=None,
                  max_losses=new.max_losses)
        return self._put(job), True

    def get(self, job_id: str, tenant_id: int | None = None) -> Job | None:
        return self._owned(job_id, tenant_id)

    def find(self, *, tenant_id: int | None, status: str | None = None,
             kind: str | None = None, limit: int = 100, offset: int = 0) -> list[Job]:
        found = [j for j in self.store.jobs.values()
                 if (tenant_id is None or j.tenant_id == tenant_id)
                 and (status is None or j.status == status) and (kind is None or j.kind == kind)]
        found.sort(key=lambda j: (j.created_at, j.id), reverse=True)
        return found[offset:offset + limit]

    def newest(self, kind: str, status: str) -> Job | None:
        found = [j for j in self.store.jobs.values()
                 if j.kind == kind and j.status == status and j.finished_at is not None]
        return max(found, key=lambda j: j.finished_at or j.created_at, default=None)

    def counts(self) -> list[JobCount]:
        tally: dict[tuple[str, str], int] = {}
        for job in self.store.jobs.values():
            if job.status in (QUEUED, RUNNING, DEAD):
                tally[(job.kind, job.status)] = tally.get((job.kind, job.status), 0) + 1
        return [JobCount(kind, status, n) for (kind, status), n in sorted(tally.items())]

    # -- claiming and running --
    def _runnable(self, now: datetime) -> list[Job]:
        found = [j for j in self.store.jobs.values() if _claimable(j, now)]
        found.sort(key=lambda j: (-j.priority, j.created_at, j.id))
        return found

    def has_claimable(self, now: datetime) -> bool:
        return bool(self._runnable(now))

    def _take(self, job: Job, owner: str, lease_seconds: float, now: datetime) -> Job:
        return self._put(replace(job, status=RUNNING, lease_owner=owner,
                                 lease_expires_at=now + timedelta(seconds=lease_seconds),
                                 attempts=job.attempts + 1,
                                 started_at=job.started_at or now))

    def claim_next(self, owner: str, lease_seconds: float, now: datetime) -> Job | None:
        runnable = self._runnable(now)
        return self._take(runnable[0], owner, lease_seconds, now) if runnable else None

    def claim(self, job_id: str, owner: str, lease_seconds: float,
              now: datetime) -> Job | None:
        job = self.store.jobs.get(job_id)
        if job is None or not _claimable(job, now):
            return None
        return self._take(job, owner, lease_seconds, now)

    def _leased(self, job_id: str, owner: str) -> Job | None:
        job = self.store.jobs.get(job_id)
        if job is None or job.status != RUNNING or job.lease_owner != owner:
            return None
        return job

    def heartbeat(self, job_id: str, owner: str, lease_seconds: float, now: datetime,
                  progress: float | None = None) -> bool | None:
        job = self._leased(job_id, owner)
        if job is None:
            return None
        self._put(replace(job, lease_expires_at=now + timedelta(seconds=lease_seconds),
                          progress=job.progress if progress is None else progress))
        return job.cancel_requested

    def finish(self, job_id: str, owner: str, *, status: str, now: datetime,
               result: JsonObject | None = None, error: str | None = None,
               run_after: datetime | None = None) -> bool:
        job = self._leased(job_id, owner)
        if job is None:
            return False
        job = replace(job, status=status, lease_owner=None, lease_expires_at=None, error=error)
        if status == QUEUED:
            job = replace(job, run_after=run_after or now, dispatched_at=None)
        else:
            job = replace(job, finished_at=now, result=result)
            if status == SUCCEEDED:
                job = replace(job, progress=1.0)
        self._put(job)
        return True

    def release(self, job_id: str, owner: str, now: datetime,
                run_after: datetime | None = None) -> bool:
        job = self._leased(job_id, owner)
        if job is None:
            return False
        self._put(replace(job, status=QUEUED, lease_owner=None, lease_expires_at=None,
                          run_after=run_after or now, attempts=max(job.attempts - 1, 0),
                          dispatched_at=None))
        return True

    def wake(self, job_id: str, now: datetime) -> bool:
        job = self.store.jobs.get(job_id)
        if job is None or job.status != QUEUED or job.run_after <= now:
            return False
        self._put(replace(job, run_after=now))
        return True

    def has_expired(self, now: datetime) -> bool:
        return any(_expired(j, now) for j in self.store.jobs.values())

    def reap_expired(self, now: datetime) -> list[SettledJob]:
        settled: list[SettledJob] = []
        for job in sorted(self.store.jobs.values(), key=lambda j: j.id):
            if not _expired(job, now):
                continue
            cleared = replace(job, lease_owner=None, lease_expires_at=None)
            losses = job.losses + 1
            if job.cancel_requested:
                self._put(replace(cleared, status=CANCELLED, finished_at=now))
                settled.append(SettledJob(job.kind, CANCELLED, job.id))
            elif losses >= job.max_losses:
                error = (f"the worker running it stopped responding (its lease expired) "
                         f"{losses} times, the limit for lost workers (job_max_losses): the "
                         "task may crash its worker or exhaust its memory; read the worker "
                         "logs, then retry it")
                self._put(replace(cleared, status=DEAD, error=error, losses=losses,
                                  finished_at=now))
                settled.append(SettledJob(job.kind, DEAD, job.id, job.tenant_id, error))
            else:
                self._put(replace(cleared, status=QUEUED, losses=losses, run_after=now,
                                  dispatched_at=None, attempts=max(job.attempts - 1, 0)))
                settled.append(SettledJob(job.kind, QUEUED, job.id))
        return settled

    # -- operator and user actions --
    def cancel(self, job_id: str, tenant_id: int | None, now: datetime) -> str | None:
        job = self._owned(job_id, tenant_id)
        if job is None:
            return None
        if job.status in (QUEUED, DEAD):
            self._put(replace(job, status=CANCELLED, finished_at=now, cancel_requested=True))
            return CANCELLED
        if job.status == RUNNING:
            self._put(replace(job, cancel_requested=True))
            return CANCEL_REQUESTED
        return job.status

    def retry(self, job_id: str, tenant_id: int | None, now: datetime) -> bool:
        job = self._owned(job_id, tenant_id)
        if job is None or job.status not in (DEAD, FAILED, CANCELLED):
            return False
        self._put(replace(job, status=QUEUED, attempts=0, losses=0, cancel_requested=False,
                          result=None, progress=0.0, finished_at=None, run_after=now,
                          dispatched_at=None))
        return True

    def prune(self, older_than: datetime) -> int:
        old = [j.id for j in self.store.jobs.values()
               if j.status in (SUCCEEDED, FAILED, CANCELLED)
               and j.finished_at is not None and j.finished_at < older_than]
        for job_id in old:
            del self.store.jobs[job_id]
        return len(old)

    # -- broker bookkeeping --
    def mark_dispatched(self, job_ids: Sequence[str], at: datetime) -> None:
        for job_id in job_ids:
            job = self.store.jobs.get(job_id)
            if job is not None:
                self._put(replace(job, dispatched_at=at))

    def undispatched(self, now: datetime, stale_seconds: float, limit: int = 500) -> list[str]:
        stale = now - timedelta(seconds=stale_seconds)
        found = [j for j in self.store.jobs.values()
                 if (j.status == QUEUED and j.run_after <= now
                     and (j.dispatched_at is None or j.dispatched_at < stale))
                 or _expired(j, now)]
        found.sort(key=lambda j: (-j.priority, j.created_at))
        return [j.id for j in found[:limit]]

    # -- schedules --
    def lock_schedule(self, name: str, now: datetime) -> datetime | None:
        row = self.store.schedules.get(name)
        if row is None:
            return None
        row.updated_at = now
        return row.last_slot

    def record_first_slot(self, name: str, slot: datetime, job_id: str | None,
                          now: datetime) -> None:
        self.store.schedules.setdefault(name, ScheduleRow(slot, job_id, now))

    def advance_schedule(self, name: str, slot: datetime, job_id: str | None,
                         now: datetime) -> None:
        row = self.store.schedules.get(name)
        if row is not None and row.last_slot < slot:
            self.store.schedules[name] = ScheduleRow(slot, job_id, now)


class RecordingJobQueue:
    """A job queue that remembers what it was asked to announce (and wakes local runners)."""

    def __init__(self) -> None:
        self.announced: list[str] = []
        self._wakers: list[threading.Event] = []

    def add_waker(self, event: threading.Event) -> None:
        self._wakers.append(event)

    def remove_waker(self, event: threading.Event) -> None:
        if event in self._wakers:
            self._wakers.remove(event)

    def announce(self, job_ids: Sequence[str]) -> None:
        self.announced.extend(job_ids)
        for event in self._wakers:
            event.set()
