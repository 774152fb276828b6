"""Cron schedules: submit a job per due slot, exactly once across restarts and replicas.

Each schedule's last fired slot is kept in ``job_schedules``; a slot fires when it is newer than
that. The job carries the dedupe key ``schedule:NAME:SLOT``, so two schedulers (an ``up`` and a
``beat``, or Celery beat plus the embedded one) racing for one slot insert one job. A scheduler
that was down over several slots fires only the latest one when it comes back (missed runs are
coalesced, like cron's anacron-less behaviour but without silently skipping the latest), and a
schedule seen for the first time starts from now rather than back-filling the past.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from croniter import croniter

from signalfactory.adapters.storage import jobs as store
from signalfactory.adapters.storage.jobs import Job, as_utc, dialect_insert, utcnow
from signalfactory.adapters.storage.tables import job_schedules
from signalfactory.observability.logging import get_logger
from signalfactory.services.jobs.registry import dispatch, ensure_tasks_loaded, get_task
from signalfactory.settings import ScheduleEntry

if TYPE_CHECKING:
    from signalfactory.services.platform import Platform

log = get_logger("signalfactory.jobs.scheduler")

#: the longest an idle scheduler sleeps, so new settings or a clock jump are noticed
MAX_SLEEP_SECONDS = 30.0


def latest_slot(entry: ScheduleEntry, now: datetime, tz: str) -> datetime:
    """The most recent cron time at or before ``now``, in UTC."""
    local = now.astimezone(ZoneInfo(tz)) + timedelta(microseconds=1)
    prev: datetime = croniter(entry.cron, local).get_prev(datetime)
    return prev.astimezone(now.tzinfo)


def next_slot(entry: ScheduleEntry, now: datetime, tz: str) -> datetime:
    nxt: datetime = croniter(entry.cron, now.astimezone(ZoneInfo(tz))).get_next(datetime)
    return nxt.astimezone(now.tzinfo)


def dedupe_key(name: str, slot: datetime) -> str:
    return f"schedule:{name}:{slot.astimezone(UTC):%Y-%m-%dT%H:%MZ}"


def fire(platform: Platform, entry: ScheduleEntry, slot: datetime, *,
         first_run_fires: bool) -> Job | None:
    """Submit the job of ``slot`` unless that slot (or a later one) was already fired.

    ``first_run_fires=False`` makes a schedule with no recorded state only remember the slot
    (the embedded scheduler's start-up); Celery beat passes True, it decided the slot is due.
    """
    ensure_tasks_loaded(platform.settings.task_module_names)
    if get_task(entry.kind) is None:
        log.error("schedule names an unknown job kind; skipped", schedule=entry.name,
                  job_kind=entry.kind)
        return None
    now = utcnow()
    created: Job | None = None
    with platform.engine.begin() as conn:
        # Touch the row first: it locks it on PostgreSQL and takes SQLite's write lock before
        # anything is read, so concurrent schedulers queue up instead of racing.
        conn.execute(sa.update(job_schedules).where(job_schedules.c.name == entry.name)
                     .values(updated_at=now))
        last = as_utc(conn.execute(sa.select(job_schedules.c.last_slot).where(
            job_schedules.c.name == entry.name)).scalar())
        if last is not None and last >= slot:
            return None
        job_id = None
        if last is not None or first_run_fires:
            job, was_created = store.insert_job(
                conn, kind=entry.kind, payload=dict(entry.payload), tenant_id=entry.tenant_id,
                max_attempts=platform.settings.job_max_attempts,
                dedupe_key=dedupe_key(entry.name, slot))
            job_id = job.id
            created = job if was_created else None
        if last is None:
            conn.execute(dialect_insert(conn, job_schedules).values(
                name=entry.name, last_slot=slot, last_job_id=job_id, updated_at=now,
            ).on_conflict_do_nothing(index_elements=["name"]))
        else:
            conn.execute(sa.update(job_schedules).where(
                job_schedules.c.name == entry.name, job_schedules.c.last_slot < slot,
            ).values(last_slot=slot, last_job_id=job_id, updated_at=now))
    if created is not None:
        log.info("scheduled job submitted", schedule=entry.name, slot=slot.isoformat(),
                 job_id=created.id, job_kind=entry.kind)
        dispatch(platform, created.id)
    return created


def fire_current_slot(platform: Platform, name: str, now: datetime | None = None) -> Job | None:
    """Celery beat's entry point: fire the slot that is due now for schedule ``name``."""
    entry = next((e for e in platform.settings.schedules if e.name == name), None)
    if entry is None:
        log.warning("beat fired a schedule that settings no longer define", schedule=name)
        return None
    # Beat sends at the slot or slightly after; a little slack keeps a message that arrives
    # a hair early (clock skew between beat and worker) on the intended slot.
    moment = (now or utcnow()) + timedelta(seconds=5)
    return fire(platform, entry, latest_slot(entry, moment, platform.settings.schedule_timezone),
                first_run_fires=True)


class Scheduler:
    """The embedded scheduler: a loop (thread or ``beat`` process) over the settings' entries."""

    def __init__(self, platform: Platform, entries: list[ScheduleEntry] | None = None) -> None:
        self.platform = platform
        self.entries = [e for e in (entries if entries is not None
                                    else platform.settings.schedules) if e.enabled]
        self.tz = platform.settings.schedule_timezone
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self, now: datetime | None = None) -> list[Job]:
        """Fire every schedule whose latest slot has not fired yet; returns new jobs."""
        now = now or utcnow()
        fired = []
        for entry in self.entries:
            try:
                job = fire(self.platform, entry, latest_slot(entry, now, self.tz),
                           first_run_fires=False)
            except sa.exc.DBAPIError as exc:
                log.warning("scheduler cannot reach the database; will retry",
                            schedule=entry.name, error=type(exc).__name__)
                continue
            if job is not None:
                fired.append(job)
        return fired

    def seconds_until_next(self, now: datetime | None = None) -> float:
        now = now or utcnow()
        if not self.entries:
            return MAX_SLEEP_SECONDS
        soonest = min(next_slot(e, now, self.tz) for e in self.entries)
        return min(max((soonest - now).total_seconds(), 0.05), MAX_SLEEP_SECONDS)

    def run(self) -> None:
        ensure_tasks_loaded(self.platform.settings.task_module_names)
        log.info("scheduler started", schedules=[e.name for e in self.entries])
        while not self._stop.is_set():
            self.tick()
            self._stop.wait(self.seconds_until_next())

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="job-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
