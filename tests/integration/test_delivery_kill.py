"""SIGKILL a delivery worker process at random points, 50 times, including in the middle of
a 10,000-row batch: every outbox row ends delivered or dead, none is lost, and the receiver
sees a repeat only as the same message under the same ``webhook-id``."""

from __future__ import annotations

import json
import random
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
import standardwebhooks

from signalfactory.bootstrap import build_platform
from signalfactory.domain.delivery import BULK, DEAD, DELIVERED, NewDelivery
from signalfactory.domain.message_ids import new_message_id
from signalfactory.services.platform import Platform
from tests.delivery_support import (
    SECRET,
    Receiver,
    delivery_env,
    insert_signals,
    new_signals,
    seed_instruments,
    seed_route,
    seed_strategy,
    with_delivery,
)
from tests.integration.test_jobs_kill import kill_hard, start_worker, stop_gently

KILLS = 50
BULK_ROWS = 10_000


@pytest.fixture
def kill_env(sf_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {**sf_env, **delivery_env(), "SIGNALFACTORY_DELIVERY_LEASE_SECONDS": "2",
           "SIGNALFACTORY_DELIVERY_BATCH": "500", "SIGNALFACTORY_LOG_FORMAT": "json"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def kp(kill_env: dict[str, str]) -> Iterator[Platform]:
    platform = build_platform(migrate_db=True)
    try:
        yield with_delivery(platform)
    finally:
        platform.close()


def _statuses(platform: Platform) -> dict[str, str]:
    with platform.database.read(primary=True) as uow:
        return {d.id: d.status for d in uow.deliveries.find(None, limit=1_000_000)}


def test_sigkilled_worker_loses_nothing_and_repeats_only_the_same_message(
        kp: Platform, kill_env: dict[str, str], tmp_path: Path) -> None:
    receiver = Receiver()
    try:
        stored = seed_strategy(kp)
        instruments = seed_instruments(kp, ["AAA", "BBB", "CCC"])
        endpoint_id, sub_id = seed_route(kp, "hook", receiver.url)
        signal_ids = insert_signals(kp, stored, new_signals(stored, instruments, 200))
        # the 10,000-row batch (a campaign's size), written straight through the repository
        with kp.database.write() as uow:
            uow.deliveries.enqueue([NewDelivery(
                id=new_message_id(), tenant_id=1, endpoint_id=endpoint_id,
                subscription_id=sub_id, priority=BULK,
                payload={"type": "announcement", "subject": "hello", "body": f"row {i}"})
                for i in range(BULK_ROWS)])
        expected = set(_statuses(kp))
        assert len(expected) == BULK_ROWS + len(signal_ids.delivery_ids)

        rng = random.Random(20241204)
        log = tmp_path / "worker.log"
        started = time.monotonic()
        mid_batch = 0
        for n in range(KILLS):
            proc = start_worker(kill_env, log, "--concurrency", "1")
            if n % 5 == 0:  # every fifth kill lands somewhere in start-up
                time.sleep(rng.uniform(0.05, 1.0))
            else:  # the others once this worker is sending, at a random point of its batch
                seen, wait_until = len(receiver.requests), time.monotonic() + 10
                while len(receiver.requests) == seen and time.monotonic() < wait_until:
                    time.sleep(0.01)
                mid_batch += len(receiver.requests) > seen
                time.sleep(rng.uniform(0.0, 0.5))
            kill_hard(proc)
            assert time.monotonic() - started < 600, "the kill loop must stay bounded"
        received_during_kills = len(receiver.requests)
        proc = start_worker(kill_env, log, "--concurrency", "1")
        try:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                statuses = _statuses(kp)
                if all(s in (DELIVERED, DEAD) for s in statuses.values()):
                    break
                time.sleep(0.5)
        finally:
            stop_gently(proc)
        statuses = _statuses(kp)
        assert set(statuses) == expected, "no outbox row is lost"
        assert {s for s in statuses.values()} <= {DELIVERED, DEAD}, log.read_text()[-3000:]
        assert received_during_kills > 0 and mid_batch >= KILLS // 2, \
            "most kills happened while the worker was sending"
        bodies: dict[str, set[bytes]] = defaultdict(set)
        verifier = standardwebhooks.Webhook(SECRET)
        for headers, body in receiver.requests:
            verifier.verify(body, headers)  # every message received is whole and signed
            bodies[headers["webhook-id"]].add(body)
        delivered = {i for i, s in statuses.items() if s == DELIVERED}
        assert delivered <= set(bodies), "every delivered row reached the receiver"
        assert set(bodies) <= expected, "nothing but outbox rows was sent"
        # a repeat is the same message: one body per webhook-id, one webhook-id per body
        differing = {i: sorted(b) for i, b in bodies.items() if len(b) > 1}
        assert not differing, list(differing.items())[:2]
        by_body: dict[bytes, set[str]] = defaultdict(set)
        for ident, b in bodies.items():
            by_body[next(iter(b))].add(ident)
        assert all(len(ids) == 1 for ids in by_body.values())
        repeats = len(receiver.requests) - len(bodies)
        print(json.dumps({"kills": KILLS, "mid_batch": mid_batch,
                          "received": len(receiver.requests),
                          "repeats": repeats, "seconds": round(time.monotonic() - started)}))
    finally:
        receiver.close()
