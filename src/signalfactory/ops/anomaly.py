"""Anomaly scan of the platform's key figures (job kind ``ops.anomaly_scan``, hourly).

Figures read from the database, counted per hour (UTC) in SQL:

- ``signals``, one series per strategy name: signals stored (``signals.created_at``);
- ``job_failure_ratio``, series ``all``: failed or dead jobs over jobs finished that hour
  (``jobs.finished_at``; an hour without a finished job has no ratio);
- ``ingest_bars``, series ``all``: bars written (``ingests.rows`` by ``created_at``).

Each is scored for the last complete hour against its seasonal baseline
(:mod:`signalfactory.domain.anomaly`) and exported as
``signalfactory_anomaly_score{figure,series}``. Request latency lives only in Prometheus: its
anomaly is the recording rule ``signalfactory:http_p95_vs_last_week:ratio`` in
deploy/prometheus/rules.yml (p95 against the same hour a week before), not this job.

The job sets the gauge in the process that runs it; serving processes set it at scrape time
from the newest succeeded job's result (:func:`refresh_from_jobs`), since Prometheus does not
scrape workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field

from signalfactory.adapters.storage.tables import ingests, jobs, signals, strategies
from signalfactory.adapters.storage.tables import strategy_versions as versions
from signalfactory.adapters.storage.unit_of_work import sql_database
from signalfactory.domain.anomaly import DEFAULT_WEEKS, HOURS_PER_WEEK, baseline_at, hourly_series
from signalfactory.domain.jobs import DEAD, FAILED, SUCCEEDED, JsonObject
from signalfactory.observability.metrics import ANOMALY_SCORE
from signalfactory.services.jobs.payloads import parse_payload
from signalfactory.services.jobs.registry import TaskContext
from signalfactory.services.platform import Platform

KIND = "ops.anomaly_scan"

#: MAD floors per figure: counts move by whole units, a ratio by a couple of percent
_FLOORS = {"signals": (1.0, 0.05), "ingest_bars": (1.0, 0.05),
           "job_failure_ratio": (0.02, 0.05)}


@dataclass(frozen=True)
class FigureScore:
    figure: str
    series: str
    value: float
    median: float
    score: float


def _epoch_hour(conn: sa.Connection, column: sa.ColumnElement[datetime]) -> sa.ColumnElement[int]:
    if conn.dialect.name == "sqlite":  # stored as 'YYYY-MM-DD HH:MM:SS[.ffffff]' in UTC
        return sa.cast(sa.cast(sa.func.strftime("%s", column), sa.Integer) // 3600, sa.Integer)
    return sa.cast(sa.func.floor(sa.extract("epoch", column) / 3600), sa.BigInteger)


def hourly_figures(conn: sa.Connection, first_hour: int,
                   last_hour: int) -> dict[tuple[str, str], dict[int, float]]:
    """``{(figure, series): {epoch_hour: value}}`` for hours ``first_hour..last_hour``."""
    start = datetime.fromtimestamp(first_hour * 3600, UTC)
    end = datetime.fromtimestamp((last_hour + 1) * 3600, UTC)
    out: dict[tuple[str, str], dict[int, float]] = {}

    hour = _epoch_hour(conn, signals.c.created_at).label("hour")
    rows = conn.execute(
        sa.select(hour, strategies.c.name, sa.func.count())
        .select_from(signals.join(versions, versions.c.id == signals.c.strategy_version_id)
                     .join(strategies, strategies.c.id == versions.c.strategy_id))
        .where(signals.c.created_at >= start, signals.c.created_at < end)
        .group_by(hour, strategies.c.name))
    for bucket, name, count in rows:  # same name in two tenants: one series
        series = out.setdefault(("signals", str(name)), {})
        series[int(bucket)] = series.get(int(bucket), 0.0) + float(count)

    hour = _epoch_hour(conn, jobs.c.finished_at).label("hour")
    failed = sa.func.sum(sa.case((jobs.c.status.in_((FAILED, DEAD)), 1), else_=0))
    rows = conn.execute(
        sa.select(hour, failed, sa.func.count())
        .where(jobs.c.finished_at >= start, jobs.c.finished_at < end,
               jobs.c.status.in_((SUCCEEDED, FAILED, DEAD)))
        .group_by(hour))
    out[("job_failure_ratio", "all")] = {int(b): float(f) / float(n)
                                         for b, f, n in rows if n}

    hour = _epoch_hour(conn, ingests.c.created_at).label("hour")
    rows = conn.execute(sa.select(hour, sa.func.sum(ingests.c.rows))
                        .where(ingests.c.created_at >= start, ingests.c.created_at < end)
                        .group_by(hour))
    out[("ingest_bars", "all")] = {int(b): float(total or 0) for b, total in rows}
    return out


def scan(platform: Platform, now: datetime, weeks: int = DEFAULT_WEEKS) -> list[FigureScore]:
    """Scores of the last complete hour before ``now`` for every figure with enough history."""
    last_hour = int(now.timestamp() // 3600) - 1
    first_hour = last_hour - weeks * HOURS_PER_WEEK
    with sql_database(platform.database).reader.connect() as conn:
        figures = hourly_figures(conn, first_hour, last_hour)
    found: list[FigureScore] = []
    for (figure, name), buckets in sorted(figures.items()):
        series = hourly_series(buckets, first_hour, last_hour)
        if figure == "job_failure_ratio":  # no finished job that hour: no ratio, not 0
            series[[h - first_hour for h in range(first_hour, last_hour + 1)
                    if h not in buckets]] = np.nan
        min_mad, relative = _FLOORS[figure]
        base = baseline_at(series, series.shape[0] - 1, weeks=weeks, min_mad=min_mad,
                           relative_floor=relative)
        if base is not None:
            found.append(FigureScore(figure, name, base.value, base.median, base.score))
    return found


def publish(found: list[FigureScore]) -> None:
    """Replace the gauge's series by ``found`` (a strategy gone from the scan disappears)."""
    ANOMALY_SCORE.clear()
    for item in found:
        ANOMALY_SCORE.labels(item.figure, item.series).set(item.score)


class AnomalyScanPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    weeks: int = Field(default=DEFAULT_WEEKS, ge=1, le=52,
                       description="Weeks of the same hour-of-week the baseline looks back on")


def anomaly_scan_task(ctx: TaskContext, payload: JsonObject) -> JsonObject:
    args = parse_payload(AnomalyScanPayload, payload, KIND)
    now = ctx.platform.clock.now()
    found = scan(ctx.platform, now, args.weeks)
    publish(found)
    return {"at": now.isoformat(), "weeks": args.weeks,
            "scores": [{"figure": s.figure, "series": s.series, "value": s.value,
                        "median": s.median, "score": s.score} for s in found]}


def refresh_from_jobs(platform: Platform) -> None:
    """Scrape-time hook: the gauge from the newest succeeded scan's stored result."""
    with platform.database.read(primary=True) as uow:
        job = uow.jobs.newest(KIND, SUCCEEDED)
    if job is None or not isinstance(job.result, dict):
        return
    rows = job.result.get("scores")
    if not isinstance(rows, list):
        return
    found = [FigureScore(str(r["figure"]), str(r["series"]), float(r["value"]),
                         float(r["median"]), float(r["score"]))
             for r in rows if isinstance(r, dict)]
    publish(found)
