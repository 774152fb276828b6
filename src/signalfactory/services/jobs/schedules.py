"""Cron schedules: submit a job per due slot, exactly once across restarts and replicas.

Each schedule's last fired slot is stored with the jobs; a slot fires when it is newer than
that. The job carries the dedupe key ``schedule:NAME:SLOT``, so two schedulers (an ``up`` and a
``beat``, or Celery beat plus the embedded one) racing for one slot insert one job. A scheduler
that was down over several slots fires only the latest one when it comes back (missed runs are
coalesced, like cron's anacron-less behaviour but without silently skipping the latest), and a
schedule seen for the first time starts from now rather than back-filling the past.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from croniter import croniter

from signalfactory.domain.jobs import Job, NewJob
from signalfactory.observability.logging import get_logger
from signalfactory.services.jobs.registry import dispatch, ensure_tasks_loaded, get_task
from signalfactory.settings import ScheduleEntry

if TYPE_CHECKING:
    from signalfactory.services.platform import Platform

log = get_logger("signalfactory.jobs.scheduler")


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
    now = platform.clock.now()
    created: Job | None = None
    with platform.database.write() as uow:
        # Locking the schedule first makes concurrent schedulers queue up instead of racing.
        last = uow.jobs.lock_schedule(entry.name, now)
        if last is not None and last >= slot:
            return None
        job_id = None
        if last is not None or first_run_fires:
            job, was_created = uow.jobs.insert(NewJob(
                kind=entry.kind, payload=dict(entry.payload), tenant_id=entry.tenant_id,
                max_attempts=platform.settings.job_max_attempts,
                max_losses=platform.settings.job_max_losses,
                dedupe_key=dedupe_key(entry.name, slot)), now)
            job_id = job.id
            created = job if was_created else None
        if last is None:
            uow.jobs.record_first_slot(entry.name, slot, job_id, now)
        else:
            uow.jobs.advance_schedule(entry.name, slot, job_id, now)
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
    moment = (now or platform.clock.now()) + timedelta(seconds=5)
    return fire(platform, entry, latest_slot(entry, moment, platform.settings.schedule_timezone),
                first_run_fires=True)
