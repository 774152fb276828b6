"""Read-only mode: the operator's switch (CLI and API) on SQLite and PostgreSQL, jobs that
pause instead of failing, and a primary PostgreSQL cut off behind a proxy during a bounded
run of mixed reads and writes.

The outage test's "replica" is the same PostgreSQL database reached without the proxy: an
exact replica with no lag, which is what lets the test tell whether an accepted write was
lost (replication itself is PostgreSQL's, not ours to test).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from signalfactory.adapters.storage.tables import audit_log, strategies
from signalfactory.bootstrap import build_platform
from signalfactory.cli.main import app as cli_app
from signalfactory.domain.errors import ReadOnlyError
from signalfactory.domain.instruments import InstrumentSpec
from signalfactory.domain.tenants import DEFAULT_TENANT_ID
from signalfactory.services.jobs.registry import TaskContext, register_task, submit
from signalfactory.services.platform import Platform
from signalfactory.settings import Settings
from signalfactory.workers.runner import EmbeddedRunner
from tests.api_harness import ApiHarness
from tests.helpers import engine_of

RULE = "entry: close > sma(close, 3)\nexit: close < sma(close, 3)"
READ_ONLY_TYPE = "https://signalfactory.dev/problems/read-only"


def _strategy(name: str) -> dict[str, str]:
    return {"name": name, "rule": RULE}


def _store(platform: Platform) -> dict[str, int]:
    """What the tables a strategy write touches hold (the fingerprint of this test)."""
    with engine_of(platform).connect() as conn:
        return {"strategies": conn.execute(sa.select(sa.func.count()).select_from(
                    strategies)).scalar_one(),
                "audit": conn.execute(sa.select(sa.func.count()).select_from(
                    audit_log)).scalar_one()}


@pytest.fixture
def platform(database_url: str, tmp_path: Path) -> Iterator[Platform]:
    built = build_platform(Settings(home=tmp_path / "home", database_url=database_url,
                                    bar_store="columnar"), migrate_db=True)
    try:
        yield built
    finally:
        built.close()


def test_operator_switch_refuses_writes_keeps_reads_and_reports_degraded(
        platform: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with ApiHarness(platform) as api:
        operator = api.key(DEFAULT_TENANT_ID, "admin")
        tenant_admin = api.key(api.tenant("ro", tier="premium"), "admin")
        auth = api.auth(tenant_admin)
        assert api.client.post("/api/v1/strategies", headers=auth,
                               json=_strategy("before")).status_code == 201

        refused = api.client.put("/api/v1/ops/read-only", headers=auth,
                                 json={"enabled": True, "reason": "failover"})
        assert refused.status_code == 403, "a tenant's admin cannot switch every tenant"
        missing = api.client.put("/api/v1/ops/read-only", headers=api.auth(operator),
                                 json={"enabled": True})
        assert missing.status_code == 422 and missing.json()["rule"] == "reason"
        switched = api.client.put("/api/v1/ops/read-only", headers=api.auth(operator),
                                  json={"enabled": True, "reason": "failover drill"})
        assert switched.status_code == 200, switched.text
        assert switched.json()["read_only"] is True

        before = _store(platform)
        write = api.client.post("/api/v1/strategies", headers=auth, json=_strategy("during"))
        assert write.status_code == 503, write.text
        assert write.json()["type"] == READ_ONLY_TYPE
        assert "failover drill" in write.json()["detail"]
        assert int(write.headers["Retry-After"]) > 0
        keyed = api.client.post("/api/v1/strategies", json=_strategy("keyed"),
                                headers={**auth, "Idempotency-Key": uuid.uuid4().hex})
        assert keyed.status_code == 503 and keyed.json()["type"] == READ_ONLY_TYPE
        assert _store(platform) == before, "a refused write stores nothing"

        names = {s["name"] for s in api.client.get("/api/v1/strategies",
                                                   headers=auth).json()["items"]}
        assert "before" in names and "during" not in names
        ready = api.client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["status"] == "degraded"
        assert ready.json()["checks"]["read_only"].startswith("degraded: read-only")

        # The CLI sees the switch (the same home) and turns it off.
        monkeypatch.setenv("SIGNALFACTORY_HOME", str(platform.settings.home))
        monkeypatch.setenv("SIGNALFACTORY_DATABASE_URL", platform.settings.resolved_database_url)
        runner = CliRunner()
        shown = runner.invoke(cli_app, ["ops", "read-only", "status", "--json"])
        assert shown.exit_code == 0 and '"read_only": true' in shown.stdout
        bad = runner.invoke(cli_app, ["ops", "read-only", "maybe"])
        assert bad.exit_code == 2
        off = runner.invoke(cli_app, ["ops", "read-only", "off"])
        assert off.exit_code == 0 and "read-only: off" in off.stdout
        time.sleep(0.6)  # each process re-reads the flag file at most every 0.5 s

        after = api.client.post("/api/v1/strategies", headers=auth, json=_strategy("after"))
        assert after.status_code == 201, after.text
        assert api.client.get("/readyz").json()["status"] == "ok"
        on = runner.invoke(cli_app, ["ops", "read-only", "on", "--reason", "maintenance"])
        assert on.exit_code == 0 and "maintenance" in on.stdout
        time.sleep(0.6)
        assert api.client.post("/api/v1/strategies", headers=auth,
                               json=_strategy("again")).status_code == 503


_SWITCHED_FOR: set[str] = set()


def _pause_midway(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    if payload.get("switch_on") and ctx.job_id not in _SWITCHED_FOR:
        _SWITCHED_FOR.add(ctx.job_id)  # only on its first run
        ctx.platform.database.set_read_only("test: the mode starts while a job runs")
    with ctx.platform.database.write() as uow:
        uow.instruments.upsert([InstrumentSpec("PAUSEDJOB")])
    return {"ran": True}


register_task("test.read_only_pause", _pause_midway)


def test_jobs_pause_in_read_only_mode_and_resume_uncounted(platform: Platform) -> None:
    waiting = submit(platform, "test.read_only_pause", {})
    midway = submit(platform, "test.read_only_pause", {"switch_on": True}, priority=5)
    runner = EmbeddedRunner(platform, concurrency=1, poll_seconds=0.05)

    # The job that met the mode while running is kept, not failed; nothing else is claimed.
    with pytest.raises(ReadOnlyError):
        runner.run_next()
    with pytest.raises(ReadOnlyError):
        runner.run_next()
    with platform.database.read() as uow:
        jobs = {j.id: j for j in (uow.jobs.get(waiting.id), uow.jobs.get(midway.id)) if j}
    assert jobs[waiting.id].status == "queued" and jobs[waiting.id].attempts == 0
    assert jobs[midway.id].status == "running"

    platform.database.set_read_only(None)
    outcomes = runner.run_until_idle()
    assert sorted(o.status for o in outcomes) == ["succeeded", "succeeded"]
    with platform.database.read() as uow:
        done = [uow.jobs.get(waiting.id), uow.jobs.get(midway.id)]
    assert [j.status for j in done if j] == ["succeeded", "succeeded"]
    assert [j.attempts for j in done if j] == [1, 1], "a paused run is not a failed attempt"


def test_a_celery_task_pauses_and_hands_its_claim_back_uncounted(
        platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    """The task wrapper, called in-process: a run that meets read-only mode asks Celery to
    retry with no limit, naming the claim to hand back; the retry hands it back and runs."""
    import os

    from signalfactory.adapters.jobs.celery_queue import RUN_JOB
    from signalfactory.workers import celery_app

    monkeypatch.setitem(celery_app._WORKER_PLATFORM, os.getpid(), platform)
    task = celery_app.make_celery_app(Settings(broker_url="memory://")).tasks[RUN_JOB]
    retries: list[dict[str, Any]] = []

    class RetryAskedError(Exception):
        pass

    def retry(**kwargs: Any) -> Exception:
        retries.append(kwargs)
        return RetryAskedError()

    monkeypatch.setattr(task, "retry", retry)
    job = submit(platform, "test.read_only_pause", {"switch_on": True})
    with pytest.raises(RetryAskedError):
        task(job.id)
    assert retries[0]["max_retries"] is None, "paused for as long as the mode lasts"
    paused_owner = retries[0]["kwargs"]["paused_owner"]
    with platform.database.read() as uow:
        held = uow.jobs.get(job.id)
    assert held is not None and held.status == "running" and held.lease_owner == paused_owner

    with pytest.raises(RetryAskedError):  # still read-only: the claim stays named for later
        task(job.id, paused_owner=paused_owner)
    assert retries[1]["kwargs"]["paused_owner"] == paused_owner

    platform.database.set_read_only(None)
    assert task(job.id, paused_owner=paused_owner) == "succeeded"
    with platform.database.read() as uow:
        done = uow.jobs.get(job.id)
    assert done is not None and done.status == "succeeded" and done.attempts == 1
