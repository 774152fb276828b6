"""Ports of the job runtime: where jobs are recorded, and how workers hear about them.

Every state change of a job is one conditional write that states the state it expects (a
finish only lands while ``status='running' AND lease_owner=:me``), so two workers, a zombie
and a cancel can race without corrupting anything: the loser's write matches nothing.
Times are passed in by the caller (the platform clock), never read by the repository.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from signalfactory.domain.job_splits import Completion, SplitState
from signalfactory.domain.jobs import Job, JobCount, JsonObject, NewJob, SettledJob


class JobRepository(Protocol):
    """Durable jobs and their schedules, bound to one unit of work."""

    # -- submitting and reading --
    def insert(self, new: NewJob, now: datetime) -> tuple[Job, bool]:
        """Store a queued job, due at ``new.run_after`` (default now). With a dedupe key the
        tenant used before, store nothing and return that job. Returns ``(job, created)``;
        concurrent submissions with one key store exactly one job."""
        ...

    def get(self, job_id: str, tenant_id: int | None = None) -> Job | None:
        """The job, or None (also when it belongs to another tenant than ``tenant_id``)."""
        ...

    def find(self, *, tenant_id: int | None, status: str | None = None,
             kind: str | None = None, limit: int = 100, offset: int = 0) -> list[Job]:
        """Jobs newest first, optionally of one tenant, status and kind."""
        ...

    def newest(self, kind: str, status: str) -> Job | None:
        """The job of ``kind`` in ``status`` that finished last (the latest backup)."""
        ...

    def counts(self) -> list[JobCount]:
        """Queued, running and dead jobs per kind (what the gauges show)."""
        ...

    # -- claiming and running --
    def has_claimable(self, now: datetime) -> bool:
        """Whether :meth:`claim_next` could take anything (a read: idle pollers call it
        before taking SQLite's write lock)."""
        ...

    def claim_next(self, owner: str, lease_seconds: float, now: datetime) -> Job | None:
        """Take the most urgent runnable job (queued and due), counting an attempt, or None.
        Safe against any number of claimers. (A job whose worker vanished is queued again by
        :meth:`reap_expired`.)"""
        ...

    def claim(self, job_id: str, owner: str, lease_seconds: float,
              now: datetime) -> Job | None:
        """Take one named job if it is runnable now."""
        ...

    def heartbeat(self, job_id: str, owner: str, lease_seconds: float, now: datetime,
                  progress: float | None = None) -> bool | None:
        """Renew the lease (and store progress). Returns cancel_requested, or None when the
        lease is no longer ``owner``'s."""
        ...

    def finish(self, job_id: str, owner: str, *, status: str, now: datetime,
               result: JsonObject | None = None, error: str | None = None,
               run_after: datetime | None = None) -> bool:
        """Leave the running state if ``owner`` still holds the lease; True when stored.
        ``status=QUEUED`` hands the job back for another attempt at ``run_after``."""
        ...

    def release(self, job_id: str, owner: str, now: datetime,
                run_after: datetime | None = None) -> bool:
        """Hand a job back untried (its worker is stopping, or it waits for its chunks),
        due at ``run_after`` (default now): the attempt is not counted."""
        ...

    def wake(self, job_id: str, now: datetime) -> bool:
        """Make a queued job due now (its chunks are done); False when it is not queued."""
        ...

    def has_expired(self, now: datetime) -> bool:
        """Whether any running job's lease has expired (a read, before :meth:`reap_expired`)."""
        ...

    def reap_expired(self, now: datetime) -> list[SettledJob]:
        """Settle running jobs whose lease expired (their worker vanished), counting the loss:
        cancelled when a cancel was asked, dead when the losses reach ``max_losses``, else
        queued again with the lost run's attempt handed back."""
        ...

    # -- operator and user actions --
    def cancel(self, job_id: str, tenant_id: int | None, now: datetime) -> str | None:
        """Cancel a queued or dead job now, or ask a running one to stop.

        Returns ``cancelled``, ``requested`` (:data:`CANCEL_REQUESTED`), the terminal status
        the job already had, or None when there is no such job (for this tenant)."""
        ...

    def retry(self, job_id: str, tenant_id: int | None, now: datetime) -> bool:
        """Queue a dead, failed or cancelled job again with fresh attempt and loss budgets."""
        ...

    def prune(self, older_than: datetime) -> int:
        """Delete succeeded, failed and cancelled jobs finished before ``older_than`` (dead
        ones wait for a person). Returns how many."""
        ...

    # -- broker bookkeeping --
    def mark_dispatched(self, job_ids: Sequence[str], at: datetime) -> None:
        """Record that a message naming these jobs was published."""
        ...

    def undispatched(self, now: datetime, stale_seconds: float, limit: int = 500) -> list[str]:
        """Jobs a broker worker should be told about: queued and due with no message for
        ``stale_seconds``, or running under an expired lease."""
        ...

    # -- schedules: the last cron slot each schedule fired --
    def lock_schedule(self, name: str, now: datetime) -> datetime | None:
        """Lock the schedule's row for this unit of work and return its last fired slot
        (None for a schedule never seen)."""
        ...

    def record_first_slot(self, name: str, slot: datetime, job_id: str | None,
                          now: datetime) -> None:
        """Remember the first slot of a new schedule (a racing scheduler's row wins)."""
        ...

    def advance_schedule(self, name: str, slot: datetime, job_id: str | None,
                         now: datetime) -> None:
        """Move the schedule's last slot forward to ``slot`` (never back)."""
        ...


class JobQueue(Protocol):
    """Announces committed jobs to the workers that run them (embedded runner or broker).

    Announcing is best effort: a job is a row, and workers find unannounced jobs by polling
    (embedded) or the sweep (broker)."""

    def announce(self, job_ids: Sequence[str]) -> None:
        """Tell workers these committed jobs are ready."""
        ...

    def add_waker(self, event: threading.Event) -> None:
        """Set ``event`` whenever a job is announced (an embedded runner's wake-up)."""
        ...

    def remove_waker(self, event: threading.Event) -> None:
        ...


class SplitRepository(Protocol):
    """Jobs split into chunk jobs: the counter row per parent and a row per chunk."""

    def create(self, parent_job_id: str, kind: str, chunk_job_ids: Sequence[str],
               now: datetime, cut: str | None = None) -> bool:
        """Record the split of ``parent_job_id`` (chunk ``i`` is job ``chunk_job_ids[i]``)
        with nothing done and what the parent cut (``cut``, its own JSON text); False,
        storing nothing, when it was recorded before."""
        ...

    def cut(self, parent_job_id: str) -> str | None:
        """What the parent said it cut when it recorded the split (None: no split, or none
        said)."""
        ...

    def get(self, parent_job_id: str) -> SplitState | None:
        ...

    def counts(self, parent_job_id: str) -> tuple[int, int] | None:
        """(done, total) from the counter row alone (None: no split): no chunk row read."""
        ...

    def pending(self, parent_job_id: str) -> list[tuple[int, str]]:
        """The chunks not finished, as (index, job id), read without their results."""
        ...

    def started(self, parent_job_id: str, index: int) -> int:
        """Count one more execution of the chunk; returns the count (0: no such chunk)."""
        ...

    def complete(self, parent_job_id: str, index: int, result: bytes, seconds: float,
                 now: datetime) -> Completion:
        """Store the chunk's result and count it done, unless it was already: returns
        (done, total, counted) after the write ((0, 0, False) for an unknown split)."""
        ...

    def results(self, parent_job_id: str) -> list[bytes]:
        """The finished chunks' results, by index."""
        ...

    def drop_results(self, parent_job_id: str) -> None:
        """Forget the chunks' results (the parent has assembled them); counters stay."""
        ...
