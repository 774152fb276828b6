"""The job runtime's own kind: pruning finished jobs. Features register theirs beside them
(``services/<feature>/tasks.py``, ``ops/tasks.py``)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field

from signalfactory.domain.jobs import JsonObject
from signalfactory.services.jobs.payloads import parse_payload
from signalfactory.services.jobs.registry import TaskContext, register_task


class PrunePayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    older_than_days: float = Field(default=30.0, gt=0)


def prune_jobs_task(ctx: TaskContext, payload: JsonObject) -> JsonObject:
    """Delete finished jobs older than N days (dead jobs stay until a person acts)."""
    args = parse_payload(PrunePayload, payload, "prune_jobs")
    platform = ctx.platform
    cutoff = platform.clock.now() - timedelta(days=args.older_than_days)
    with platform.database.write() as uow:
        deleted = uow.jobs.prune(cutoff)
    return {"deleted": deleted, "cutoff": cutoff.isoformat()}


register_task("prune_jobs", prune_jobs_task, max_attempts=3)
