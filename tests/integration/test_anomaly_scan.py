"""The ops.anomaly_scan job on a real database: signals, jobs and ingests stored at the same
hour-of-week over four weeks, a spike in the last hour, the gauge read back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from signalfactory.adapters.storage.tables import (
    ingests,
    instruments,
    jobs,
    signals,
    strategies,
    strategy_versions,
    tenants,
)
from signalfactory.adapters.storage.unit_of_work import sql_database
from signalfactory.bootstrap import build_platform
from signalfactory.domain.anomaly import THRESHOLD
from signalfactory.observability.metrics import ANOMALY_SCORE
from signalfactory.ops.anomaly import KIND, refresh_from_jobs
from signalfactory.services.jobs.execution import execute_by_id, new_owner
from signalfactory.services.jobs.registry import ensure_tasks_loaded, submit
from signalfactory.services.platform import Platform
from signalfactory.testing.clock import FixedClock
from tests.integration.backup_fixtures import seed

NOW = datetime(2026, 11, 30, 12, 30, tzinfo=UTC)  # a Monday; the hour scored is 11:00-12:00
SCORED_HOUR = datetime(2026, 11, 30, 11, 0, tzinfo=UTC)
WEEK = timedelta(weeks=1)


@pytest.fixture
def scan_platform(sf_env: dict[str, str]) -> Iterator[Platform]:
    platform = build_platform(migrate_db=True, clock=FixedClock(NOW))
    try:
        seed(platform, symbols=1, bars=5)
        yield platform
    finally:
        platform.close()


def add_strategy_signals(conn: sa.Connection, name: str, per_hour: dict[datetime, int]) -> None:
    tenant = conn.execute(sa.select(tenants.c.id).order_by(tenants.c.id)).scalar()
    inst = conn.execute(sa.select(instruments.c.id).order_by(instruments.c.id)).scalar()
    strategy = conn.execute(strategies.insert().values(tenant_id=tenant, name=name, kind="rules")
                            .returning(strategies.c.id)).scalar_one()
    version = conn.execute(strategy_versions.insert().values(
        strategy_id=strategy, version=1, rule_text="close > 0", parameters={}, timeframe="1m",
        code_hash="0" * 64).returning(strategy_versions.c.id)).scalar_one()
    rows = []
    for hour, count in per_hour.items():
        for i in range(count):  # distinct bar times: the signal identity is unique
            rows.append({"strategy_version_id": version, "instrument_id": inst,
                         "timeframe": "1m", "bar_ts": hour + timedelta(minutes=i % 60,
                                                                      seconds=i // 60),
                         "side": "buy", "score": 1.0, "price": 100.0, "values": {},
                         "created_at": hour + timedelta(seconds=30 + i)})
    conn.execute(signals.insert(), rows)


def add_finished_jobs(conn: sa.Connection, hour: datetime, total: int, failed: int) -> None:
    conn.execute(jobs.insert(), [
        {"id": str(uuid.uuid4()), "kind": "backtest", "payload": {},
         "status": "failed" if i < failed else "succeeded", "max_attempts": 1,
         "run_after": hour, "created_at": hour, "finished_at": hour + timedelta(minutes=i + 1)}
        for i in range(total)])


def store_history(platform: Platform) -> None:
    past = [SCORED_HOUR - k * WEEK for k in (4, 3, 2, 1)]
    with sql_database(platform.database).engine.begin() as conn:
        add_strategy_signals(conn, "steady", {**dict(zip(past, (9, 10, 11, 10), strict=True)),
                                              SCORED_HOUR: 10})
        add_strategy_signals(conn, "spiking", {**dict(zip(past, (9, 10, 11, 10), strict=True)),
                                               SCORED_HOUR: 60})
        add_strategy_signals(conn, "newcomer", {SCORED_HOUR - WEEK: 5, SCORED_HOUR: 40})
        # Signals of the current hour are not scored: it is not complete.
        add_strategy_signals(conn, "current-hour", {NOW.replace(minute=0): 500})
        for hour in past:
            add_finished_jobs(conn, hour, total=10, failed=1)
            conn.execute(ingests.insert().values(source="files", timeframe="1m", rows=1000,
                                                 instruments=1, created_at=hour))
        add_finished_jobs(conn, SCORED_HOUR, total=10, failed=8)
        conn.execute(ingests.insert().values(source="files", timeframe="1m", rows=1020,
                                             instruments=1, created_at=SCORED_HOUR))


def score(figure: str, series: str) -> float | None:
    return REGISTRY.get_sample_value("signalfactory_anomaly_score",
                                     {"figure": figure, "series": series})


def test_the_scan_flags_the_spike_and_the_failures_and_exports_the_gauge(
        scan_platform: Platform) -> None:
    store_history(scan_platform)
    ensure_tasks_loaded(scan_platform.settings.task_module_names)
    assert any(e.kind == KIND for e in scan_platform.settings.schedules)  # scheduled by default
    job = submit(scan_platform, KIND)
    outcome = execute_by_id(scan_platform, job.id, new_owner("test"))
    assert outcome.status == "succeeded"

    spiking, steady = score("signals", "spiking"), score("signals", "steady")
    assert spiking is not None and spiking > THRESHOLD
    assert steady is not None and steady < 1
    failures = score("job_failure_ratio", "all")
    assert failures is not None and failures > THRESHOLD
    bars = score("ingest_bars", "all")
    assert bars is not None and bars < THRESHOLD  # 1020 against 1000: within the floor
    assert score("signals", "newcomer") is None  # one earlier week: not enough history
    assert score("signals", "current-hour") is None

    with scan_platform.database.read() as uow:
        stored = uow.jobs.get(job.id)
    assert stored is not None and isinstance(stored.result, dict)
    rows = stored.result["scores"]
    assert isinstance(rows, list)
    by_series = {(r["figure"], r["series"]): r for r in rows if isinstance(r, dict)}
    assert by_series[("signals", "spiking")]["value"] == 60.0
    assert by_series[("signals", "spiking")]["median"] == 10.0
    assert by_series[("job_failure_ratio", "all")]["value"] == pytest.approx(0.8)

    # A serving process that did not run the job exports the same figures from its result.
    ANOMALY_SCORE.clear()
    assert score("signals", "spiking") is None
    refresh_from_jobs(scan_platform)
    assert score("signals", "spiking") == spiking
    assert score("job_failure_ratio", "all") == failures
