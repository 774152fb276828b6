"""Running one claimed job: the same code path for the embedded runner and Celery workers.

While the task runs, a heartbeat thread renews the lease and picks up cancel requests. When it
returns, the result (and any effects registered with ``ctx.on_commit``) is written in one
transaction that only commits if this worker still holds the lease, so a worker that was
presumed dead and comes back (a zombie) cannot store a second result.

Errors are classified: bad input fails the job at once (retrying cannot help); an operational
error needs a person and goes straight to the dead letter; anything else is retried with
exponential backoff until the attempts run out, then the job is dead.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from signalfactory.domain.errors import BadInputError, OperationalError, ReadOnlyError
from signalfactory.domain.jobs import (
    CANCELLED,
    DEAD,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    Job,
    JsonObject,
    SettledJob,
)
from signalfactory.observability.logging import bound_context, get_logger
from signalfactory.observability.metrics import (
    JOB_DURATION,
    JOB_WORKER_LOSSES,
    JOBS_RUNNING,
    JOBS_TOTAL,
)
from signalfactory.services.jobs.registry import (
    FinalFailure,
    JobCancelled,
    JobDeferred,
    get_task,
)

if TYPE_CHECKING:
    from signalfactory.services.platform import Platform
    from signalfactory.services.ports import UnitOfWork

log = get_logger("signalfactory.jobs")

#: progress is written at most this often (the heartbeat carries the latest value anyway)
PROGRESS_WRITE_SECONDS = 0.25


def new_owner(label: str = "") -> str:
    """A lease owner id unique to this attempt: host, pid and a random tag."""
    tag = f"{socket.gethostname()[:80]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    return f"{tag}:{label}" if label else tag


#: the outcome of a run that handed its job back to wait (``JobDeferred``)
DEFERRED = "deferred"


@dataclass(frozen=True)
class Outcome:
    """What became of an attempt. ``retry_in`` asks the caller to look again later."""

    status: str
    retry_in: float | None = None


class JobContext:
    """The ``ctx`` a task receives (see
    :class:`signalfactory.services.jobs.registry.TaskContext`)."""

    def __init__(self, platform: Platform, job: Job, owner: str, lease_seconds: float,
                 stopping: threading.Event | None = None) -> None:
        self.platform = platform
        self.job_id = job.id
        self.kind = job.kind
        self.tenant_id = job.tenant_id
        self.attempt = job.runs  # the how-manieth run: lost runs count here, not as attempts
        self.owner = owner
        self.lease_seconds = lease_seconds
        self._stopping = stopping or threading.Event()
        self._progress: float | None = None
        self._last_write = 0.0
        self._effects: list[Callable[[UnitOfWork], None]] = []
        self._lock = threading.Lock()
        self.cancel_requested = job.cancel_requested
        self.lease_lost = False

    # -- the task-facing API --
    def progress(self, fraction: float) -> None:
        fraction = min(max(float(fraction), 0.0), 1.0)
        self._progress = fraction
        if time.monotonic() - self._last_write >= PROGRESS_WRITE_SECONDS:
            self.heartbeat()

    def cancelled(self) -> bool:
        return self.cancel_requested or self.lease_lost or self._stopping.is_set()

    def on_commit(self, write: Callable[[UnitOfWork], None]) -> None:
        self._effects.append(write)

    # -- runner side --
    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def heartbeat(self) -> None:
        with self._lock:
            self._last_write = time.monotonic()
            try:
                with self.platform.database.write() as uow:
                    answer = uow.jobs.heartbeat(self.job_id, self.owner, self.lease_seconds,
                                                self.platform.clock.now(), self._progress)
            except Exception as exc:  # a missed beat is retried next period
                log.warning("job heartbeat failed", error=f"{type(exc).__name__}: {exc}")
                return
        if answer is None:
            if not self.lease_lost:
                log.warning("job lease lost: another worker owns it now, or it was released")
            self.lease_lost = True
        else:
            self.cancel_requested = answer

    def store_outcome(self, status: str, *, result: JsonObject | None = None,
                      error: str | None = None, run_after: datetime | None = None) -> bool:
        """Write the outcome (and, on success, the registered effects) if we own the job."""
        with self.platform.database.write() as uow:
            stored = uow.jobs.finish(self.job_id, self.owner, status=status,
                                     now=self.platform.clock.now(), result=result,
                                     error=error, run_after=run_after)
            if stored and status == SUCCEEDED:
                for write in self._effects:
                    write(uow)
            elif stored and status in (FAILED, DEAD):
                self._follow_failure(uow, status, error or "")
        return stored

    def _follow_failure(self, uow: UnitOfWork, status: str, error: str) -> None:
        spec = get_task(self.kind)
        if spec is None or spec.on_final_failure is None:
            return
        spec.on_final_failure(self.platform, uow, FinalFailure(
            job_id=self.job_id, kind=self.kind, tenant_id=self.tenant_id, status=status,
            error=error))


def _follow_death(platform: Platform, uow: UnitOfWork, job: SettledJob) -> None:
    """A job that died of lost workers is a final failure like one whose task failed: its
    kind's hook (an operator notice) is written in the same transaction."""
    spec = get_task(job.kind)
    if spec is None or spec.on_final_failure is None:
        return
    spec.on_final_failure(platform, uow, FinalFailure(
        job_id=job.job_id, kind=job.kind, tenant_id=job.tenant_id, status=DEAD,
        error=job.error))


class _Heartbeat(threading.Thread):
    def __init__(self, ctx: JobContext) -> None:
        super().__init__(name=f"job-heartbeat-{ctx.job_id[:8]}", daemon=True)
        self.ctx = ctx
        self.done = threading.Event()

    def run(self) -> None:
        period = max(self.ctx.lease_seconds / 3.0, 0.05)
        while not self.done.wait(period):
            self.ctx.heartbeat()


def _json_safe(result: object) -> JsonObject | None:
    if result is None:
        return None
    if not isinstance(result, dict):
        result = {"value": result}
    return dict(json.loads(json.dumps(result, default=str)))


# -- claiming ---------------------------------------------------------------------------------

def reap_expired(platform: Platform) -> None:
    """Settle running jobs whose worker vanished: a lost job asked to cancel becomes
    cancelled, one that lost its worker ``max_losses`` times becomes dead, every other one is
    queued again with the loss counted and its attempt handed back (a lost worker is not the
    task failing). A read first keeps idle pollers off the write lock."""
    now = platform.clock.now()
    with platform.database.read(primary=True) as uow:
        if not uow.jobs.has_expired(now):
            return
    with platform.database.write() as uow:
        settled = uow.jobs.reap_expired(now)
        for job in settled:
            if job.status == DEAD:
                _follow_death(platform, uow, job)
    requeued = []
    for job in settled:
        if job.status == QUEUED:
            requeued.append(job.job_id)
        else:
            JOBS_TOTAL.labels(job.kind, job.status).inc()
        if job.status in (QUEUED, DEAD):
            JOB_WORKER_LOSSES.labels(job.kind).inc()
    if requeued:
        log.warning("jobs whose worker was lost are queued again", jobs=len(requeued))
        platform.jobs.announce(requeued)


def claim_next(platform: Platform, owner: str) -> Job | None:
    """Take the most urgent runnable job under a lease for ``owner``, or None (jobs whose
    worker vanished are queued again first)."""
    reap_expired(platform)
    now = platform.clock.now()
    with platform.database.read(primary=True) as uow:
        if not uow.jobs.has_claimable(now):
            return None
    with platform.database.write() as uow:
        return uow.jobs.claim_next(owner, platform.settings.job_lease_seconds, now)


def release(platform: Platform, job_id: str, owner: str) -> bool:
    """Hand a job back untried (this worker is stopping): the attempt is not counted."""
    with platform.database.write() as uow:
        return uow.jobs.release(job_id, owner, platform.clock.now())


def backoff_seconds(platform: Platform, attempt: int) -> float:
    base = platform.settings.job_backoff_seconds
    return float(min(base * (2 ** max(attempt - 1, 0)), platform.settings.job_backoff_max_seconds))


def run_claimed(platform: Platform, job: Job, owner: str,
                stopping: threading.Event | None = None,
                on_start: Callable[[JobContext], None] | None = None) -> Outcome:
    """Run a job this worker has claimed (``job.lease_owner == owner``) to an outcome."""
    lease = platform.settings.job_lease_seconds
    ctx = JobContext(platform, job, owner, lease, stopping)
    if on_start is not None:
        on_start(ctx)
    beat = _Heartbeat(ctx)
    started = time.perf_counter()
    JOBS_RUNNING.inc()
    with bound_context(job_id=job.id, job_kind=job.kind, tenant_id=job.tenant_id,
                       attempt=job.attempts):
        log.info("job started", max_attempts=job.max_attempts, losses=job.losses)
        beat.start()
        try:
            outcome = _run_task(platform, ctx, job)
        finally:
            beat.done.set()
            beat.join(timeout=5)
            JOBS_RUNNING.dec()
            elapsed = time.perf_counter() - started
            JOB_DURATION.labels(job.kind).observe(elapsed)
        if outcome.status not in ("lost", "released", DEFERRED):
            JOBS_TOTAL.labels(job.kind, FAILED if outcome.status == QUEUED
                              else outcome.status).inc()
        log.info("job finished", status=outcome.status, duration_s=round(elapsed, 3))
    return outcome


def _run_task(platform: Platform, ctx: JobContext, job: Job) -> Outcome:
    spec = get_task(job.kind)
    try:
        if spec is None:
            raise LookupError(f"this worker has no task for job kind {job.kind!r}; deploy the "
                              "same version everywhere or set SIGNALFACTORY_TASK_MODULES")
        result = _json_safe(spec.fn(ctx, dict(job.payload)))
        # inside the try: an effect registered with on_commit that fails is a failed attempt
        return _settle(ctx, SUCCEEDED, result=result)
    except JobDeferred as wait:
        now = platform.clock.now()
        with platform.database.write() as uow:
            handed = uow.jobs.release(job.id, ctx.owner, now,
                                      now + timedelta(seconds=wait.seconds))
        return Outcome(DEFERRED, retry_in=wait.seconds) if handed else Outcome("lost")
    except JobCancelled:
        if ctx.cancel_requested:
            return _settle(ctx, CANCELLED, error="cancelled on request")
        if ctx.stopping and not ctx.lease_lost:
            release(platform, job.id, ctx.owner)
            log.info("job handed back: the worker is stopping")
            return Outcome("released")
        return Outcome("lost")
    except ReadOnlyError:
        # Not a failure of the job: the platform is read-only. The worker pauses and hands
        # the job back, uncounted, once writes work again (release()).
        log.warning("job paused: the platform is read-only")
        raise
    except BadInputError as exc:
        log.warning("job failed: bad input", error=str(exc))
        return _settle(ctx, FAILED, error=str(exc))
    except OperationalError as exc:
        log.error("job dead: needs a person", error=str(exc))
        return _settle(ctx, DEAD, error=str(exc))
    except Exception as exc:  # any other failure is retried, then dead-lettered
        error = f"{type(exc).__name__}: {exc}"
        if job.attempts >= job.max_attempts:
            log.error("job dead: attempts exhausted", error=error, exc_info=True)
            return _settle(ctx, DEAD, error=f"{error} (attempt {job.attempts} of "
                                                  f"{job.max_attempts}; giving up)")
        delay = backoff_seconds(platform, job.attempts)
        log.warning("job attempt failed; will retry", error=error, retry_in_s=delay,
                    exc_info=True)
        run_after = platform.clock.now() + timedelta(seconds=delay)
        if not ctx.store_outcome(QUEUED, error=error, run_after=run_after):
            return Outcome("lost")
        return Outcome(QUEUED, retry_in=delay)


def _settle(ctx: JobContext, status: str, *, result: JsonObject | None = None,
            error: str | None = None) -> Outcome:
    if ctx.store_outcome(status, result=result, error=error):
        return Outcome(status)
    log.warning("job outcome discarded: this worker no longer owns the job", status=status)
    return Outcome("lost")


def execute_by_id(platform: Platform, job_id: str, owner: str | None = None) -> Outcome:
    """Run the named job if it is runnable now (what a Celery message asks for).

    Returns ``retry_in`` when the job is not runnable yet but will be: waiting out a backoff,
    or held under a lease that may belong to a dead worker and has not expired yet.
    """
    reap_expired(platform)
    owner = owner or new_owner("celery")
    now = platform.clock.now()
    with platform.database.write() as uow:
        job = uow.jobs.claim(job_id, owner, platform.settings.job_lease_seconds, now)
    if job is not None:
        return run_claimed(platform, job, owner)
    with platform.database.read(primary=True) as uow:
        current = uow.jobs.get(job_id)
    if current is None:
        return Outcome("missing")
    now = platform.clock.now()
    if current.status == QUEUED and current.run_after > now:
        return Outcome(QUEUED, retry_in=(current.run_after - now).total_seconds())
    if current.status == RUNNING and current.lease_expires_at is not None:
        wait = (current.lease_expires_at - now).total_seconds()
        return Outcome(RUNNING, retry_in=max(wait, 0.0) + 1.0)
    return Outcome(current.status)
