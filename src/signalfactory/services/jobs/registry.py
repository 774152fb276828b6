"""Jobs: the task registry and the use cases submit, get, list, cancel and retry.

A job kind is a plain function ``fn(ctx, payload) -> dict | None`` registered under a name.
The same function runs in the embedded runner and in a Celery worker; the database row is the
record of the job and a queue message only ever carries its id.

Registering kinds::

    from signalfactory.services.jobs.registry import register_task

    def run_backtest(ctx: TaskContext, payload: dict) -> dict:
        ...
        ctx.progress(0.5)
        if ctx.cancelled():
            raise JobCancelled
        return {"backtest_id": 7}

    register_task("backtest", run_backtest)

Modules that register kinds are imported by :func:`ensure_tasks_loaded`: the built-in list
:data:`TASK_MODULES` plus ``SIGNALFACTORY_TASK_MODULES`` (comma-separated), so API, worker and
scheduler processes all know the same kinds.
"""

from __future__ import annotations

import importlib
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from signalfactory.domain.errors import BadInputError, ConflictError, NotFoundError
from signalfactory.domain.jobs import FAILED, STATUSES, SUCCEEDED, Job, JsonObject, NewJob
from signalfactory.domain.tenants import DEFAULT_TENANT_ID
from signalfactory.observability.logging import get_logger

if TYPE_CHECKING:
    from signalfactory.services.platform import Platform
    from signalfactory.services.ports import UnitOfWork

log = get_logger("signalfactory.jobs")

#: Modules imported before any job is submitted or run; each registers kinds at import.
TASK_MODULES: list[str] = [
    "signalfactory.services.jobs.tasks",
    "signalfactory.services.marketdata.tasks",
    "signalfactory.services.backtests.tasks",
    "signalfactory.services.scans.tasks",
    "signalfactory.services.delivery.tasks",
    "signalfactory.services.trading.tasks",
    "signalfactory.services.reports.tasks",
    "signalfactory.services.sources.tasks",
    "signalfactory.ops.tasks",
]


class TaskContext(Protocol):
    """What a task function receives besides its payload."""

    job_id: str
    tenant_id: int
    attempt: int
    platform: Platform

    def progress(self, fraction: float) -> None:
        """Report progress in [0, 1]; stored for status reads (throttled)."""

    def cancelled(self) -> bool:
        """True when the job should stop: cancel requested, lease lost, or worker stopping.
        A task that sees it should raise :class:`JobCancelled`."""

    def on_commit(self, write: Callable[[UnitOfWork], None]) -> None:
        """Run ``write`` in the unit of work that stores the result, only if this attempt
        still owns the job: effects written this way happen exactly once."""


TaskFn = Callable[[TaskContext, JsonObject], JsonObject | None]


class JobCancelled(Exception):  # noqa: N818 - it is a signal from the task, not an error
    """Raised by a task that stopped because :meth:`TaskContext.cancelled` said so."""


class JobDeferred(Exception):  # noqa: N818 - it is a signal from the task, not an error
    """Raised by a task waiting on other jobs (its chunks): the job goes back to the queue,
    due in ``seconds``, without counting an attempt; it runs again from the start then."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"waiting {seconds:g} s")
        self.seconds = float(seconds)


@dataclass(frozen=True)
class FinalFailure:
    """A job that ended failed or dead: what a kind's ``on_final_failure`` hook is told."""

    job_id: str
    kind: str
    tenant_id: int
    status: str
    error: str


#: writes, in the unit of work that stores the final failure, what should follow it (a
#: notice to an operator): both commit or neither
FailureHook = Callable[["Platform", "UnitOfWork", FinalFailure], None]


@dataclass(frozen=True)
class TaskSpec:
    kind: str
    fn: TaskFn
    max_attempts: int | None = None
    on_final_failure: FailureHook | None = None


KIND_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_REGISTRY: dict[str, TaskSpec] = {}
_LOADED: set[str] = set()
_LOAD_LOCK = threading.Lock()


def register_task(kind: str, fn: TaskFn, *, max_attempts: int | None = None,
                  on_final_failure: FailureHook | None = None) -> TaskFn:
    """Register ``fn`` as the code of jobs of ``kind`` (re-registering replaces it)."""
    if not KIND_PATTERN.fullmatch(kind):
        raise ValueError(f"job kind must be 1..64 of A-Z a-z 0-9 _ . : -, got {kind!r}")
    _REGISTRY[kind] = TaskSpec(kind, fn, max_attempts, on_final_failure)
    return fn


def get_task(kind: str) -> TaskSpec | None:
    return _REGISTRY.get(kind)


def registered_kinds() -> list[str]:
    return sorted(_REGISTRY)


def ensure_tasks_loaded(module_names: list[str] | None = None) -> None:
    """Import the modules that register kinds (idempotent, thread-safe)."""
    names = [*TASK_MODULES, *(module_names or [])]
    with _LOAD_LOCK:
        for name in names:
            if name in _LOADED:
                continue
            try:
                importlib.import_module(name)
            except ImportError as exc:
                raise BadInputError(
                    f"cannot import task module {name!r} ({exc}); check "
                    "SIGNALFACTORY_TASK_MODULES and that the module is on the Python path"
                ) from exc
            _LOADED.add(name)


# -- use cases --------------------------------------------------------------------------------

def submit(platform: Platform, kind: str, payload: JsonObject | None = None, *,
           tenant_id: int = DEFAULT_TENANT_ID, priority: int = 0,
           max_attempts: int | None = None, dedupe_key: str | None = None,
           uow: UnitOfWork | None = None) -> Job:
    """Record a job and hand it to a worker. Returns the job (the existing one when
    ``dedupe_key`` was used before by this tenant with the same kind and payload).

    With ``uow`` the job is written in the caller's unit of work and NOT announced: call
    :func:`dispatch` after the commit (workers find it anyway by polling or the sweep, only
    later).
    """
    ensure_tasks_loaded(platform.settings.task_module_names)
    spec = get_task(kind)
    if spec is None:
        raise BadInputError(f"unknown job kind {kind!r}; known kinds: "
                            f"{', '.join(registered_kinds()) or 'none'}")
    payload = dict(payload or {})
    if dedupe_key is not None and (not 1 <= len(dedupe_key) <= 200 or "\x00" in dedupe_key):
        raise BadInputError("a dedupe key is 1 to 200 characters, without NUL")
    attempts = max_attempts or spec.max_attempts or platform.settings.job_max_attempts
    if not 1 <= attempts <= 100:
        raise BadInputError(f"max_attempts must be between 1 and 100, got {attempts}")
    new = NewJob(kind=kind, payload=payload, tenant_id=tenant_id, max_attempts=attempts,
                 priority=priority, dedupe_key=dedupe_key,
                 max_losses=platform.settings.job_max_losses)
    if uow is not None:
        job, created = uow.jobs.insert(new, platform.clock.now())
    else:
        with platform.database.write() as own:
            job, created = own.jobs.insert(new, platform.clock.now())
    if not created and (job.kind != kind or job.payload != payload):
        raise ConflictError(f"dedupe key {dedupe_key!r} was already used for a different job "
                            f"({job.id}, kind {job.kind}); use a new key for new work")
    if created:
        log.debug("job submitted", job_id=job.id, job_kind=kind, tenant_id=tenant_id)
        if uow is None:
            dispatch(platform, job.id)
    return job


def dispatch(platform: Platform, job_id: str) -> None:
    """Tell the workers about a committed job through the platform's job queue. Never
    raises: a job that could not be announced stays queued and is picked up by polling or
    the sweep."""
    try:
        platform.jobs.announce([job_id])
    except Exception as exc:  # the row is safe; announcing is best effort
        log.warning("job queued but not announced; workers will find it later",
                    job_id=job_id, error=f"{type(exc).__name__}: {exc}")


def get_job(platform: Platform, job_id: str, *, tenant_id: int | None = None) -> Job:
    """The job, or NotFoundError (also when it belongs to another tenant)."""
    with platform.database.read() as uow:
        job = uow.jobs.get(job_id, tenant_id)
    if job is None:
        with platform.database.read(primary=True) as uow:  # just submitted: a replica may lag
            job = uow.jobs.get(job_id, tenant_id)
    if job is None:
        raise NotFoundError(f"no job {job_id}")
    return job


def list_jobs(platform: Platform, *, tenant_id: int | None, status: str | None = None,
              kind: str | None = None, limit: int = 100, offset: int = 0) -> list[Job]:
    if status is not None and status not in STATUSES:
        raise BadInputError(f"unknown status {status!r}; use one of {', '.join(STATUSES)}")
    with platform.database.read() as uow:
        return uow.jobs.find(tenant_id=tenant_id, status=status, kind=kind, limit=limit,
                             offset=offset)


def cancel_job(platform: Platform, job_id: str, *, tenant_id: int | None = None) -> Job:
    """Cancel a queued job now, ask a running one to stop, discard a dead one.

    Cancelling a cancelled job is a no-op; a succeeded or failed job cannot be cancelled.
    """
    with platform.database.write() as uow:
        outcome = uow.jobs.cancel(job_id, tenant_id, platform.clock.now())
    if outcome is None:
        raise NotFoundError(f"no job {job_id}")
    if outcome in (SUCCEEDED, FAILED):
        raise ConflictError(f"job {job_id} already {outcome}; there is nothing to cancel")
    log.info("job cancel", job_id=job_id, outcome=outcome)
    return _fresh(platform, job_id)


def retry_job(platform: Platform, job_id: str, *, tenant_id: int | None = None) -> Job:
    """Queue a dead, failed or cancelled job again with a fresh attempt budget."""
    with platform.database.write() as uow:
        retried = uow.jobs.retry(job_id, tenant_id, platform.clock.now())
    if not retried:
        job = get_job(platform, job_id, tenant_id=tenant_id)
        raise ConflictError(f"job {job_id} is {job.status}; only dead, failed or cancelled "
                            "jobs can be retried")
    log.info("job retried", job_id=job_id)
    dispatch(platform, job_id)
    return _fresh(platform, job_id)


def _fresh(platform: Platform, job_id: str) -> Job:
    """Read from the primary: the caller just wrote and a replica may lag."""
    with platform.database.read(primary=True) as uow:
        job = uow.jobs.get(job_id)
    if job is None:
        raise NotFoundError(f"no job {job_id}")
    return job


def wait_for(platform: Platform, job_id: str, *, timeout: float = 60.0,
             poll: float = 0.2, on_progress: Callable[[Job], None] | None = None) -> Job:
    """Poll until the job is finished (or the timeout passes); returns its last state."""
    deadline = time.monotonic() + timeout
    while True:
        job = _fresh(platform, job_id)
        if on_progress is not None:
            on_progress(job)
        if job.terminal or time.monotonic() >= deadline:
            return job
        time.sleep(poll)
