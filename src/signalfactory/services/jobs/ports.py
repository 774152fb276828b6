"""Ports of the job runtime."""

from __future__ import annotations

from typing import Protocol


class JobRepository(Protocol):
    """Durable jobs and their schedules: the record of every job."""


class JobQueue(Protocol):
    """Announces committed jobs to workers (embedded runner or Celery)."""
