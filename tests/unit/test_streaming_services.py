"""Live-stream services against the in-memory platform: subscriptions, stream filters, and
the hub's replay seam, relay and de-duplication over the in-memory signal event source."""

from __future__ import annotations

import asyncio
import copy
import dataclasses

import pytest

from signalfactory.api.stream_framing import STREAM_FRAMINGS
from signalfactory.domain.errors import (
    BadInputError,
    ConflictError,
    NotFoundError,
    OperationalError,
)
from signalfactory.domain.streaming import SignalEvent, StreamFilter
from signalfactory.services.platform import Platform
from signalfactory.services.strategies.catalog import add_strategy
from signalfactory.services.streaming.hub import StreamHub
from signalfactory.services.streaming.ports import SignalFeed
from signalfactory.services.streaming.subscriptions import (
    add_subscription,
    delete_subscription,
    get_subscription,
    list_subscriptions,
    stream_filter,
)
from signalfactory.testing import InMemoryDatabase, memory_platform
from signalfactory.testing.streaming import (
    ManualCommitNotifications,
    MemorySignalEventSource,
)


def _event(ident: int, symbol: str = "AAA", tenant: int = 1, builtin: bool = False,
           score: float | None = 1.0, strategy: str = "s") -> SignalEvent:
    return SignalEvent({"id": ident, "bar_ts": "2020-01-01T00:00:00+00:00", "symbol": symbol,
                        "side": "long", "strategy": strategy, "strategy_version": 1,
                        "timeframe": "1d", "score": score, "price": 1.0, "values": {},
                        "created_at": None}, tenant_id=tenant, builtin=builtin)


def _ids(message: str | bytes) -> list[int]:
    text = message.decode() if isinstance(message, bytes) else message
    return [int(part.split(",")[0].split("}")[0]) for part in text.split('"id":')[1:]]


@pytest.fixture
def platform() -> Platform:
    return memory_platform()


def _stored(platform: Platform) -> object:
    database = platform.database
    assert isinstance(database, InMemoryDatabase)
    return copy.deepcopy(database.state.__dict__)


# -- subscriptions ------------------------------------------------------------------------------

def test_subscriptions_are_cleaned_checked_and_private(platform: Platform) -> None:
    with platform.database.write() as uow:
        add_strategy(uow, 1, "mine", rule_text="entry: close > 0")
        sub = add_subscription(uow, 1, " picks ", strategies_=["Mine", "sma_cross", "mine"],
                               symbols=["B", " A", "B"], min_score=0.5)
    assert (sub.name, sub.strategies, sub.symbols) == ("picks", ("mine", "sma_cross"),
                                                       ("A", "B"))
    before = _stored(platform)
    for bad, error in (({"name": "picks"}, ConflictError),
                       ({"name": "x", "strategies_": ["theirs"]}, NotFoundError),
                       ({"name": "x", "symbols": ["A\x00"]}, BadInputError),
                       ({"name": "x", "min_score": float("nan")}, BadInputError),
                       ({"name": ""}, BadInputError)):
        with pytest.raises(error), platform.database.write() as uow:
            add_subscription(uow, 1, **bad)  # type: ignore[arg-type]
    assert _stored(platform) == before
    with platform.database.read() as uow:
        assert list_subscriptions(uow, 1) == [sub] and list_subscriptions(uow, 2) == []
        with pytest.raises(NotFoundError):  # another tenant's id is as unknown as a typo
            get_subscription(uow, 2, sub.id)
        flt = stream_filter(uow, 1, subscription_id=sub.id)
        with pytest.raises(BadInputError, match="not both"):
            stream_filter(uow, 1, subscription_id=sub.id, symbols=["A"])
        adhoc = stream_filter(uow, 2, symbols=["A"], min_score=1.0)
    assert flt == StreamFilter(tenant_id=1, strategies=frozenset({"mine", "sma_cross"}),
                               symbols=frozenset({"A", "B"}), min_score=0.5,
                               subscription_id=sub.id)
    assert adhoc.strategies is None and adhoc.symbols == frozenset({"A"})
    with pytest.raises(NotFoundError), platform.database.write() as uow:
        delete_subscription(uow, 2, sub.id)
    with platform.database.write() as uow:
        delete_subscription(uow, 1, sub.id)
    with platform.database.read() as uow:
        assert list_subscriptions(uow, 1) == []


# -- the hub over the in-memory feed -------------------------------------------------------------

def test_replay_seam_sends_each_event_once(platform: Platform) -> None:
    source = MemorySignalEventSource()
    source.store(*(_event(i) for i in (1, 2, 3)))
    hub = StreamHub(dataclasses.replace(platform, signal_feed=SignalFeed(source)),
                    framings=STREAM_FRAMINGS, poll_seconds=60)

    async def scenario() -> None:
        await hub.start()
        try:
            flt = StreamFilter(tenant_id=1)
            sub = hub.subscribe(flt, "ws", replaying=True)
            replayed = hub.replay_page(flt, 1, 1000)
            assert [e.id for e in replayed] == [2, 3]
            # Meanwhile signal 4 is stored and published directly, and the relay finds it.
            source.store(_event(4))
            hub.publish([_event(4)])
            hub.publish(await asyncio.to_thread(hub.poll_once), "relay")
            held = hub.go_live(sub, {e.id for e in replayed})
            assert [e.id for e in held] == [4]
            assert await sub.next_frames(0.05) == []  # the seam's events came back, once
            source.store(_event(5))
            hub.publish(await asyncio.to_thread(hub.poll_once), "relay")
            hub.publish([_event(5)])  # the direct path arrives late: not sent again
            (message,) = await sub.next_frames(0.1)
            assert _ids(message) == [5]
            assert await sub.next_frames(0.05) == []
        finally:
            await hub.stop()

    asyncio.run(scenario())


def test_relay_rereads_gaps_where_ids_commit_out_of_order(platform: Platform) -> None:
    source = MemorySignalEventSource(commits_in_id_order=False)
    hub = StreamHub(platform, framings=STREAM_FRAMINGS, feed=SignalFeed(source))
    assert hub.poll_once() == []  # sets the watermark at 0
    source.store(_event(1), _event(3))
    assert [e.id for e in hub.poll_once()] == [1, 3]
    source.store(_event(2))  # committed after 3: found in the re-read gap
    assert [e.id for e in hub.poll_once() if e.id == 2] == [2]
    in_order = StreamHub(platform, framings=STREAM_FRAMINGS,
                         feed=SignalFeed(MemorySignalEventSource()))
    assert in_order.poll_once() == [] and in_order._holes == []


def test_notifications_wake_the_relay_and_tenants_stay_apart(platform: Platform) -> None:
    source = MemorySignalEventSource()
    notes = ManualCommitNotifications()
    hub = StreamHub(platform, framings=STREAM_FRAMINGS, feed=SignalFeed(source, notes),
                    poll_seconds=60)

    async def scenario() -> None:
        await hub.start()
        try:
            mine = hub.subscribe(StreamFilter(tenant_id=1), "sse")
            theirs = hub.subscribe(StreamFilter(tenant_id=2), "ws")
            await asyncio.sleep(0.05)  # the listener is registered
            source.store(_event(1, tenant=1), _event(2, tenant=2, builtin=True))
            notes.notify()  # without it the relay would wait its 60 s
            (block,) = await mine.next_frames(2.0)
            assert isinstance(block, bytes) and block.startswith(b"id: 1\n")
            assert b"id: 2\n" in block
            (message,) = await theirs.next_frames(1.0)
            assert _ids(message) == [2]  # another tenant sees only the built-in's signal
        finally:
            await hub.stop()

    asyncio.run(scenario())


def test_a_hub_without_a_feed_says_what_is_missing(platform: Platform) -> None:
    hub = StreamHub(platform, framings=STREAM_FRAMINGS)
    with pytest.raises(OperationalError, match="signal feed"):
        hub.poll_once()
    with pytest.raises(ValueError, match="no framing"):
        hub.subscribe(StreamFilter(tenant_id=1), "carrier-pigeon")


def test_a_writer_thread_is_held_until_the_loop_has_fanned_its_events_out(
        platform: Platform) -> None:
    """From another thread, publish_threadsafe returns once the loop has written the events
    (the writer's next steps then do not compete with the fan-out for the GIL); a loop that
    does not get to them holds the writer only ``handoff_timeout`` s, and they still go out."""
    import threading
    import time

    async def scenario() -> None:
        hub = StreamHub(dataclasses.replace(
            platform, signal_feed=SignalFeed(MemorySignalEventSource())),
            framings=STREAM_FRAMINGS, poll_seconds=60, handoff_timeout=5.0)
        await hub.start()
        try:
            written: list[bytes] = []
            sub = hub.subscribe(StreamFilter(tenant_id=1), "ws",
                                direct=lambda frame: written.append(frame) is None)
            sub.busy = False

            def writer() -> int:
                hub.publish_threadsafe([_event(1)])
                return len(written)

            assert await asyncio.to_thread(writer) == 1
            hub.handoff_timeout = 0.05
            thread = threading.Thread(target=hub.publish_threadsafe, args=([_event(2)],))
            started = time.monotonic()
            thread.start()
            thread.join(5)  # blocks the loop itself: it cannot fan out meanwhile
            assert not thread.is_alive() and 0.04 <= time.monotonic() - started < 2
            assert len(written) == 1
            await asyncio.sleep(0.05)
            assert len(written) == 2 and _ids(written[1][written[1].index(b"{"):]) == [2]
        finally:
            await hub.stop()

    asyncio.run(scenario())
