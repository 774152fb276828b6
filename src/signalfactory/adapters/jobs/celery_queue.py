"""The ``JobQueue`` port on Celery (Redis or RabbitMQ): a message carries only a job id.

Publishing is best effort by design: the database row is the record, each publish is noted
on the row (``dispatched_at``), and the beat-driven sweep republishes jobs whose message may
be gone. The configuration below is shared by the publishing side (this queue) and the worker
app (``workers/celery_app.py``), which adds the tasks and the beat schedule.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from celery import Celery

from signalfactory.adapters.clock import SystemClock
from signalfactory.adapters.jobs.queues import LocalJobQueue
from signalfactory.adapters.storage.unit_of_work import SqlDatabase
from signalfactory.domain.job_routes import BULK, DEFAULT, REALTIME, queue_class, queue_name
from signalfactory.observability.logging import get_logger
from signalfactory.settings import Settings

log = get_logger("signalfactory.jobs.celery")

#: the Celery task a message asks for: run the job with this id
RUN_JOB = "signalfactory.run_job"


def configured_celery(settings: Settings) -> Celery:
    """A Celery app on the configured broker, set up for at-least-once delivery."""
    if not settings.broker_url:
        raise ValueError("Celery needs SIGNALFACTORY_BROKER_URL (redis:// or amqp://)")
    app = Celery("signalfactory", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_default_queue=settings.celery_queue,
        # Redis: a worker consuming several queues empties them in the order given
        # (real-time first); RabbitMQ has no such order, so separate workers isolate them.
        broker_transport_options={
            "visibility_timeout": settings.celery_visibility_timeout,
            "unacked_restore_interval": settings.celery_restore_interval,
            "unacked_restore_throttle": 1,
            "queue_order_strategy": "priority",
        },
        task_serializer="json",
        accept_content=["json"],
        # Redis redelivers an unacknowledged message after visibility_timeout: above the
        # longest job, or a healthy long job gets a second delivery (harmless - the lease
        # refuses it - but wasteful). Sweeps for expired messages run every
        # celery_restore_interval seconds.
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=3,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0,
                                   "interval_step": 0.5, "interval_max": 1},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        timezone=settings.schedule_timezone,
        enable_utc=True,
    )
    return app


class CeleryJobQueue:
    """Publishes job ids to the broker, and wakes the embedded runners of this process."""

    def __init__(self, settings: Settings, database: SqlDatabase,
                 app: Celery | None = None) -> None:
        self.settings = settings
        self.database = database
        self._app = app
        self._app_lock = threading.Lock()
        self._clock = SystemClock()
        self.local = LocalJobQueue()

    @property
    def app(self) -> Celery:
        with self._app_lock:  # made on first publish: a process that never submits
            if self._app is None:  # opens no broker connection
                self._app = configured_celery(self.settings)
            return self._app

    def route(self, kind: str | None) -> tuple[str, int]:
        """The broker queue and time limit of a job kind (``domain/job_routes.py``)."""
        cls = queue_class(kind or "", self.settings.celery_routes)
        limits = {REALTIME: self.settings.celery_time_limit_realtime_seconds,
                  DEFAULT: self.settings.celery_time_limit_default_seconds,
                  BULK: self.settings.celery_time_limit_bulk_seconds}
        return queue_name(self.settings.celery_queue, cls), limits[cls]

    def publish(self, job_ids: Sequence[str], *, countdown: float | None = None) -> int:
        """Send a run message per job id to its kind's queue and note when, so the sweep
        knows what it may skip. Raises when the broker cannot be reached."""
        if not job_ids:
            return 0
        with self.database.read(primary=True) as uow:
            kinds = {job_id: job.kind for job_id in job_ids
                     if (job := uow.jobs.get(job_id)) is not None}
        sent: list[str] = []
        for job_id in job_ids:
            queue, time_limit = self.route(kinds.get(job_id))
            self.app.send_task(RUN_JOB, args=[job_id], queue=queue, countdown=countdown,
                               time_limit=time_limit)
            sent.append(job_id)
        if sent:
            with self.database.write() as uow:
                uow.jobs.mark_dispatched(sent, self._clock.now())
        return len(sent)

    def announce(self, job_ids: Sequence[str]) -> None:
        try:
            self.publish(job_ids)
        except Exception as exc:  # the rows are safe; the sweep publishes them later
            log.warning("job queued but not published to the broker; the sweep will retry",
                        job_ids=list(job_ids), error=f"{type(exc).__name__}: {exc}")
        self.local.announce(job_ids)

    def add_waker(self, event: threading.Event) -> None:
        self.local.add_waker(event)

    def remove_waker(self, event: threading.Event) -> None:
        self.local.remove_waker(event)


def broker_probe(url: str, timeout: float = 2.0) -> Callable[[], str]:
    """A readiness check for the Celery broker."""

    def probe() -> str:
        from kombu.connection import Connection as BrokerConnection

        try:
            broker = BrokerConnection(url, connect_timeout=timeout)  # type: ignore[no-untyped-call]
            with broker as connection:
                connection.ensure_connection(max_retries=1, timeout=timeout)
            return "ok"
        except Exception as exc:  # any failure makes the broker not ready
            return f"unreachable: {type(exc).__name__}"

    return probe
