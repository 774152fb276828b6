"""Operations scheduled by default: backup, backup prune, archive snapshot and data prune run
as scheduled jobs in `up`/`beat` and Celery beat, show in `jobs schedules` and `jobs list`,
and a failed one counts in signalfactory_jobs_total (SignalFactoryScheduledOpsFailed)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from signalfactory.bootstrap import build_platform
from signalfactory.ops.backup.prune import Policy
from signalfactory.services.jobs.execution import execute_by_id, new_owner
from signalfactory.services.jobs.registry import ensure_tasks_loaded
from signalfactory.settings import Settings
from signalfactory.workers.celery_app import build_beat_schedule
from signalfactory.workers.scheduler import Scheduler
from tests.helpers import cli
from tests.integration.backup_fixtures import KEY_B64
from tests.integration.test_archive import RAW_KEY

OPS = {"backup": "backup", "backup-prune": "backup.prune", "archive": "archive",
       "retention": "retention", "canary": "ops.canary"}


def test_settings_turn_operations_into_schedules_with_the_retention_policy() -> None:
    bare = Settings(trading_report_cron="", anomaly_scan_cron="")
    assert [e.name for e in bare.schedules] == ["retention"]  # data prune needs nothing
    full = Settings(backup_dest="/backups", archive_signing_key=RAW_KEY,  # type: ignore[arg-type]
                    trading_report_cron="", anomaly_scan_cron="")
    assert {e.name: e.kind for e in full.schedules} == OPS
    crons = {e.name: e.cron for e in full.schedules}
    assert crons["backup"] == "*/5 * * * *"  # the 300 s RPO
    assert crons["backup-prune"] == "47 3 * * *" and crons["archive"] == "27 0 * * *"
    assert (full.backup_keep_daily, full.backup_keep_weekly, full.backup_keep_monthly) == (
        Policy().daily, Policy().weekly, Policy().monthly) == (7, 4, 12)
    beat = build_beat_schedule(full)
    assert {f"schedule:{name}" for name in OPS} <= set(beat)
    assert crons["canary"] == "*/1 * * * *"  # the DR drill's canary, every 60 s
    off = Settings(backup_dest="/b", backup_prune_cron="", archive_cron="",
                   canary_interval_seconds=0,
                   archive_signing_key=RAW_KEY, retention_cron="",  # type: ignore[arg-type]
                   trading_report_cron="", anomaly_scan_cron="")
    assert [e.name for e in off.schedules] == ["backup"]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_scheduled_operations_run_show_in_jobs_list_and_a_failure_is_counted(
        sf_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "backups"
    for name, value in {"BACKUP_DEST": str(dest), "BACKUP_KEY": KEY_B64,
                        "ARCHIVE_SIGNING_KEY": RAW_KEY, "TRADING_REPORT_CRON": "",
                        "ANOMALY_SCAN_CRON": ""}.items():
        monkeypatch.setenv(f"SIGNALFACTORY_{name}", value)
    assert cli("init").exit_code == 0
    listed = json.loads(cli("jobs", "schedules", "--json").stdout)
    assert {row["name"]: row["kind"] for row in listed} == OPS
    assert all(row["next_run"] for row in listed)

    platform = build_platform()
    try:
        ensure_tasks_loaded(platform.settings.task_module_names)
        scheduler = Scheduler(platform)
        assert scheduler.tick(datetime(2026, 11, 27, 0, 0, 30, tzinfo=UTC)) == []
        fired = scheduler.tick(datetime(2026, 11, 27, 3, 50, tzinfo=UTC))
        assert sorted(j.kind for j in fired) == sorted(OPS.values())
        outcomes = {j.kind: execute_by_id(platform, j.id, new_owner("test")).status
                    for j in sorted(fired, key=lambda j: j.kind != "backup")}  # backup first
        assert outcomes == dict.fromkeys(OPS.values(), "succeeded")
        assert len([p for p in dest.iterdir() if p.name.startswith("sf-")]) == 1  # kept

        failed_before = REGISTRY.get_sample_value(
            "signalfactory_jobs_total", {"kind": "archive", "status": "failed"}) or 0.0
        # The same day again: the archive exists, so the run is refused (bad input: final).
        again = scheduler.tick(datetime(2026, 11, 28, 0, 28, tzinfo=UTC))
        archive = next(j for j in again if j.kind == "archive")
        assert execute_by_id(platform, archive.id, new_owner("test")).status == "failed"
        assert REGISTRY.get_sample_value(
            "signalfactory_jobs_total", {"kind": "archive", "status": "failed"}) == (
                failed_before + 1)
    finally:
        platform.close()
    jobs = json.loads(cli("jobs", "list", "--json").stdout)
    assert {j["kind"] for j in jobs} >= set(OPS.values())
    assert [j["status"] for j in jobs if j["kind"] == "archive"].count("failed") == 1
