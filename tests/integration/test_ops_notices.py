"""A scheduled operation that fails for good tells the operators' tenant through its delivery
endpoints, on SQLite and PostgreSQL: the notice is written with the job's outcome, reaches a
loopback webhook once, and a missing notice tenant never undoes the outcome."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from signalfactory.services.accounts import tenants as accounts
from signalfactory.services.delivery.campaigns import FANOUT_KIND
from signalfactory.services.delivery.dispatch import deliver_due
from signalfactory.services.jobs import registry as job_service
from signalfactory.services.jobs.registry import submit
from signalfactory.services.platform import Platform
from tests.delivery_support import Receiver, seed_route, with_delivery


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def ops_platform(sf_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Platform]:
    from signalfactory.bootstrap import build_platform

    monkeypatch.setenv("SIGNALFACTORY_DELIVERY_KEY", base64.b64encode(os.urandom(32)).decode())
    monkeypatch.setenv("SIGNALFACTORY_DELIVERY_ALLOW_PRIVATE_TARGETS", "true")
    platform = build_platform(migrate_db=True)
    yield with_delivery(platform)
    platform.close()


def _with_notice_tenant(platform: Platform, tenant: int) -> Platform:
    settings = platform.settings.model_copy(update={"ops_notice_tenant": tenant})
    return dataclasses.replace(platform, settings=settings)


def _fail_a_backup(platform: Platform, tmp_path: Path) -> str:
    from signalfactory.workers.runner import EmbeddedRunner

    # A file where the destination directory should be: the backup cannot be written.
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    job = submit(platform, "backup", {"dest": str(blocker / "backups")}, max_attempts=1)
    EmbeddedRunner(platform, concurrency=1).run_until_idle()
    return job.id


def test_a_failed_scheduled_backup_reaches_the_operators_webhook(
        ops_platform: Platform, receiver: Receiver, tmp_path: Path) -> None:
    with ops_platform.database.write() as uow:
        ops_tenant = accounts.create_tenant(uow, "operators").id
    seed_route(ops_platform, "pager", receiver.url, tenant_id=ops_tenant)
    platform = _with_notice_tenant(ops_platform, ops_tenant)

    job_id = _fail_a_backup(platform, tmp_path)
    job = job_service.get_job(platform, job_id)
    assert job.status in ("failed", "dead"), job
    with platform.database.read(primary=True) as uow:
        campaigns = uow.campaigns.for_tenant(ops_tenant)
        fanouts = uow.jobs.find(tenant_id=ops_tenant, kind=FANOUT_KIND, limit=10)
    assert len(campaigns) == 1
    assert campaigns[0].subject == f"Signal Factory: scheduled backup {job.status}"
    assert job_id in campaigns[0].body and (job.error or "")[:40] in campaigns[0].body
    assert [f.status for f in fanouts] == ["succeeded"]  # the runner fanned it out

    for _ in range(5):
        if deliver_due(platform, "test", limit=10).delivered == 0 and receiver.requests:
            break
    assert len(receiver.requests) == 1
    sent = json.loads(receiver.requests[0][1])
    assert job_id in json.dumps(sent)


def test_no_notice_tenant_or_a_missing_one_leaves_the_outcome_stored(
        ops_platform: Platform, tmp_path: Path) -> None:
    quiet = _fail_a_backup(ops_platform, tmp_path)  # unset: alert and log only
    missing = _fail_a_backup(_with_notice_tenant(ops_platform, 999), tmp_path)
    for job_id in (quiet, missing):
        assert job_service.get_job(ops_platform, job_id).status in ("failed", "dead")
    with ops_platform.database.read(primary=True) as uow:
        assert uow.jobs.find(tenant_id=None, kind=FANOUT_KIND, limit=10) == []


def test_a_backup_dead_of_lost_workers_reaches_the_operators_too(
        ops_platform: Platform, tmp_path: Path) -> None:
    import time

    from signalfactory.services.jobs.execution import claim_next, reap_expired

    with ops_platform.database.write() as uow:
        ops_tenant = accounts.create_tenant(uow, "operators").id
    settings = ops_platform.settings.model_copy(update={
        "ops_notice_tenant": ops_tenant, "job_max_losses": 1, "job_lease_seconds": 0.2})
    platform = dataclasses.replace(ops_platform, settings=settings)
    job = submit(platform, "backup", {"dest": str(tmp_path / "backups")})
    claimed = claim_next(platform, "a-worker-that-will-vanish")
    assert claimed is not None and claimed.id == job.id
    time.sleep(0.3)  # the lease runs out: its worker is presumed dead

    reap_expired(platform)

    dead = job_service.get_job(platform, job.id)
    assert dead.status == "dead" and "stopped responding" in (dead.error or "")
    with platform.database.read(primary=True) as uow:
        campaigns = uow.campaigns.for_tenant(ops_tenant)
    assert [c.subject for c in campaigns] == ["Signal Factory: scheduled backup dead"]
    assert job.id in campaigns[0].body and "stopped responding" in campaigns[0].body
