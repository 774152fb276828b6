"""Job kinds of scans: ``scan`` ranks a universe by a strategy or rule as of a time."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from signalfactory.domain.jobs import JsonObject
from signalfactory.services.jobs.payloads import parse_payload
from signalfactory.services.jobs.registry import TaskContext, register_task


class ScanPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    strategy: str | None = None
    rule: str | None = None
    universe: str | None = None
    as_of: datetime | None = None
    top: int | None = Field(default=None, ge=1, le=10_000)
    timeframe: str | None = None


def scan_task(ctx: TaskContext, payload: JsonObject) -> JsonObject:
    from signalfactory.services.scans.scan import ScanRequest, run_scan

    args = parse_payload(ScanPayload, payload, "scan")
    scan = run_scan(ctx.platform, ScanRequest(tenant_id=ctx.tenant_id, **args.model_dump()),
                    progress=ctx.progress)
    return {"scan_id": scan.id, "matches": scan.matches, "status": scan.status}


register_task("scan", scan_task)
