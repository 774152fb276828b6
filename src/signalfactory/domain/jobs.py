"""Durable jobs as records: the states a job moves through and what a job row holds.

A job is queued, claimed under a lease (running), and ends succeeded, failed (bad input:
retrying cannot help), cancelled or dead (the dead letter: a person must look). A failed
attempt that may be retried goes back to queued with a later ``run_after``.

A worker that vanishes mid-run (killed, out of memory, its node lost) is not the task failing:
when its lease expires the run counts as a *loss*, not as an attempt, and the job is queued
again. ``max_attempts`` bounds the task's own failures, ``max_losses`` (higher) the lost
workers, so a job that crashes every worker still ends in the dead letter.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
DEAD = "dead"
STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED, DEAD)
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED, DEAD})

#: what :meth:`JobRepository.cancel` answers when it asked a running job to stop
CANCEL_REQUESTED = "requested"
#: lost workers a job survives by default (the ``job_max_losses`` setting)
DEFAULT_MAX_LOSSES = 10

JsonObject = dict[str, Any]
"""A JSON object as stored in a job's payload and result."""


@dataclass(frozen=True)
class Job:
    """One job row: the only record of a job (a queue message only carries its id)."""

    id: str
    tenant_id: int
    kind: str
    payload: JsonObject
    status: str
    progress: float
    result: JsonObject | None
    error: str | None
    attempts: int
    max_attempts: int
    priority: int
    cancel_requested: bool
    dedupe_key: str | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    run_after: datetime
    dispatched_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    #: runs whose worker vanished (lease expired); they do not count as attempts
    losses: int = 0
    max_losses: int = DEFAULT_MAX_LOSSES

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def runs(self) -> int:
        """Times the job has been started: counted attempts plus runs lost with a worker."""
        return self.attempts + self.losses


@dataclass(frozen=True)
class NewJob:
    """What a submission stores: the repository adds id, status and timestamps."""

    kind: str
    payload: JsonObject
    tenant_id: int
    max_attempts: int
    priority: int = 0
    dedupe_key: str | None = None
    #: not runnable before this time (default: at once)
    run_after: datetime | None = None
    max_losses: int = DEFAULT_MAX_LOSSES


@dataclass(frozen=True)
class JobCount:
    """How many jobs of one kind are in one (live) state: what the queue gauges show."""

    kind: str
    status: str
    count: int


@dataclass(frozen=True)
class SettledJob:
    """A running job whose worker vanished: queued again (the loss counted), or settled for
    good (cancelled as asked, or dead once its losses reached ``max_losses``)."""

    kind: str
    status: str
    job_id: str = ""
    #: set for a dead job: whose it is and why it died (what an operator notice says)
    tenant_id: int = 0
    error: str = ""
