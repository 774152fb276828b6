"""Celery on Redis or RabbitMQ, running the same task code as the embedded runner.

A message carries only a job id; the database row stays the record. Delivery is at least once
(``acks_late``, ``reject_on_worker_lost``, prefetch 1): a worker killed mid-job leaves its
message unacknowledged, the broker hands it out again (RabbitMQ when the connection drops,
Redis after the visibility timeout), and the job's lease and attempt counter in the database
decide whether it runs again or goes to the dead letter. A beat-driven sweep republishes jobs
whose message was lost (publish failed, worker died after acking), so no job depends on the
broker keeping it.
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Any

from celery import Celery, Task
from celery.schedules import crontab
from celery.signals import setup_logging, worker_process_init, worker_process_shutdown
from sqlalchemy.exc import DBAPIError

from signalfactory.adapters.jobs.celery_queue import RUN_JOB, CeleryJobQueue, configured_celery
from signalfactory.adapters.storage.unit_of_work import sql_database
from signalfactory.domain.errors import ReadOnlyError, TemporaryError
from signalfactory.domain.job_routes import REALTIME, queue_name
from signalfactory.observability.logging import get_logger
from signalfactory.services.jobs.execution import (
    execute_by_id,
    new_owner,
    reap_expired,
    release,
)
from signalfactory.services.jobs.registry import ensure_tasks_loaded
from signalfactory.services.jobs.schedules import fire_current_slot
from signalfactory.settings import Settings, load_settings

if TYPE_CHECKING:
    from signalfactory.services.platform import Platform

log = get_logger("signalfactory.jobs.celery")

FIRE_SCHEDULE = "signalfactory.fire_schedule"
SWEEP = "signalfactory.sweep"
FIRE_SOURCES = "signalfactory.fire_sources"

_APPS: dict[tuple[str, str], Celery] = {}
_WORKER_PLATFORM: dict[int, Platform] = {}


@setup_logging.connect  # type: ignore[untyped-decorator]
def _keep_our_logging(**_kwargs: object) -> None:
    """Celery would replace the root handlers; our structlog JSON setup is already in place."""


@worker_process_init.connect  # type: ignore[untyped-decorator]
def _warm_kernels(**_kwargs: object) -> None:
    """Each pool process loads the backtest kernels when it starts, not on its first job."""
    from signalfactory.domain.backtest.warmup import warm_kernels

    log.info("backtest kernels warm", seconds=round(warm_kernels(), 3))


@worker_process_shutdown.connect  # type: ignore[untyped-decorator]
def _drop_live_gauges(pid: int | None = None, **_kwargs: object) -> None:
    """A pool process that exits leaves its counters to the exporter's sum (they are history)
    but not its live gauges (``signalfactory worker --metrics-port``)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())  # type: ignore[no-untyped-call]


def cron_to_crontab(expr: str) -> crontab:
    minute, hour, day_of_month, month_of_year, day_of_week = expr.split()
    return crontab(minute=minute, hour=hour, day_of_month=day_of_month,
                   month_of_year=month_of_year, day_of_week=day_of_week)


def build_beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """The sweep plus one crontab entry per enabled ``SIGNALFACTORY_SCHEDULES`` entry.

    These small control tasks go to the real-time queue: a backlog of default or bulk work
    must not delay the scheduling itself."""
    queue = queue_name(settings.celery_queue, REALTIME)
    schedule: dict[str, dict[str, Any]] = {
        "signalfactory-sweep": {"task": SWEEP, "schedule": settings.job_sweep_seconds,
                                "options": {"queue": queue,
                                            "expires": settings.job_sweep_seconds}},
        # Sources are records with their own cron: fire the due ones (exactly once per slot).
        "signalfactory-sources": {"task": FIRE_SOURCES, "schedule": settings.job_sweep_seconds,
                                  "options": {"queue": queue,
                                              "expires": settings.job_sweep_seconds}},
    }
    for entry in settings.schedules:
        if entry.enabled:
            schedule[f"schedule:{entry.name}"] = {
                "task": FIRE_SCHEDULE, "schedule": cron_to_crontab(entry.cron),
                "args": (entry.name,), "options": {"queue": queue}}
    return schedule


def make_celery_app(settings: Settings) -> Celery:
    """The worker's app: the shared broker configuration, our tasks and the beat schedule."""
    app = configured_celery(settings)
    app.conf.beat_schedule = build_beat_schedule(settings)

    @app.task(name=RUN_JOB, bind=True, acks_late=True,  # type: ignore[untyped-decorator]
              reject_on_worker_lost=True)
    def run_job(self: Task[Any, Any], job_id: str, paused_owner: str | None = None) -> str:
        platform = worker_platform()
        owner = new_owner(f"celery-{self.request.hostname or ''}")
        holder = paused_owner  # who may hold the job's claim when this run is paused
        try:
            if paused_owner is not None:
                # A run cut short by read-only mode: hand its claim back, uncounted.
                release(platform, job_id, paused_owner)
            holder = owner
            outcome = execute_by_id(platform, job_id, owner)
        except ReadOnlyError as exc:
            # The platform is read-only: the job pauses (retried for as long as the mode
            # lasts, never counted as a failed attempt), it does not fail.
            raise self.retry(exc=exc, countdown=platform.settings.read_only_probe_seconds * 5,
                             max_retries=None,
                             kwargs={"job_id": job_id, "paused_owner": holder}) from exc
        except (TemporaryError, DBAPIError) as exc:
            # Database unreachable: try again later; the sweep covers us if this gives up.
            raise self.retry(exc=exc, countdown=10, max_retries=60) from exc
        if outcome.retry_in is not None:
            celery_queue(platform).publish([job_id], countdown=outcome.retry_in)
        return outcome.status

    @app.task(name=FIRE_SCHEDULE)  # type: ignore[untyped-decorator]
    def fire_schedule(name: str) -> str | None:
        platform = worker_platform()
        job = fire_current_slot(platform, name)
        return job.id if job is not None else None

    @app.task(name=FIRE_SOURCES)  # type: ignore[untyped-decorator]
    def fire_sources_task() -> list[str]:
        from signalfactory.services.sources.schedules import fire_due_sources

        return [job.id for job in fire_due_sources(worker_platform())]

    @app.task(name=SWEEP)  # type: ignore[untyped-decorator]
    def sweep_task() -> int:
        return sweep(worker_platform())

    return app


def get_celery_app(settings: Settings) -> Celery:
    key = (settings.broker_url or "", settings.celery_queue)
    if key not in _APPS:
        _APPS[key] = make_celery_app(settings)
    return _APPS[key]


def worker_platform() -> Platform:
    """One platform per worker process (prefork children must not share connections)."""
    pid = os.getpid()
    if pid not in _WORKER_PLATFORM:
        from signalfactory.bootstrap import build_platform

        settings = load_settings()
        ensure_tasks_loaded(settings.task_module_names)
        _WORKER_PLATFORM.clear()
        _WORKER_PLATFORM[pid] = build_platform(settings)
    return _WORKER_PLATFORM[pid]


def celery_queue(platform: Platform) -> CeleryJobQueue:
    """The platform's broker queue (bootstrap picks it when a broker is configured)."""
    if isinstance(platform.jobs, CeleryJobQueue):
        return platform.jobs
    return CeleryJobQueue(platform.settings, sql_database(platform.database))


def sweep(platform: Platform) -> int:
    """Settle jobs of dead workers and republish jobs whose message may be gone."""
    reap_expired(platform)
    with platform.database.read(primary=True) as uow:
        ids = uow.jobs.undispatched(platform.clock.now(),
                                    platform.settings.job_redispatch_seconds)
    if ids:
        log.info("sweep republishing jobs", count=len(ids))
    return celery_queue(platform).publish(ids)


def worker_queues(settings: Settings, classes: list[str] | None = None) -> list[str]:
    """The broker queues a worker consumes, in the order it prefers them."""
    chosen = classes if classes is not None else settings.celery_worker_queue_classes
    return [queue_name(settings.celery_queue, cls) for cls in chosen]


def run_worker(settings: Settings, concurrency: int, classes: list[str] | None = None) -> None:
    """``celery worker`` on our queues, in this process (blocks until shutdown)."""
    ensure_tasks_loaded(settings.task_module_names)
    app = get_celery_app(settings)
    queues = ",".join(worker_queues(settings, classes))
    app.worker_main(["worker", "--loglevel", settings.log_level.upper(),
                     "--concurrency", str(concurrency), "--queues", queues,
                     "--hostname", f"signalfactory-{os.getpid()}@{socket.gethostname()}",
                     "--without-gossip", "--without-mingle", "--pool", "prefork"])


def run_beat(settings: Settings) -> None:
    """``celery beat`` with the sweep and the cron entries (blocks until shutdown)."""
    app = get_celery_app(settings)
    settings.home.mkdir(parents=True, exist_ok=True)
    app.start(["beat", "--loglevel", settings.log_level.upper(),
               "--schedule", str(settings.home / "celerybeat-schedule")])
