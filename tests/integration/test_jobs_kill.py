"""SIGKILL an embedded worker process mid-job: the job runs again, completes, and its result
and effect are stored exactly once. A job that kills every worker ends in the dead letter."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from signalfactory.bootstrap import build_platform
from signalfactory.services.jobs import registry as job_service
from signalfactory.services.platform import Platform
from tests.helpers import engine_of
from tests.jobs_tasks import create_tables, job_effects, job_runs

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def kill_env(sf_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {**sf_env, "SIGNALFACTORY_TASK_MODULES": "tests.jobs_tasks",
           "SIGNALFACTORY_JOB_LEASE_SECONDS": "2", "SIGNALFACTORY_JOB_POLL_SECONDS": "0.1",
           "SIGNALFACTORY_JOB_BACKOFF_SECONDS": "0", "SIGNALFACTORY_LOG_FORMAT": "json"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("SIGNALFACTORY_BROKER_URL", raising=False)
    return env


@pytest.fixture
def kp(kill_env: dict[str, str]) -> Iterator[Platform]:
    platform = build_platform(migrate_db=True)
    create_tables(engine_of(platform))
    try:
        yield platform
    finally:
        platform.close()


def start_worker(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    """``python -m signalfactory worker`` from the repository root (so tests.* imports)."""
    return start_process(env, log, "worker", *args)


def start_process(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    """``python -m signalfactory ARGS`` from the repository root (so tests.* imports)."""
    full = {k: v for k, v in os.environ.items() if k != "SIGNALFACTORY_BROKER_URL"}
    full.update(env)
    return subprocess.Popen([sys.executable, "-m", "signalfactory", *args],
                            env=full, cwd=ROOT, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def kill_hard(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the worker and everything it started (no cleanup code runs anywhere)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def stop_gently(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            kill_hard(proc)


def wait_running(platform: Platform, job_id: str, min_progress: float, log: Path,
                 procs: list[subprocess.Popen[bytes]], timeout: float = 25.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = job_service.get_job(platform, job_id)
        if job.status == "running" and job.progress >= min_progress:
            return job
        for proc in procs:
            assert proc.poll() is None, log.read_text()[-3000:]
        time.sleep(0.05)
    raise AssertionError(f"job never ran: {job_service.get_job(platform, job_id)}\n"
                         + log.read_text()[-3000:])


def runs_of(platform: Platform, job_id: str) -> list[tuple[int, int]]:
    with engine_of(platform).connect() as conn:
        return [(r.attempt, r.pid) for r in conn.execute(
            sa.select(job_runs).where(job_runs.c.job_id == job_id).order_by(job_runs.c.attempt))]


def effects_of(platform: Platform, job_id: str) -> int:
    with engine_of(platform).connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(job_effects)
                                .where(job_effects.c.job_id == job_id)).scalar_one())


def test_sigkilled_embedded_worker_job_reruns_and_stores_once(
        kp: Platform, kill_env: dict[str, str], tmp_path: Path) -> None:
    log = tmp_path / "workers.log"
    # One attempt only: the killed worker is a loss, not a failed attempt, so it runs again.
    job = job_service.submit(kp, "test.slow", {"steps": 30, "delay": 0.1, "value": 5},
                             max_attempts=1)
    first = start_worker(kill_env, log, "--concurrency", "1")
    second = None
    try:
        running = wait_running(kp, job.id, 0.2, log, [first])
        assert f":{first.pid}:" in running.lease_owner
        kill_hard(first)
        killed = job_service.get_job(kp, job.id)
        assert killed.status == "running" and 0.2 <= killed.progress < 1
        assert effects_of(kp, job.id) == 0

        second = start_worker(kill_env, log, "--concurrency", "1")
        done = job_service.wait_for(kp, job.id, timeout=40)
    finally:
        if first.poll() is None:
            kill_hard(first)
        if second is not None:
            stop_gently(second)
    assert done.status == "succeeded", (done, log.read_text()[-3000:])
    assert done.attempts == 1 and done.losses == 1
    assert done.result == {"value": 5, "steps": 30, "attempt": 2, "pid": second.pid}
    assert runs_of(kp, job.id) == [(1, first.pid), (2, second.pid)]
    assert effects_of(kp, job.id) == 1
    assert second.returncode == 0, log.read_text()[-3000:]  # SIGTERM is a clean stop


@pytest.mark.parametrize("backend", ["sqlite"], indirect=False)
def test_job_that_kills_every_worker_ends_dead(kp: Platform, kill_env: dict[str, str],
                                               tmp_path: Path) -> None:
    log = tmp_path / "workers.log"
    job = job_service.submit(dataclasses.replace(kp, settings=kp.settings.model_copy(
        update={"job_max_losses": 2})), "test.crash", {}, max_attempts=5)
    exits = []
    for _ in range(2):
        worker = start_worker(kill_env, log, "--concurrency", "1")
        exits.append(worker.wait(timeout=15))
        time.sleep(2.1)  # the dead worker's lease runs out
    assert exits == [9, 9], log.read_text()[-3000:]
    # A third worker finds the lease of the last allowed loss expired: dead, not run again.
    third = start_worker(kill_env, log, "--concurrency", "1")
    try:
        final = job_service.wait_for(kp, job.id, timeout=15)
    finally:
        stop_gently(third)
    assert third.returncode == 0, log.read_text()[-3000:]
    assert final.status == "dead" and final.losses == 2 and final.attempts == 1, final
    assert "lease expired" in (final.error or "")
    assert [a for a, _ in runs_of(kp, job.id)] == [1, 2]
