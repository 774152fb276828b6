"""`signalfactory jobs ...`, `worker --help` and the embedded `beat` as a real process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from signalfactory.adapters.storage.tables import job_schedules
from signalfactory.bootstrap import build_platform
from tests.helpers import cli, engine_of
from tests.jobs_tasks import create_tables

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(sf_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("SIGNALFACTORY_TASK_MODULES", "tests.jobs_tasks")
    monkeypatch.setenv("SIGNALFACTORY_JOB_POLL_SECONDS", "0.05")
    monkeypatch.delenv("SIGNALFACTORY_BROKER_URL", raising=False)
    assert cli("init").exit_code == 0
    platform = build_platform()
    create_tables(engine_of(platform))
    platform.close()
    return {**sf_env, "SIGNALFACTORY_TASK_MODULES": "tests.jobs_tasks"}


@pytest.mark.parametrize("backend", ["sqlite"])
def test_jobs_commands(env: dict[str, str], tmp_path: Path) -> None:
    submitted = cli("jobs", "submit", "test.slow", "--payload", '{"steps": 1}', "--json")
    assert submitted.exit_code == 0, submitted.output
    job = json.loads(submitted.stdout)
    assert job["status"] == "queued" and job["kind"] == "test.slow"
    listed = json.loads(cli("jobs", "list", "--status", "queued", "--json").stdout)
    assert [j["id"] for j in listed] == [job["id"]]
    shown = cli("jobs", "show", job["id"])
    assert "queued" in shown.stdout and '"steps": 1' in shown.stdout
    assert "cancelled" in cli("jobs", "cancel", job["id"]).stdout
    assert "queued again" in cli("jobs", "retry", job["id"]).stdout

    # --wait follows a job to its end while a worker process runs it.
    from tests.integration.test_jobs_kill import start_worker, stop_gently

    worker = start_worker(env, tmp_path / "worker.log", "--concurrency", "1")
    try:
        waited = cli("jobs", "submit", "test.slow", "--payload",
                     '{"steps": 3, "delay": 0.05, "value": 11}', "--wait", "--json",
                     "--timeout", "30")
        failed = cli("jobs", "submit", "test.bad_input", "--wait", "--timeout", "30")
    finally:
        stop_gently(worker)
    assert waited.exit_code == 0, waited.output
    assert json.loads(waited.stdout)["result"]["value"] == 11
    assert failed.exit_code == 1 and "failed" in failed.stdout

    for args, message in [
        (("jobs", "submit", "no.such"), "unknown job kind 'no.such'"),
        (("jobs", "submit", "test.slow", "--payload", "{nope"), "not valid JSON"),
        (("jobs", "submit", "test.slow", "--payload", "[1]"), "JSON object"),
        (("jobs", "show", "0000"), "no job 0000"),
        (("jobs", "list", "--status", "exploded"), "unknown status"),
        (("jobs", "submit", "test.slow", "--tenant", "ghost"), "tenant 'ghost' does not exist"),
        (("worker", "--runner", "celery"), "needs SIGNALFACTORY_BROKER_URL"),
    ]:
        result = cli(*args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr, (args, result.stderr)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_embedded_beat_process_starts_records_and_stops(env: dict[str, str],
                                                        tmp_path: Path) -> None:
    schedules = json.dumps([{"name": "nightly", "cron": "0 22 * * *", "kind": "test.slow"}])
    log = tmp_path / "beat.log"
    proc = subprocess.Popen([sys.executable, "-m", "signalfactory", "beat"],
                            env={**os.environ, **env, "SIGNALFACTORY_SCHEDULES": schedules,
                                 "SIGNALFACTORY_RETENTION_CRON": "",
                                 "SIGNALFACTORY_TRADING_REPORT_CRON": "",
                                 "SIGNALFACTORY_ANOMALY_SCAN_CRON": ""},
                            cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    platform = build_platform()
    try:
        deadline = time.monotonic() + 20
        row = None
        while row is None and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            with engine_of(platform).connect() as conn:
                row = conn.execute(sa.select(job_schedules)).first()
            time.sleep(0.1)
        assert row is not None and row.name == "nightly" and row.last_job_id is None
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        platform.close()
    assert proc.returncode == 0, log.read_text()
    assert "scheduler running 1 schedule(s)" in log.read_text()


def test_worker_and_beat_help() -> None:
    assert "--concurrency" in cli("worker", "--help").stdout
    assert "--runner" in cli("beat", "--help").stdout
