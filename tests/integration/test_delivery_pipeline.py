"""The delivery pipeline on SQLite and PostgreSQL: the outbox commits with the signals, a
delivery worker sends through the real webhook channel to a local receiver, and rows are
claimed by exactly one of several workers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import standardwebhooks

from signalfactory.domain.delivery import DELIVERED, PENDING
from signalfactory.services.delivery.dispatch import deliver_due
from signalfactory.services.platform import Platform
from signalfactory.services.signals.store import store_signals
from signalfactory.workers.delivery import DeliveryWorker
from tests.delivery_support import (
    SECRET,
    Receiver,
    insert_signals,
    new_signals,
    seed_instruments,
    seed_route,
    seed_strategy,
    with_delivery,
)


@pytest.fixture
def dplatform(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> Iterator[Platform]:
    from signalfactory.bootstrap import build_channels

    settings = platform.settings.model_copy(update={"delivery_allow_private_targets": True})
    yield with_delivery(platform, build_channels(settings))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _count(platform: Platform, status: str | None = None) -> int:
    with platform.database.read(primary=True) as uow:
        return len(uow.deliveries.find(None, status=status, limit=100_000))


def test_outbox_rows_commit_with_their_signals_or_not_at_all(dplatform: Platform) -> None:
    stored = seed_strategy(dplatform)
    instruments = seed_instruments(dplatform, ["AAA", "BBB"])
    seed_route(dplatform, "hook", "http://127.0.0.1:9/hook")
    with pytest.raises(RuntimeError), dplatform.database.write() as uow:
        store_signals(dplatform, uow, [(stored, s) for s in new_signals(stored, instruments, 3)])
        raise RuntimeError("the transaction fails after the insert")
    with dplatform.database.read(primary=True) as uow:
        assert uow.signals.page(_query()) == []
    assert _count(dplatform) == 0
    result = insert_signals(dplatform, stored, new_signals(stored, instruments, 3))
    assert len(result.delivery_ids) == 3 and _count(dplatform, PENDING) == 3
    # a second subscription on the same endpoint never duplicates a (endpoint, signal) row
    with dplatform.database.write() as uow:
        rows = uow.deliveries.find(None)
        from dataclasses import replace

        from signalfactory.domain.delivery import NewDelivery
        from signalfactory.domain.message_ids import new_message_id
        again = [NewDelivery(id=new_message_id(), tenant_id=r.tenant_id,
                             endpoint_id=r.endpoint_id, signal_id=r.signal_id,
                             payload=r.payload) for r in rows]
        assert uow.deliveries.enqueue([replace(a) for a in again]) == 0
    assert _count(dplatform) == 3


def _query():  # type: ignore[no-untyped-def]
    from signalfactory.domain.signals import SignalQuery

    return SignalQuery(tenant_id=1)


def test_worker_delivers_signed_webhooks_to_a_local_receiver(
        dplatform: Platform, receiver: Receiver) -> None:
    stored = seed_strategy(dplatform)
    instruments = seed_instruments(dplatform, ["AAA", "BBB"])
    seed_route(dplatform, "hook", receiver.url)
    worker = DeliveryWorker(dplatform, concurrency=2, poll_seconds=0.2)
    worker.start()
    try:
        ids = insert_signals(dplatform, stored, new_signals(stored, instruments, 25)).delivery_ids
        deadline = time.monotonic() + 30
        while _count(dplatform, DELIVERED) < 25 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker.stop()
    assert _count(dplatform, DELIVERED) == 25
    assert sorted(receiver.ids()) == sorted(ids)
    verifier = standardwebhooks.Webhook(SECRET)
    for headers, body in receiver.requests:
        payload = verifier.verify(body, headers)
        assert payload["type"] == "signal.created" and payload["strategy"] == "always"


def test_several_claimers_never_take_the_same_row(dplatform: Platform,
                                                  receiver: Receiver) -> None:
    stored = seed_strategy(dplatform)
    instruments = seed_instruments(dplatform, ["AAA"])
    seed_route(dplatform, "hook", receiver.url)
    insert_signals(dplatform, stored, new_signals(stored, instruments, 60))
    reports = []
    lock = threading.Lock()

    def claim(n: int) -> None:
        report = deliver_due(dplatform, f"w{n}", limit=7)
        with lock:
            reports.append(report)

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sum(r.claimed for r in reports) == 56
    assert len(receiver.ids()) == len(set(receiver.ids())) == 56
