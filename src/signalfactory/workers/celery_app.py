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
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from celery import Celery
from celery.schedules import crontab
from celery.signals import setup_logging, worker_process_shutdown
from sqlalchemy.exc import DBAPIError

from signalfactory.adapters.storage import jobs as store
from signalfactory.observability.logging import get_logger
from signalfactory.observability.metrics import JOBS_TOTAL
from signalfactory.services.jobs.execution import execute_by_id, new_owner
from signalfactory.services.jobs.registry import ensure_tasks_loaded
from signalfactory.settings import Settings, load_settings

if TYPE_CHECKING:
    from signalfactory.services.platform import Platform

log = get_logger("signalfactory.jobs.celery")

RUN_JOB = "signalfactory.run_job"
FIRE_SCHEDULE = "signalfactory.fire_schedule"
SWEEP = "signalfactory.sweep"

_APPS: dict[tuple[str, str], Celery] = {}
_WORKER_PLATFORM: dict[int, Platform] = {}


@setup_logging.connect
def _keep_our_logging(**_kwargs: Any) -> None:
    """Celery would replace the root handlers; our structlog JSON setup is already in place."""


@worker_process_shutdown.connect
def _drop_live_gauges(pid: int | None = None, **_kwargs: Any) -> None:
    """A pool process that exits leaves its counters to the exporter's sum (they are history)
    but not its live gauges (``signalfactory worker --metrics-port``)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())


def cron_to_crontab(expr: str) -> crontab:
    minute, hour, day_of_month, month_of_year, day_of_week = expr.split()
    return crontab(minute=minute, hour=hour, day_of_month=day_of_month,
                   month_of_year=month_of_year, day_of_week=day_of_week)


def build_beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """The sweep plus one crontab entry per enabled ``SIGNALFACTORY_SCHEDULES`` entry."""
    queue = settings.celery_queue
    schedule: dict[str, dict[str, Any]] = {
        "signalfactory-sweep": {"task": SWEEP, "schedule": settings.job_sweep_seconds,
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
    if not settings.broker_url:
        raise ValueError("Celery needs SIGNALFACTORY_BROKER_URL (redis:// or amqp://)")
    app = Celery("signalfactory", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_default_queue=settings.celery_queue,
        task_serializer="json",
        accept_content=["json"],
        # Redis redelivers an unacknowledged message after this long: above the longest job,
        # or a healthy long job gets a second delivery (harmless - the lease refuses it - but
        # wasteful). Sweeps for expired messages run every celery_restore_interval seconds.
        broker_transport_options={
            "visibility_timeout": settings.celery_visibility_timeout,
            "unacked_restore_interval": settings.celery_restore_interval,
            "unacked_restore_throttle": 1,
        },
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=3,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0,
                                   "interval_step": 0.5, "interval_max": 1},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        timezone=settings.schedule_timezone,
        enable_utc=True,
        beat_schedule=build_beat_schedule(settings),
    )

    @app.task(name=RUN_JOB, bind=True, acks_late=True, reject_on_worker_lost=True)
    def run_job(self: Any, job_id: str) -> str:
        platform = worker_platform()
        try:
            outcome = execute_by_id(platform, job_id,
                                    new_owner(f"celery-{self.request.hostname or ''}"))
        except DBAPIError as exc:
            # Database unreachable: try again later; the sweep covers us if this gives up.
            raise self.retry(exc=exc, countdown=10, max_retries=60) from exc
        if outcome.retry_in is not None:
            publish(platform, [job_id], countdown=outcome.retry_in)
        return outcome.status

    @app.task(name=FIRE_SCHEDULE)
    def fire_schedule(name: str) -> str | None:
        from signalfactory.workers.scheduler import fire_current_slot

        platform = worker_platform()
        job = fire_current_slot(platform, name)
        return job.id if job is not None else None

    @app.task(name=SWEEP)
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


def publish(platform: Platform, job_ids: Iterable[str], *,
            countdown: float | None = None) -> int:
    """Send a run message per job id; record when, so the sweep knows what it may skip."""
    app = get_celery_app(platform.settings)
    sent: list[str] = []
    for job_id in job_ids:
        app.send_task(RUN_JOB, args=[job_id], queue=platform.settings.celery_queue,
                      countdown=countdown)
        sent.append(job_id)
    store.mark_dispatched(platform.engine, sent)
    return len(sent)


def sweep(platform: Platform) -> int:
    """Settle jobs of dead workers and republish jobs whose message may be gone."""
    for kind, status in store.reap_expired(platform.engine):
        JOBS_TOTAL.labels(kind, status).inc()
    ids = store.undispatched(platform.engine, platform.settings.job_redispatch_seconds)
    if ids:
        log.info("sweep republishing jobs", count=len(ids))
    return publish(platform, ids)


def run_worker(settings: Settings, concurrency: int) -> None:
    """``celery worker`` on our queue, in this process (blocks until shutdown)."""
    ensure_tasks_loaded(settings.task_module_names)
    app = get_celery_app(settings)
    app.worker_main(["worker", "--loglevel", settings.log_level.upper(),
                     "--concurrency", str(concurrency), "--queues", settings.celery_queue,
                     "--hostname", f"signalfactory-{os.getpid()}@{socket.gethostname()}",
                     "--without-gossip", "--without-mingle", "--pool", "prefork"])


def run_beat(settings: Settings) -> None:
    """``celery beat`` with the sweep and the cron entries (blocks until shutdown)."""
    app = get_celery_app(settings)
    settings.home.mkdir(parents=True, exist_ok=True)
    app.start(["beat", "--loglevel", settings.log_level.upper(),
               "--schedule", str(settings.home / "celerybeat-schedule")])
