"""A campaign fanned out over Celery (Redis and RabbitMQ) while its worker is SIGKILLed
mid-way, three times: every recipient gets one outbox row, every row ends delivered, and a
message the receiver got twice carries the same webhook-id and body both times."""

from __future__ import annotations

import random
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from signalfactory.bootstrap import build_platform
from signalfactory.domain.delivery import DELIVERED, NewCampaign
from signalfactory.services.delivery.campaigns import start_campaign
from signalfactory.services.platform import Platform
from tests.delivery_support import Receiver, delivery_env
from tests.integration.test_jobs_celery import broker_url, celery_env  # noqa: F401 - fixtures
from tests.integration.test_jobs_kill import kill_hard, start_process, start_worker, stop_gently

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from _delivery_load import bulk_recipients

RECIPIENTS = 3_000
TENANT = 1
KILLS = 3


@pytest.fixture
def env(celery_env: dict[str, str],  # noqa: F811 - the imported fixture
        monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    # A killed worker's leased rows are sent again after the lease: short in this test. Beat's
    # sweep republishes a job whose worker died between committing and publishing it (as a
    # deployment's beat does, only sooner).
    extra = {**delivery_env(), "SIGNALFACTORY_DELIVERY_LEASE_SECONDS": "3",
             "SIGNALFACTORY_JOB_SWEEP_SECONDS": "1", "SIGNALFACTORY_JOB_REDISPATCH_SECONDS": "5"}
    for key, value in extra.items():
        monkeypatch.setenv(key, value)
    return {**celery_env, **extra}


@pytest.fixture
def cplatform(env: dict[str, str]) -> Iterator[Platform]:
    platform = build_platform(migrate_db=True)
    try:
        yield platform
    finally:
        platform.close()


def _jobs_state(platform: Platform) -> str:
    with platform.database.read(primary=True) as uow:
        found = uow.jobs.find(None, limit=100)
    return "\n".join(f"{j.kind} {j.status} runs={j.runs} lease={j.lease_expires_at}"
                     for j in found)


def _campaign_rows(platform: Platform, campaign_id: int) -> list[tuple[str, str]]:
    with platform.database.read(primary=True) as uow:
        return [(d.id, d.status) for d in uow.deliveries.find(
            None, campaign_id=campaign_id, limit=RECIPIENTS * 2)]


@pytest.mark.timeout(240)
def test_a_campaign_survives_a_killed_celery_worker(cplatform: Platform, env: dict[str, str],
                                                    tmp_path: Path) -> None:
    receiver = Receiver()
    log = tmp_path / "worker.log"
    rng = random.Random(11)
    beat = start_process(env, tmp_path / "beat.log", "beat", "--runner", "celery")
    try:
        bulk_recipients(cplatform, TENANT, RECIPIENTS, receiver.url, prefix="camp")
        campaign = start_campaign(cplatform, TENANT, NewCampaign(
            tenant_id=TENANT, subject="Maintenance", body="The API restarts at 02:00 UTC."),
            chunk_size=250)
        for _ in range(KILLS):
            worker = start_worker(env, log, "--concurrency", "1")
            time.sleep(rng.uniform(2.0, 4.0))  # fan-out and sending under way
            kill_hard(worker)
        worker = start_worker(env, log, "--concurrency", "1")
        try:
            deadline = time.monotonic() + 150
            rows: list[tuple[str, str]] = []
            while time.monotonic() < deadline:
                rows = _campaign_rows(cplatform, campaign.id)
                if len(rows) == RECIPIENTS and all(s == DELIVERED for _i, s in rows):
                    break
                time.sleep(0.5)
        finally:
            stop_gently(worker)
        with cplatform.database.read(primary=True) as uow:
            stored = uow.campaigns.get(TENANT, campaign.id)
        assert stored is not None and stored.status == "done", \
            _jobs_state(cplatform) + "\n" + log.read_text()[-3000:]
        assert stored.total == stored.enqueued == RECIPIENTS
        assert len(rows) == RECIPIENTS and {s for _i, s in rows} == {DELIVERED}, \
            log.read_text()[-3000:]
        bodies: dict[str, set[bytes]] = defaultdict(set)
        for headers, body in receiver.requests:
            bodies[headers["webhook-id"]].add(body)
        assert set(bodies) == {i for i, _s in rows}, "every row reached the receiver"
        assert all(len(b) == 1 for b in bodies.values()), "a repeat is the same message"
    finally:
        stop_gently(beat)
        receiver.close()
