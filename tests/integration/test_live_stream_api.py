"""Subscriptions API, incremental live evaluation, the hub's fan-out and the relay."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from signalfactory.adapters.storage.signals import SqlSignalRepository
from signalfactory.adapters.storage.tables import instruments, signals, strategies
from signalfactory.adapters.storage.tables import strategy_versions as versions
from signalfactory.api.stream_framing import STREAM_FRAMINGS
from signalfactory.domain.instruments import InstrumentSpec
from signalfactory.domain.signals import NewSignal
from signalfactory.domain.strategies import builtin_strategy, signal_records
from signalfactory.domain.streaming import SignalEvent, StreamFilter
from signalfactory.domain.timeframes import Timeframe
from signalfactory.domain.timestamps import datetime_to_ns
from signalfactory.services.marketdata.bars import SymbolBars, load_universe, write_bars
from signalfactory.services.signals import live
from signalfactory.services.strategies.catalog import add_strategy, ensure_builtins
from signalfactory.services.streaming.hub import StreamHub
from signalfactory.services.streaming.subscriptions import (
    create_subscription,
    delete_subscription,
)
from tests.api_harness import BACKENDS, ApiHarness, module_platform
from tests.helpers import engine_of
from tests.live_stream_client import ALWAYS, day, write_bars_for

shared_platform = pytest.fixture(scope="module", params=BACKENDS)(module_platform)
DAY = Timeframe.parse("1d")


@pytest.fixture(scope="module")
def api(shared_platform: Any) -> Iterator[ApiHarness]:
    with ApiHarness(shared_platform) as harness:
        yield harness


def _symbols(n: int) -> list[str]:
    tag = uuid.uuid4().hex[:6].upper()
    return [f"Q{tag}{i}" for i in range(n)]


# -- subscriptions over HTTP ---------------------------------------------------------------

def test_subscriptions_crud_validation_and_quota(api: ApiHarness) -> None:
    tenant = api.tenant("subs", tier="free")  # free: 2 subscriptions
    key = api.key(tenant, "trader")
    viewer = api.key(tenant, "viewer")
    with api.platform.database.write() as uow:
        add_strategy(uow, tenant, "mine", rule_text=ALWAYS)
    url = "/api/v1/subscriptions"
    first = api.client.post(url, headers=api.auth(key), json={
        "name": "a", "strategies": ["Mine", "sma_cross", "mine"], "symbols": ["B", "A"],
        "min_score": 0.5})
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["strategies"] == ["mine", "sma_cross"] and body["symbols"] == ["A", "B"]
    assert api.client.post(url, headers=api.auth(viewer), json={"name": "v"}).status_code == 403
    assert api.client.post(url, headers=api.auth(key), json={"name": "a"}).status_code == 409
    unknown = api.client.post(url, headers=api.auth(key), json={"name": "u",
                                                                "strategies": ["nope"]})
    assert unknown.status_code == 404 and "nope" in unknown.json()["detail"]
    for bad in ({"name": "x", "min_score": "nan"}, {"name": "x", "colour": "red"},
                {"name": ""}, {"name": "x", "symbols": [""]}, {"name": "a\x00b"},
                {"name": "x", "symbols": ["A\x00"]}):
        assert api.client.post(url, headers=api.auth(key), json=bad).status_code == 422, bad
    assert api.client.post(url, headers=api.auth(key), json={"name": "b"}).status_code == 201
    full = api.client.post(url, headers=api.auth(key), json={"name": "c"})
    assert full.status_code == 403 and full.json()["quota"] == "subscriptions"
    listed = api.client.get(url, headers=api.auth(viewer)).json()["items"]
    assert [s["name"] for s in listed] == ["a", "b"]
    assert api.client.get(f"{url}/{body['id']}", headers=api.auth(viewer)).json() == body
    assert api.client.delete(f"{url}/{body['id']}", headers=api.auth(key)).status_code == 204
    assert api.client.get(f"{url}/{body['id']}", headers=api.auth(key)).status_code == 404
    # Deleting made room under the quota.
    assert api.client.post(url, headers=api.auth(key), json={"name": "c"}).status_code == 201


def test_stream_filter_parameters_are_validated(api: ApiHarness) -> None:
    tenant = api.tenant("filters", tier="premium")
    key = api.key(tenant, "viewer")
    base = "/api/v1/stream/sse"
    cases = {"?subscription=1&symbols=A": 422, "?strategies=no_such": 404,
             "?min_score=inf": 422, "?subscription=0": 422, "?last_event_id=-1": 422}
    for query, status in cases.items():
        assert api.client.get(base + query, headers=api.auth(key)).status_code == status, query
    bad_header = api.client.get(base, headers=api.auth(key, **{"Last-Event-ID": "abc"}))
    assert bad_header.status_code == 422


# -- incremental evaluation ----------------------------------------------------------------

def _signal_keys(api: ApiHarness, name: str, since_ns: int) -> set[tuple[str, int, str]]:
    with engine_of(api.platform).connect() as conn:
        rows = conn.execute(
            sa.select(instruments.c.symbol, signals.c.bar_ts, signals.c.side)
            .join(instruments, instruments.c.id == signals.c.instrument_id)
            .join(versions, versions.c.id == signals.c.strategy_version_id)
            .join(strategies, strategies.c.id == versions.c.strategy_id)
            .where(strategies.c.name == name, strategies.c.builtin.is_(sa.true())))
        keys = {(symbol, datetime_to_ns(bar_ts), side) for symbol, bar_ts, side in rows}
    return {k for k in keys if k[1] >= since_ns}


def test_live_signals_match_a_full_evaluation_of_the_same_bars(api: ApiHarness) -> None:
    """Windowed built-ins: appending bars in batches stores exactly the signals a
    full-history evaluation finds on those bars."""
    names = ["sma_cross", "bollinger_breakout", "donchian_breakout"]
    tenant = api.tenant("incremental", tier="enterprise")
    create_subscription(api.platform, tenant, "builtins", strategies_=names)
    symbols = _symbols(6)
    rng = np.random.default_rng(7)
    steps = rng.normal(0, 1.5, size=(len(symbols), 300)).cumsum(axis=1) + 100
    def write(lo: int, hi: int) -> None:
        ts = np.array([day(d) for d in range(lo, hi)], dtype=np.int64)
        batches = [SymbolBars(InstrumentSpec(s), ts, steps[k, lo:hi], steps[k, lo:hi] + 1,
                              steps[k, lo:hi] - 1, steps[k, lo:hi], np.full(hi - lo, 1e3))
                   for k, s in enumerate(symbols)]
        write_bars(api.platform, DAY, batches, source="test")

    write(0, 200)
    for lo in range(200, 300, 25):
        write(lo, lo + 25)
    universe = load_universe(api.platform, DAY, symbols=symbols)
    since = day(200)
    for name in names:
        records = signal_records(builtin_strategy(name).evaluate(universe), since_ts=since)
        expected = {(r.symbol, r.ts, r.side) for r in records}
        assert expected, name  # the data must exercise the strategy
        assert _signal_keys(api, name, since) == expected, name


@pytest.mark.parametrize("cached", [False, True], ids=["uncached", "cached"])
def test_builtins_are_watched_only_when_a_subscription_wants_them(platform: Any,
                                                                  cached: bool) -> None:
    """Cached as live evaluation caches them (``platform.live_watched``), the answer follows
    every change: a new strategy or version, a subscription added or deleted."""
    cache: dict[str, tuple[object, list[Any]]] | None = {} if cached else None

    def watched(timeframe: Timeframe = DAY) -> set[str]:
        with platform.database.read(primary=True) as uow:
            return {s.name for s in live.watched_strategies(uow, timeframe, cache)}

    with platform.database.write() as uow:
        ensure_builtins(uow)
        add_strategy(uow, 1, "mine", rule_text=ALWAYS)
        add_strategy(uow, 1, "hourly", rule_text=ALWAYS, timeframe="1h")
    assert watched() == {"mine"} and watched(Timeframe.parse("1h")) == {"hourly"}
    one = create_subscription(platform, 1, "one", strategies_=["sma_cross"])
    assert watched() == {"mine", "sma_cross"}
    everything = create_subscription(platform, 1, "all")  # no list: everything visible
    assert watched() == {"mine", "sma_cross", "rsi_mean_reversion", "macd_trend",
                         "bollinger_breakout", "donchian_breakout"}
    with platform.database.write() as uow:
        delete_subscription(uow, 1, everything.id)
        delete_subscription(uow, 1, one.id)
    assert watched() == {"mine"}
    # A subscription may reuse a deleted one's id (SQLite): its own list counts.
    create_subscription(platform, 1, "again", strategies_=["macd_trend"])
    assert watched() == {"mine", "macd_trend"}
    with platform.database.write() as uow:  # a new version moves "mine" to hourly bars
        add_strategy(uow, 1, "mine", rule_text="entry: close > 1\nexit: close < 0",
                     timeframe="1h")
        add_strategy(uow, 1, "later", rule_text=ALWAYS)
    assert watched() == {"macd_trend", "later"}
    assert watched(Timeframe.parse("1h")) == {"hourly", "mine"}


def test_a_failing_strategy_or_hook_never_fails_the_write(api: ApiHarness,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    tenant = api.tenant("faults", tier="enterprise")
    good, bad = f"good_{uuid.uuid4().hex[:6]}", f"bad_{uuid.uuid4().hex[:6]}"
    with api.platform.database.write() as uow:
        add_strategy(uow, tenant, good, rule_text=ALWAYS)
        add_strategy(uow, tenant, bad, rule_text=ALWAYS)
    (symbol,) = _symbols(1)
    published: list[SignalEvent] = []
    api.platform.signal_publishers.append(published.extend)
    real = live.new_records

    def failing(strategy: Any, *args: Any) -> Any:
        if strategy.name == bad:
            raise ValueError("boom")
        return real(strategy, *args)

    monkeypatch.setattr(live, "new_records", failing)
    try:
        write_bars_for(api.platform, [symbol], range(5))
        mine = [e for e in published if e.symbol == symbol and e.strategy in (good, bad)]
        assert {e.strategy for e in mine} == {good} and len(mine) == 5
        monkeypatch.setattr(live, "watched_strategies", lambda *_a: 1 / 0)
        report = write_bars_for(api.platform, [symbol], [5])
        assert report.rows == 1
    finally:
        api.platform.signal_publishers.remove(published.extend)
    with engine_of(api.platform).connect() as conn:
        failed = conn.execute(sa.text(
            "SELECT count(*) FROM strategy_runs r JOIN strategy_versions v "
            "ON v.id = r.strategy_version_id JOIN strategies s ON s.id = v.strategy_id "
            "WHERE s.name = :n AND r.status = 'failed'"), {"n": bad}).scalar()
    assert failed == 1
    assert load_universe(api.platform, DAY, symbols=[symbol]).n_bars == 6


# -- the hub ---------------------------------------------------------------------------------

def _event(ident: int, symbol: str = "AAA", tenant: int = 1, builtin: bool = False,
           score: float | None = 1.0) -> SignalEvent:
    return SignalEvent({"id": ident, "bar_ts": "2020-01-01T00:00:00+00:00", "symbol": symbol,
                        "side": "long", "strategy": "s", "strategy_version": 1,
                        "timeframe": "1d", "score": score, "price": 1.0, "values": {},
                        "created_at": None}, tenant_id=tenant, builtin=builtin)


def test_hub_serialises_once_drops_slow_consumers_and_isolates_tenants() -> None:
    async def scenario() -> None:
        hub = StreamHub(platform=None, framings=STREAM_FRAMINGS,  # type: ignore[arg-type]
                        max_pending=3)
        fast = [hub.subscribe(StreamFilter(tenant_id=1), "ws") for _ in range(3)]
        slow = hub.subscribe(StreamFilter(tenant_id=1), "ws")
        other = hub.subscribe(StreamFilter(tenant_id=2), "sse")
        picky = hub.subscribe(StreamFilter(tenant_id=1, symbols=frozenset({"BBB"})), "ws")
        for ident in range(1, 6):
            hub.publish([_event(ident)])
            for sub in fast:
                assert len(await sub.next_frames(0.1)) == 1
        hub.publish([_event(5)])  # already published: ignored
        # One message object, built once, on every connection of the group.
        hub.publish([_event(6), _event(7, builtin=True, symbol="BBB")])
        frames = [await sub.next_frames(0.1) for sub in fast]
        assert all(f[0] is frames[0][0] for f in frames)
        assert '"id":6' in frames[0][0] and '"id":7' in frames[0][0]
        assert slow.closed == "slow" and all(s.closed is None for s in fast)
        # Another tenant sees only the built-in's signal; a symbol filter only its symbol.
        (block,) = await other.next_frames(0.1)
        assert block.startswith(b"id: 7\n") and b"id: 6" not in block
        (picked,) = await picky.next_frames(0.1)
        assert '"id":7' in picked and '"id":6' not in picked
        assert await fast[0].next_frames(0.05) == []  # nothing more: a timeout, not a close

    asyncio.run(scenario())


def test_an_event_replayed_before_its_live_publish_is_not_sent_twice() -> None:
    """The writer committed id 5, the replay read it, the client went live, and only then
    did the writer's publish reach the hub: the subscriber gets 6, not 5 again."""
    async def scenario() -> None:
        hub = StreamHub(platform=None, framings=STREAM_FRAMINGS)  # type: ignore[arg-type]
        seam = hub.subscribe(StreamFilter(tenant_id=1), "ws", replaying=True)
        other = hub.subscribe(StreamFilter(tenant_id=1), "ws")
        hub.publish([_event(3)])  # fanned out before the seam: never published again
        assert hub.go_live(seam, {3, 4, 5}) == [] and seam.replayed == {4, 5}
        await other.next_frames(0.1)
        hub.publish([_event(5), _event(6)])
        (message,) = await seam.next_frames(0.1)
        assert '"id":6' in message and '"id":5' not in message
        (shared,) = await other.next_frames(0.1)
        assert '"id":5' in shared and '"id":6' in shared
        hub.publish([_event(7)])
        (after,) = await seam.next_frames(0.1)
        assert after is (await other.next_frames(0.1))[0], "back on the shared message"

    asyncio.run(scenario())


def test_stop_waits_for_a_poll_running_in_its_thread(platform: Any) -> None:
    """Cancelling the relay cannot stop the thread of its poll: stop() waits for it, so no
    query reaches the database after the hub is down (shutdown disposes the engine next)."""
    import threading
    import time

    hub = StreamHub(platform, framings=STREAM_FRAMINGS, poll_seconds=0.001)
    started, finished = threading.Event(), threading.Event()
    real_poll = hub.poll_once

    def slow_poll() -> list[SignalEvent]:
        started.set()
        time.sleep(0.3)
        try:
            return real_poll()
        finally:
            finished.set()

    hub.poll_once = slow_poll  # type: ignore[method-assign]

    async def scenario() -> None:
        await hub.start()
        assert await asyncio.to_thread(started.wait, 5.0)
        await hub.stop()
        assert finished.is_set(), "stop() returned while a poll was still reading"

    asyncio.run(scenario())


def test_hub_writes_one_prepared_frame_to_idle_connections_and_queues_the_rest() -> None:
    async def scenario() -> None:
        hub = StreamHub(platform=None, framings=STREAM_FRAMINGS)  # type: ignore[arg-type]
        written: list[tuple[int, bytes]] = []

        def writer(n: int, accept: bool = True) -> Any:
            def write(frame: bytes) -> bool:
                if accept:
                    written.append((n, frame))
                return accept
            return write

        idle = [hub.subscribe(StreamFilter(tenant_id=1), "ws", direct=writer(n))
                for n in range(3)]
        for sub in idle:
            sub.busy = False
        paused = hub.subscribe(StreamFilter(tenant_id=1), "ws", direct=writer(9, False))
        paused.busy = False
        greeting = hub.subscribe(StreamFilter(tenant_id=1), "ws", direct=writer(8))
        hub.publish([_event(1)])
        assert sorted(n for n, _ in written) == [0, 1, 2]
        assert len({id(frame) for _, frame in written}) == 1  # one frame object for all
        frame = written[0][1]
        # FIN + text opcode, unmasked, 16-bit length (payload of 126..65535 bytes).
        assert frame[:2] == b"\x81\x7e" and int.from_bytes(frame[2:4], "big") == len(frame) - 4
        assert b'"id":1' in frame
        # Back-pressure (the writer refuses) and a connection still greeting or replaying:
        # the message waits in that connection's own queue, in order.
        assert '"id":1' in (await paused.next_frames(0.1))[0]
        assert '"id":1' in (await greeting.next_frames(0.1))[0]
        assert all(not sub.frames for sub in idle)

    asyncio.run(scenario())


def test_relay_finds_a_lower_id_committed_after_a_higher_one(api: ApiHarness) -> None:
    """PostgreSQL hands out ids at insert, not commit: the relay re-reads gaps."""
    if engine_of(api.platform).dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: ids commit in order")
    tenant = api.tenant("relay", tier="enterprise")
    name = f"relay_{uuid.uuid4().hex[:6]}"
    with api.platform.database.write() as uow:
        stored, _ = add_strategy(uow, tenant, name, rule_text=ALWAYS)
    (symbol,) = _symbols(1)
    subscribers = list(api.platform.bar_subscribers)
    api.platform.bar_subscribers.clear()
    try:
        write_bars_for(api.platform, [symbol], [0])
    finally:
        api.platform.bar_subscribers.extend(subscribers)
    with engine_of(api.platform).connect() as conn:
        inst = conn.execute(sa.select(instruments.c.id).where(
            instruments.c.symbol == symbol)).scalar_one()
    hub = StreamHub(api.platform, framings=STREAM_FRAMINGS)
    hub.poll_once()  # sets the watermark

    def row(d: int) -> NewSignal:
        from datetime import UTC, datetime

        return NewSignal(strategy_version_id=stored.version_id, instrument_id=inst,
                         symbol=symbol, timeframe="1d", bar_ts=datetime(2020, 1, d, tzinfo=UTC),
                         side="long", score=1.0, price=1.0, values={})

    slow_conn = engine_of(api.platform).connect()
    slow_tx = slow_conn.begin()
    (lower, ) = [s.id for s in SqlSignalRepository(slow_conn).insert_new([row(1)])]
    with engine_of(api.platform).begin() as conn:
        (higher, ) = [s.id for s in SqlSignalRepository(conn).insert_new([row(2)])]
    assert lower < higher
    assert [e.id for e in hub.poll_once()] == [higher]
    slow_tx.commit()
    slow_conn.close()
    assert [e.id for e in hub.poll_once() if e.id == lower] == [lower]
