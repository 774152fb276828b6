"""The hot-read cache: in memory and on the real Redis (127.0.0.1:6379; skipped with a reason
when it is down, failed under CI=true), behind the API and on its own.

What matters: a write makes the next read fresh (on both backends, across processes with
Redis), a read between writes does not touch the database, and entries are kept per tenant
where the data is a tenant's.
"""

from __future__ import annotations

import dataclasses
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from signalfactory.adapters.cache import HotCache, MemoryCache, RedisCache
from signalfactory.adapters.storage.tables import instruments
from signalfactory.domain.instruments import InstrumentSpec
from signalfactory.domain.timeframes import Timeframe
from signalfactory.services.marketdata.bars import SymbolBars, write_bars
from signalfactory.services.marketdata.sample import store_sample
from signalfactory.services.platform import Platform
from tests.api_harness import BACKENDS, ApiHarness, module_platform
from tests.helpers import engine_of

REDIS_URL = os.environ.get("SIGNALFACTORY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RULE = "entry: close > sma(close, 3)\nexit: close < sma(close, 3)"

shared_platform = pytest.fixture(scope="module", params=BACKENDS)(module_platform)


def _backend(kind: str) -> Any:
    if kind == "memory":
        return MemoryCache()
    try:
        backend = RedisCache(REDIS_URL, timeout=2)
        backend.ping()
    except Exception as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"Redis at {REDIS_URL} is unreachable ({exc}); CI=true requires it")
        pytest.skip(f"Redis at {REDIS_URL} is unreachable ({exc})")
    return backend


@pytest.fixture(params=["memory", "redis"])
def make_cache(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Caches on one store under one fresh prefix: two of them act like two processes."""
    backend = _backend(request.param)
    prefix = f"sftest:{uuid.uuid4().hex[:8]}:"
    made: list[HotCache] = []

    def make(ttl: float = 60.0) -> HotCache:
        # Redis: each "process" has its own client; memory: one process shares the map.
        store = RedisCache(REDIS_URL) if request.param == "redis" else backend
        made.append(HotCache(store, ttl=ttl, prefix=prefix))
        return made[-1]

    yield make
    if made:
        made[0].clear()


class Loads:
    """A loader that counts how often the 'database' was read."""

    def __init__(self, value: str = "v1") -> None:
        self.value, self.calls = value, 0

    def __call__(self) -> str:
        self.calls += 1
        return self.value


def test_hits_until_a_write_bumps_the_generation(make_cache: Any) -> None:
    cache, other_process = make_cache(), make_cache()
    load = Loads('{"n": 1}')
    assert cache.get_or_load("instruments", ("list",), load) == '{"n": 1}'
    assert cache.get_or_load("instruments", ("list",), load) == '{"n": 1}'
    assert load.calls == 1
    load.value = '{"n": 2}'
    cache.invalidate("strategies")  # another namespace: still a hit
    assert cache.get_or_load("instruments", ("list",), load) == '{"n": 1}'
    other_process.invalidate("instruments")
    assert cache.get_or_load("instruments", ("list",), load) == '{"n": 2}'
    assert load.calls == 2


def test_entries_are_per_tenant_and_expire(make_cache: Any) -> None:
    cache = make_cache(ttl=0.3)
    assert cache.get_or_load("strategies", ("list",), Loads("a"), tenant_id=1) == "a"
    assert cache.get_or_load("strategies", ("list",), Loads("b"), tenant_id=2) == "b"
    assert cache.get_or_load("strategies", ("list",), Loads("x"), tenant_id=1) == "a"
    assert cache.entry_key("strategies", ("list",), 1) != cache.entry_key("strategies",
                                                                          ("list",), 2)
    time.sleep(0.4)
    assert cache.get_or_load("strategies", ("list",), Loads("a2"), tenant_id=1) == "a2"


def test_entries_filled_together_expire_spread_within_the_ttl() -> None:
    backend = MemoryCache()
    cache = HotCache(backend, ttl=10.0)
    before = time.monotonic()
    for page in range(50):
        cache.get_or_load("signals", (page,), Loads(str(page)), tenant_id=1)
    after = time.monotonic()
    lifetimes = [expires - before for key, (expires, _value) in backend._items.items()
                 if ":signals:" in key]
    assert len(lifetimes) == 50
    assert all(8.0 <= t <= 10.0 + (after - before) for t in lifetimes), "within the TTL"
    assert max(lifetimes) - min(lifetimes) > 0.5, "not all in one instant"


def test_delete_by_pattern_drops_one_tenants_entries(make_cache: Any) -> None:
    cache = make_cache()
    for tenant in (1, 2):
        cache.get_or_load("strategies", ("list",), Loads(f"t{tenant}"), tenant_id=tenant)
    assert cache.delete_pattern("strategies:t1:*") == 1
    assert cache.get_or_load("strategies", ("list",), Loads("new"), tenant_id=1) == "new"
    assert cache.get_or_load("strategies", ("list",), Loads("new"), tenant_id=2) == "t2"


def test_a_failing_load_stores_nothing(make_cache: Any) -> None:
    cache = make_cache()

    def missing() -> str:
        raise LookupError("no such scan")

    with pytest.raises(LookupError):
        cache.get_or_load("scans", ("one", 7), missing, tenant_id=1)
    assert cache.get_or_load("scans", ("one", 7), Loads("now there"), tenant_id=1) == \
        "now there"


def test_redis_down_serves_from_the_database_and_reports_degraded() -> None:
    cache = HotCache(RedisCache("redis://127.0.0.1:1/0", timeout=0.2), ttl=60,
                     prefix=f"sftest:{uuid.uuid4().hex[:8]}:")
    load = Loads("fresh")
    assert cache.get_or_load("instruments", ("list",), load) == "fresh"
    cache.invalidate("instruments")  # must not raise either
    assert cache.get_or_load("instruments", ("list",), load) == "fresh"
    assert load.calls == 2
    assert cache.health().startswith("degraded: cache unreachable")


def test_memory_cache_is_bounded() -> None:
    memory = MemoryCache(max_entries=3)
    for i in range(5):
        memory.set(f"k{i}", str(i), ttl=60)
    assert memory.get_many(["k0", "k1", "k2", "k3", "k4"]) == [None, None, "2", "3", "4"]


# -- behind the API ---------------------------------------------------------------------

@pytest.fixture
def api(shared_platform: Platform, make_cache: Any) -> Iterator[ApiHarness]:
    if id(shared_platform) not in _SAMPLED:
        store_sample(shared_platform, symbols=3, bars=60, seed=2)
        _SAMPLED.add(id(shared_platform))
    with ApiHarness(dataclasses.replace(shared_platform, cache=make_cache())) as harness:
        yield harness


_SAMPLED: set[int] = set()  # shared platforms that hold the sample already


def _symbols(api: ApiHarness, key: str) -> set[str]:
    response = api.client.get("/api/v1/instruments", headers=api.auth(key))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["count"] == len(body["items"])
    return {i["symbol"] for i in body["items"]}


def _bars(symbol: str) -> SymbolBars:
    ts = np.array([1_700_000_000_000_000_000], dtype=np.int64)
    one = np.ones(1)
    return SymbolBars(InstrumentSpec(symbol, tags={"universe": "cache-test"}), ts, one, one,
                      one, one, one)


def test_instrument_list_is_cached_until_bars_add_an_instrument(api: ApiHarness) -> None:
    key = api.key(api.tenant("cache"), "viewer")
    before = _symbols(api, key)
    # A row written behind the platform's back is not seen: the list comes from the cache.
    sneaky = f"SNEAKY{uuid.uuid4().hex[:6]}"
    with engine_of(api.platform).begin() as conn:
        conn.execute(instruments.insert().values(symbol=sneaky, tags={}))
    assert _symbols(api, key) == before
    # A write through the platform commits, then invalidates: the next read is fresh.
    added = f"NEW{uuid.uuid4().hex[:6]}"
    write_bars(api.platform, Timeframe.parse("1d"), [_bars(added)], source="test")
    assert _symbols(api, key) == before | {sneaky, added}
    # Bars for instruments that exist already change no list: the entry stays.
    hits = _hits("instruments")
    write_bars(api.platform, Timeframe.parse("1d"), [_bars(added)], source="test")
    _symbols(api, key)
    assert _hits("instruments") == hits + 1


def _hits(namespace: str) -> float:
    from signalfactory.observability.metrics import CACHE_REQUESTS

    return float(CACHE_REQUESTS.labels(namespace, "hit")._value.get())


# Only Redis: an in-memory cache is per process (the TTL bounds other processes' writes).
@pytest.mark.parametrize("make_cache", ["redis"], indirect=True)
def test_a_write_in_another_process_invalidates_a_shared_cache(
        api: ApiHarness, make_cache: Any) -> None:
    assert isinstance(api.platform.cache, HotCache)
    assert isinstance(api.platform.cache.backend, RedisCache)
    key = api.key(api.tenant("cache"), "viewer")
    before = _symbols(api, key)
    # Another process (a collector, a CLI ingest) with its own Redis client writes bars.
    other = dataclasses.replace(api.platform, cache=make_cache(), bar_subscribers=[],
                                signal_publishers=[])
    added = f"OTHER{uuid.uuid4().hex[:6]}"
    write_bars(other, Timeframe.parse("1d"), [_bars(added)], source="test")
    assert _symbols(api, key) == before | {added}


def test_strategy_reads_are_fresh_after_a_write_and_kept_per_tenant(api: ApiHarness) -> None:
    alice = api.key(api.tenant("alice"), "trader")
    bob = api.key(api.tenant("bob"), "trader")

    def names(key: str) -> set[str]:
        response = api.client.get("/api/v1/strategies", headers=api.auth(key))
        assert response.status_code == 200, response.text
        return {s["name"] for s in response.json()["items"]}

    alice_before, bob_before = names(alice), names(bob)
    assert api.client.get("/api/v1/strategies/mine", headers=api.auth(alice)).status_code == 404
    created = api.client.post("/api/v1/strategies", headers=api.auth(alice),
                              json={"name": "mine", "rule": RULE})
    assert created.status_code == 201, created.text
    assert names(alice) == alice_before | {"mine"}
    one = api.client.get("/api/v1/strategies/mine", headers=api.auth(alice))
    assert one.status_code == 200 and one.json()["version"] == 1
    assert names(bob) == bob_before, "another tenant's strategy must never be served"
    assert api.client.get("/api/v1/strategies/mine", headers=api.auth(bob)).status_code == 404

    # A new version is visible at once in both the list and the single read.
    again = api.client.post("/api/v1/strategies", headers=api.auth(alice),
                            json={"name": "mine", "rule": RULE.replace("3", "4")})
    assert again.status_code == 201, again.text
    one = api.client.get("/api/v1/strategies/mine", headers=api.auth(alice))
    assert one.json()["version"] == 2
    listed = api.client.get("/api/v1/strategies", headers=api.auth(alice)).json()["items"]
    assert next(s for s in listed if s["name"] == "mine")["versions"] == 2


def test_a_scan_is_cached_per_tenant(api: ApiHarness) -> None:
    alice = api.key(api.tenant("alice", tier="premium"), "trader")
    bob = api.key(api.tenant("bob"), "trader")
    ran = api.client.post("/api/v1/scans", headers=api.auth(alice), json={"rule": RULE})
    assert ran.status_code == 201, ran.text
    url = f"/api/v1/scans/{ran.json()['id']}"
    hits = _hits("scans")
    for _ in range(2):
        response = api.client.get(url, headers=api.auth(alice))
        assert response.status_code == 200 and response.json() == ran.json()
    assert _hits("scans") == hits + 1
    assert api.client.get(url, headers=api.auth(bob)).status_code == 404


def _strategy_signal_ids(api: ApiHarness, label: str) -> tuple[int, str, Any]:
    """A tenant with a strategy of its own; returns (tenant, name, a reader of the ids on the
    strategy's signal page through the API)."""
    tenant = api.tenant(label, tier="premium")
    key = api.key(tenant, "trader")
    name = f"s_{uuid.uuid4().hex[:8]}"
    assert api.client.post("/api/v1/strategies", headers=api.auth(key),
                           json={"name": name, "rule": RULE}).status_code == 201

    def ids() -> list[int]:
        response = api.client.get(f"/api/v1/signals?strategy={name}&limit=1000",
                                  headers=api.auth(key))
        assert response.status_code == 200, response.text
        return [s["id"] for s in response.json()["items"]]

    return tenant, name, ids


def test_signal_pages_are_cached_until_a_signal_write(api: ApiHarness) -> None:
    from datetime import UTC, datetime

    from signalfactory.adapters.storage.tables import signals
    from signalfactory.ops.retention import apply_retention
    from signalfactory.services.signals.evaluation import run_all

    tenant, name, ids = _strategy_signal_ids(api, "signals-cache")
    assert ids() == []
    (report,) = run_all(api.platform, tenant, [name])
    assert report.signals_written > 0
    written = ids()
    assert len(written) == report.signals_written, "an evaluation's write is seen at once"
    # The stream relay also learns of these signals (PostgreSQL wakes it with NOTIFY) and
    # invalidates the pages once more; let it finish before counting hits.
    hub = api.app.state.stream_hub
    deadline = time.monotonic() + 5
    while (hub.watermark or 0) < max(written):
        assert time.monotonic() < deadline, "the stream relay never read the new signals"
        time.sleep(0.02)
    time.sleep(0.2)
    assert ids() == written
    # Rows changed behind the platform's back are not seen: the page is a cache hit.
    hits = _hits("signals")
    with engine_of(api.platform).begin() as conn:
        conn.execute(signals.update().where(signals.c.id == written[0])
                     .values(bar_ts=datetime(2001, 1, 1, tzinfo=UTC)))
    assert ids() == written and _hits("signals") == hits + 1
    # A retention prune deletes that (now ancient) signal and invalidates: fresh again.
    keep_days = (datetime.now(UTC) - datetime(2002, 1, 1, tzinfo=UTC)).days
    apply_retention(api.platform, config={"signals": {"*": keep_days}})
    assert ids() == written[1:]


def test_signals_another_process_stores_reach_cached_pages_within_a_poll(
        api: ApiHarness, make_cache: Any) -> None:
    from signalfactory.services.signals.evaluation import run_all

    tenant, name, ids = _strategy_signal_ids(api, "signals-relay")

    def count() -> int:
        return len(ids())

    assert count() == 0
    # Another process (a worker) with its own cache, which no bump of it reaches here.
    other = dataclasses.replace(api.platform, cache=HotCache(MemoryCache()),
                                bar_subscribers=[], signal_publishers=[])
    (report,) = run_all(other, tenant, [name])
    assert report.signals_written > 0
    deadline = time.monotonic() + 5  # the TTL is 10 s: fresh before it means the relay did it
    while count() != report.signals_written:
        assert time.monotonic() < deadline, "a cached page outlived the stream relay's poll"
        time.sleep(0.05)


def test_cache_ttl_zero_turns_it_off() -> None:
    from signalfactory.adapters.cache import build_cache

    cache = build_cache(None, ttl=0)
    load = Loads()
    cache.get_or_load("instruments", ("list",), load)
    cache.get_or_load("instruments", ("list",), load)
    assert load.calls == 2


def test_readyz_reports_an_unreachable_redis_as_degraded(tmp_path: Any) -> None:
    from signalfactory.bootstrap import build_platform
    from signalfactory.settings import Settings

    platform = build_platform(Settings(home=tmp_path, database_url=f"sqlite:///{tmp_path}/a.db",
                                       redis_url="redis://127.0.0.1:1/0"), migrate_db=True,
                              cache=HotCache(RedisCache("redis://127.0.0.1:1/0", timeout=0.2)))
    try:
        with ApiHarness(platform) as api:
            ready = api.client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["cache"].startswith("degraded: cache unreachable")
    finally:
        platform.close()
