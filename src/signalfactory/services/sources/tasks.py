"""Job kind ``collect_source``: one collector run of a stored source (``{"source": name}``),
submitted by ``sources run`` and by the scheduler on the source's cron schedule."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from signalfactory.domain.jobs import JsonObject
from signalfactory.services.jobs.payloads import parse_payload
from signalfactory.services.jobs.registry import JobCancelled, TaskContext, register_task
from signalfactory.services.sources.records import COLLECT_SOURCE


class CollectSourcePayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = Field(min_length=1, max_length=32)


def collect_source_task(ctx: TaskContext, payload: JsonObject) -> JsonObject:
    from signalfactory.services.sources.collector import RunCancelled
    from signalfactory.services.sources.run import RunSkipped, run_source

    args = parse_payload(CollectSourcePayload, payload, COLLECT_SOURCE)
    try:
        report = run_source(ctx.platform, args.source, job_id=ctx.job_id,
                            progress=ctx.progress, cancelled=ctx.cancelled)
    except RunSkipped as exc:
        return {"source": args.source, "outcome": "skipped", "reason": str(exc)}
    except RunCancelled:
        raise JobCancelled from None
    return {"outcome": "succeeded", **report.as_dict()}


# Attempts of the job itself cover a worker that died mid-run (the next attempt resumes from
# the cursors); failed requests are retried inside the run and dead-letter it when exhausted.
register_task(COLLECT_SOURCE, collect_source_task, max_attempts=3)
