"""Real-time rows overtake a 100,000-row campaign backlog: measured against a loopback
webhook receiver on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from signalfactory.domain.delivery import BULK
from signalfactory.services.platform import Platform
from signalfactory.workers.delivery import DeliveryWorker

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from _delivery_load import (
    Receiver,
    bulk_recipients,
    enqueue_rows,
    percentile,
    send_realtime,
    start_receiver,
)

CAMPAIGN_ROWS = 100_000
TENANT = 1


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = start_receiver()
    yield started
    started.stop()


@pytest.fixture
def delivery_platform(sf_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
                      ) -> Iterator[Platform]:
    from signalfactory.bootstrap import build_platform

    monkeypatch.setenv("SIGNALFACTORY_DELIVERY_KEY", base64.b64encode(os.urandom(32)).decode())
    monkeypatch.setenv("SIGNALFACTORY_DELIVERY_ALLOW_PRIVATE_TARGETS", "true")
    platform = build_platform(migrate_db=True)
    yield platform
    platform.close()


@pytest.mark.timeout(300)
def test_real_time_lag_stays_low_during_a_100k_campaign(delivery_platform: Platform,
                                                        receiver: Receiver) -> None:
    platform = delivery_platform
    subs, eps = bulk_recipients(platform, TENANT, 200, receiver.url)
    pairs = list(zip(subs, eps, strict=True))
    for start in range(0, CAMPAIGN_ROWS, 10_000):
        enqueue_rows(platform, TENANT, [pairs[i % len(pairs)] for i in range(start,
                     start + 10_000)], priority=BULK, start=start)
    workers = [DeliveryWorker(platform, concurrency=2, poll_seconds=0.05) for _ in range(2)]
    for worker in workers:
        worker.start()
    sent: dict[str, float] = {}
    try:
        time.sleep(0.5)  # the bulk threads are busy with the campaign
        for n in range(60):  # 20 real-time signals/s for 3 s
            message_id, committed = send_realtime(platform, TENANT, pairs[n], n)
            sent[message_id] = committed
            time.sleep(0.05)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not set(sent) <= set(receiver.times()):
            time.sleep(0.1)
        got = receiver.times()
        bulk_received = receiver.count() - len(set(sent) & set(got))
    finally:
        for worker in workers:
            worker.stop()
    lags = [(got[i] - t) * 1000 for i, t in sent.items() if i in got]
    p50, p99 = percentile(lags, 50), percentile(lags, 99)
    print(f"\nreal-time lag during a {CAMPAIGN_ROWS:,}-row campaign: p50 {p50:.1f} ms, "
          f"p99 {p99:.1f} ms, max {max(lags):.1f} ms; campaign rows delivered meanwhile "
          f"{bulk_received:,}")
    assert len(lags) == len(sent), "every real-time row arrived"
    # the campaign was still being delivered: the real-time rows overtook a backlog
    assert 0 < bulk_received < CAMPAIGN_ROWS
    # generous for a shared 2-core machine; the benchmark reports the real figure
    assert p99 < 2000, f"real-time p99 {p99:.0f} ms behind a campaign"


def test_campaign_fans_out_in_chunk_jobs_on_sql(delivery_platform: Platform,
                                                receiver: Receiver) -> None:
    from signalfactory.domain.delivery import NewCampaign
    from signalfactory.services.delivery.campaigns import CHUNK_KIND, DONE, start_campaign
    from signalfactory.workers.runner import EmbeddedRunner

    platform = delivery_platform
    _, eps = bulk_recipients(platform, TENANT, 50, receiver.url)
    campaign = start_campaign(platform, TENANT, NewCampaign(tenant_id=TENANT, subject="s",
                                                            body="b"), chunk_size=7)
    outcomes = EmbeddedRunner(platform, concurrency=1).run_until_idle()
    assert [o.status for o in outcomes] == ["succeeded"] * 9  # fan-out + 8 chunks
    with platform.database.read() as uow:
        done = uow.campaigns.get(TENANT, campaign.id)
        rows = uow.deliveries.find(TENANT, campaign_id=campaign.id, limit=1000)
        chunks = uow.jobs.find(tenant_id=TENANT, status=None, kind=CHUNK_KIND, limit=100,
                               offset=0)
    assert done is not None and (done.status, done.total, done.enqueued) == (DONE, 50, 50)
    assert sorted(r.endpoint_id for r in rows) == sorted(eps)
    assert {r.priority for r in rows} == {BULK} and len({r.id for r in rows}) == 50
    assert len(chunks) == 8
