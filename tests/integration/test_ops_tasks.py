"""Scan, backup, retention and archive run as jobs through the embedded runner."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from signalfactory.bootstrap import build_platform
from signalfactory.services.jobs.registry import get_job, submit
from signalfactory.services.marketdata.sample import store_sample
from signalfactory.services.platform import Platform
from signalfactory.workers.runner import EmbeddedRunner


@pytest.fixture
def jp(sf_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
       tmp_path: Path) -> Platform:
    monkeypatch.setenv("SIGNALFACTORY_BACKUP_KEY", base64.b64encode(os.urandom(32)).decode())
    monkeypatch.setenv("SIGNALFACTORY_BACKUP_DEST", str(tmp_path / "backups"))
    monkeypatch.setenv("SIGNALFACTORY_BAR_STORE", "columnar")
    platform = build_platform(migrate_db=True)
    store_sample(platform, symbols=4, bars=120, seed=3)
    yield platform
    platform.close()


def test_scan_and_backup_jobs(jp: Platform, tmp_path: Path) -> None:
    scan = submit(jp, "scan", {"rule": "entry: close > sma(close, 10)", "top": 3}, tenant_id=1)
    backup = submit(jp, "backup", {}, tenant_id=1)
    retention = submit(jp, "retention", {}, tenant_id=1)
    EmbeddedRunner(jp).run_until_idle()
    done = {name: get_job(jp, job.id) for name, job in
            (("scan", scan), ("backup", backup), ("retention", retention))}
    assert all(j.status == "succeeded" for j in done.values()), {
        k: (j.status, j.error) for k, j in done.items()}
    assert done["scan"].result["status"] == "succeeded"
    assert any((tmp_path / "backups").rglob("*manifest*"))
    assert {"backup", "retention"} <= {e.name for e in jp.settings.schedules}


def test_bad_scan_payload_fails_without_retry(jp: Platform) -> None:
    job = submit(jp, "scan", {"rule": "entry: close >", "top": 3}, tenant_id=1)
    EmbeddedRunner(jp).run_until_idle()
    failed = get_job(jp, job.id)
    assert failed.status == "failed" and "position" in (failed.error or "")
    assert failed.attempts == 1
