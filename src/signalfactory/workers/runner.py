"""The embedded runner: worker threads that claim jobs from the database and run them.

It is durable because it keeps nothing of its own: a job is a row, a claim is a lease on the
row, and a worker that dies (SIGKILL, power loss) simply stops renewing its leases, so its jobs
become claimable again once the lease expires. Several runners (threads, processes, machines)
can share one database.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from sqlalchemy.exc import DBAPIError

from signalfactory.domain.backtest.warmup import warm_kernels
from signalfactory.domain.errors import ReadOnlyError, TemporaryError
from signalfactory.observability.logging import get_logger
from signalfactory.services.jobs.execution import (
    JobContext,
    Outcome,
    claim_next,
    new_owner,
    release,
    run_claimed,
)
from signalfactory.services.jobs.registry import ensure_tasks_loaded

if TYPE_CHECKING:
    from signalfactory.services.platform import Platform

log = get_logger("signalfactory.jobs.runner")


class EmbeddedRunner:
    """``concurrency`` threads polling the job table; :meth:`stop` hands unfinished work back."""

    def __init__(self, platform: Platform, *, concurrency: int | None = None,
                 poll_seconds: float | None = None) -> None:
        settings = platform.settings
        self.platform = platform
        self.concurrency = concurrency or settings.job_concurrency
        self.poll_seconds = poll_seconds or settings.job_poll_seconds
        self._stop = threading.Event()
        self._stopping = threading.Event()  # seen by running tasks through ctx.cancelled()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._running: dict[str, JobContext] = {}
        #: (job id, owner) of jobs cut short by read-only mode, handed back when it ends
        self._paused: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    # -- lifecycle --
    def start(self) -> None:
        ensure_tasks_loaded(self.platform.settings.task_module_names)
        # the first backtest job should not wait for numba's first-call set-up
        log.info("backtest kernels warm", seconds=round(warm_kernels(), 3))
        self.platform.jobs.add_waker(self._wake)
        for i in range(self.concurrency):
            thread = threading.Thread(target=self._loop, name=f"job-runner-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("embedded job runner started", concurrency=self.concurrency)

    def stop(self, grace: float | None = None) -> None:
        """Stop claiming; let running jobs finish for ``grace`` seconds, then hand them back
        to the queue (their next run does not count as a new attempt)."""
        grace = self.platform.settings.job_stop_grace_seconds if grace is None else grace
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + grace
        for thread in self._threads:
            thread.join(timeout=max(deadline - time.monotonic(), 0.0))
        self._stopping.set()  # tasks still running see ctx.cancelled() and may stop early
        with self._lock:
            leftovers = list(self._running.values())
        for ctx in leftovers:
            if release(self.platform, ctx.job_id, ctx.owner):
                log.info("job handed back at shutdown", job_id=ctx.job_id)
        for thread in self._threads:
            thread.join(timeout=2)
        self.platform.jobs.remove_waker(self._wake)
        log.info("embedded job runner stopped", handed_back=len(leftovers))

    @property
    def running_jobs(self) -> list[str]:
        with self._lock:
            return [ctx.job_id for ctx in self._running.values()]

    # -- work --
    def run_next(self) -> Outcome | None:
        """Claim and run one job in the calling thread; None when nothing is runnable.

        Raises ``ReadOnlyError`` while the platform is read-only: nothing is claimed, and a
        job that met the mode while running is kept to be handed back (uncounted) later."""
        self._hand_back_paused()
        owner = new_owner(threading.current_thread().name)
        job = claim_next(self.platform, owner)  # queues jobs of lost workers again first
        if job is None:
            return None

        def track(ctx: JobContext) -> None:
            with self._lock:
                self._running[owner] = ctx

        try:
            return run_claimed(self.platform, job, owner, self._stopping, on_start=track)
        except ReadOnlyError:
            with self._lock:
                self._paused.append((job.id, owner))
            raise
        finally:
            with self._lock:
                self._running.pop(owner, None)

    def _hand_back_paused(self) -> None:
        with self._lock:
            paused, self._paused = self._paused, []
        try:
            while paused:
                job_id, owner = paused[0]
                if release(self.platform, job_id, owner):
                    log.info("paused job handed back: writes work again", job_id=job_id)
                paused.pop(0)
        finally:
            with self._lock:
                self._paused.extend(paused)

    def run_until_idle(self, max_jobs: int = 1000) -> list[Outcome]:
        """Run due jobs one after another until none is runnable (tests, one-shot use)."""
        ensure_tasks_loaded(self.platform.settings.task_module_names)
        outcomes: list[Outcome] = []
        while len(outcomes) < max_jobs:
            outcome = self.run_next()
            if outcome is None:
                break
            outcomes.append(outcome)
        return outcomes

    def _loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                outcome = self.run_next()
                failures = 0
            except ReadOnlyError as exc:
                # Paused, not failing: nothing is claimed until the mode ends (it ends by
                # itself when the primary answers; an operator's switch when switched off).
                log.warning("job runner paused: the platform is read-only", reason=str(exc))
                self._stop.wait(self.platform.settings.read_only_probe_seconds)
                continue
            except (TemporaryError, DBAPIError) as exc:
                # Database down or locked by a long writer: back off, keep the thread alive.
                failures += 1
                log.warning("job runner cannot reach the database; retrying",
                            error=f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
                self._stop.wait(min(self.poll_seconds * 2 ** min(failures, 5), 30.0))
                continue
            except Exception:  # one bad job must not kill the worker thread
                log.exception("job runner error")
                self._stop.wait(self.poll_seconds)
                continue
            if outcome is None:
                self._wake.wait(self.poll_seconds)
                self._wake.clear()
