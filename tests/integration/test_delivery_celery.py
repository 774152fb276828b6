"""A Celery worker (a real subprocess on Redis or RabbitMQ) also sends the delivery outbox:
from a spawned child process of its own, which it stops on shutdown."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from signalfactory.bootstrap import build_platform
from signalfactory.domain.delivery import DELIVERED
from signalfactory.services.platform import Platform
from tests.delivery_support import (
    Receiver,
    delivery_env,
    insert_signals,
    new_signals,
    seed_instruments,
    seed_route,
    seed_strategy,
    with_delivery,
)
from tests.integration.test_jobs_celery import broker_url, celery_env  # noqa: F401 - fixtures
from tests.integration.test_jobs_kill import start_worker, stop_gently


@pytest.fixture
def platform_(celery_env: dict[str, str],  # noqa: F811 - the imported fixture
              monkeypatch: pytest.MonkeyPatch) -> Iterator[Platform]:
    for key, value in delivery_env().items():
        monkeypatch.setenv(key, value)
    platform = build_platform(migrate_db=True)
    try:
        yield with_delivery(platform)
    finally:
        platform.close()


def test_a_celery_worker_sends_the_outbox(platform_: Platform,
                                          celery_env: dict[str, str],  # noqa: F811
                                          tmp_path: Path) -> None:
    receiver = Receiver()
    log = tmp_path / "worker.log"
    worker = start_worker({**celery_env, **delivery_env()}, log, "--concurrency", "1")
    try:
        stored = seed_strategy(platform_)
        instruments = seed_instruments(platform_, ["AAA", "BBB"])
        seed_route(platform_, "hook", receiver.url)
        ids = insert_signals(platform_, stored, new_signals(stored, instruments, 5)).delivery_ids
        deadline = time.monotonic() + 40
        delivered = 0
        while time.monotonic() < deadline:
            with platform_.database.read(primary=True) as uow:
                delivered = len(uow.deliveries.find(None, status=DELIVERED, limit=1000))
            if delivered == len(ids):
                break
            time.sleep(0.1)
        assert delivered == len(ids), log.read_text()[-3000:]
        assert sorted(receiver.ids()) == sorted(ids)
    finally:
        stop_gently(worker)
        receiver.close()
    assert worker.returncode == 0, log.read_text()[-3000:]
