"""`signalfactory up` runs jobs in the same process: a submitted collect job completes and the
job metrics appear on its /metrics."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from signalfactory.bootstrap import build_platform
from signalfactory.services.jobs import registry as job_service
from tests.e2e.test_up import _free_port
from tests.jobs_tasks import reset_logging

ROOT = Path(__file__).resolve().parents[2]


def test_up_runs_submitted_jobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reset_logging()
    port = _free_port()
    env = {"SIGNALFACTORY_HOME": str(tmp_path / "home"), "SIGNALFACTORY_JOB_POLL_SECONDS": "0.2"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in ("SIGNALFACTORY_DATABASE_URL", "SIGNALFACTORY_BROKER_URL"):
        monkeypatch.delenv(key, raising=False)
    proc = subprocess.Popen(
        [sys.executable, "-m", "signalfactory", "up", "--port", str(port),
         "--sample-symbols", "3", "--sample-bars", "50"],
        env={k: v for k, v in os.environ.items()}, cwd=ROOT,
        stdout=(tmp_path / "up.log").open("wb"), stderr=subprocess.STDOUT)
    platform = None
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, (tmp_path / "up.log").read_text()
            time.sleep(0.3)
        platform = build_platform()
        job = job_service.submit(platform, "collect", {"symbols": ["NEW1"], "n_bars": 200,
                                                       "timeframe": "1h", "page_size": 50})
        done = job_service.wait_for(platform, job.id, timeout=30)
        assert done.status == "succeeded", (done, (tmp_path / "up.log").read_text()[-3000:])
        assert done.result is not None and done.result["rows"] == 200
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert 'signalfactory_jobs_total{kind="collect",status="succeeded"} 1.0' in metrics
    finally:
        if platform is not None:
            platform.close()
        proc.terminate()
        proc.wait(timeout=30)
    log = (tmp_path / "up.log").read_text()
    assert proc.returncode == 0, log[-3000:]  # runner and scheduler stopped cleanly
    assert '"job_id": "' + job.id in log  # the runner's lines carry the job id
