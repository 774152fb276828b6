"""The live stream end to end: a real uvicorn server, WebSocket and SSE clients, new bars.

Bars are written in this process (the server shares the platform: the direct path) or by the
CLI in another process (the relay path: polling, and LISTEN/NOTIFY on PostgreSQL). Each test
uses its own tenants, strategies and symbols, so the module shares one database and server.
"""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from websockets.exceptions import InvalidStatus

from signalfactory.adapters.storage.tables import signals, strategies, strategy_versions
from signalfactory.services.strategies.catalog import add_strategy
from tests.api_harness import BACKENDS, ApiHarness, module_platform
from tests.helpers import engine_of
from tests.live_stream_client import (
    ALWAYS,
    ServerThread,
    SseClient,
    WsClient,
    write_bars_for,
)

shared_platform = pytest.fixture(scope="module", params=BACKENDS)(module_platform)


@pytest.fixture(scope="module")
def stack(shared_platform: Any) -> Iterator[tuple[ApiHarness, ServerThread]]:
    api = ApiHarness(shared_platform)
    with ServerThread(api.app) as server:
        yield api, server


def _symbols(n: int = 1) -> list[str]:
    tag = uuid.uuid4().hex[:6].upper()
    return [f"L{tag}{i}" for i in range(n)]


def _tenant_with_strategy(api: ApiHarness, tier: str = "premium") -> tuple[int, str, str]:
    tenant = api.tenant("live", tier=tier)
    name = f"always_{uuid.uuid4().hex[:8]}"
    with api.platform.database.write() as uow:
        add_strategy(uow, tenant, name, rule_text=ALWAYS)
    return tenant, api.key(tenant, "trader"), name


def _stored_ids(api: ApiHarness, strategy: str, after: int = 0) -> list[int]:
    with engine_of(api.platform).connect() as conn:
        return [r[0] for r in conn.execute(
            sa.select(signals.c.id)
            .join(strategy_versions, strategy_versions.c.id == signals.c.strategy_version_id)
            .join(strategies, strategies.c.id == strategy_versions.c.strategy_id)
            .where(strategies.c.name == strategy, signals.c.id > after)
            .order_by(signals.c.id))]


def test_ws_and_sse_clients_receive_new_signals(stack: tuple[ApiHarness, ServerThread]) -> None:
    api, server = stack
    _tenant, key, name = _tenant_with_strategy(api)
    (symbol,) = _symbols()
    write_bars_for(api.platform, [symbol], range(30))  # history: its signals are not "new"
    ws = WsClient(server.ws_url(f"/api/v1/stream/ws?strategies={name}"), key)
    sse = SseClient(f"{server.base}/api/v1/stream/sse?strategies={name}", key)
    try:
        assert sse.response.status_code == 200
        assert sse.response.headers["content-type"].startswith("text/event-stream")
        assert ws.wait_live() == [] and sse.wait_live() == []
        prepared = _metric(server, 'signalfactory_stream_messages_total{path="prepared"}')
        write_bars_for(api.platform, [symbol], [30])
        (got_ws,) = ws.signals(1)
        (got_sse,) = sse.signals(1)
        assert got_ws["symbol"] == symbol and got_ws["strategy"] == name
        assert got_ws["bar_ts"].startswith("2020-01-31")
        assert got_sse["_sse_id"] == str(got_ws["id"])
        assert {k: v for k, v in got_sse.items() if k != "_sse_id"} == got_ws
        # The WebSocket message went out as the one prepared frame, not through its queue.
        assert _metric(server, 'signalfactory_stream_messages_total{path="prepared"}') \
            >= prepared + 1
        # The event is the stored signal, as GET /signals shows it.
        page = httpx.get(f"{server.base}/api/v1/signals", params={"strategy": name,
                                                                   "since": "2020-01-31"},
                         headers=api.auth(key)).json()
        assert [item["id"] for item in page["items"]] == [got_ws["id"]]
    finally:
        ws.close()
        sse.close()


def test_subscription_filters_symbols_and_score(stack: tuple[ApiHarness, ServerThread]) -> None:
    api, server = stack
    _tenant, key, name = _tenant_with_strategy(api)
    wanted, other = _symbols(2)
    write_bars_for(api.platform, [wanted, other], range(30))
    created = httpx.post(f"{server.base}/api/v1/subscriptions", headers=api.auth(key),
                         json={"name": "only one", "strategies": [name], "symbols": [wanted]})
    assert created.status_code == 201, created.text
    sub_id = created.json()["id"]
    high = httpx.post(f"{server.base}/api/v1/subscriptions", headers=api.auth(key),
                      json={"name": "high score", "strategies": [name], "min_score": 1.5})
    assert high.status_code == 201, high.text
    # This rule scores 1.0: a minimum of 1.0 lets its signals through, 1.5 does not.
    at_score = WsClient(server.ws_url(f"/api/v1/stream/ws?strategies={name}&min_score=1"),
                        key)
    by_sub = WsClient(server.ws_url(f"/api/v1/stream/ws?subscription={sub_id}"), key)
    by_score = WsClient(server.ws_url(f"/api/v1/stream/ws?subscription={high.json()['id']}"),
                        key)
    everything = WsClient(server.ws_url(f"/api/v1/stream/ws?strategies={name}"), key)
    try:
        for client in (by_sub, by_score, everything, at_score):
            client.wait_live()
        # The other symbol's bar first: were the filter ignored, it would arrive first.
        write_bars_for(api.platform, [other], [30])
        write_bars_for(api.platform, [wanted], [30])
        assert [s["symbol"] for s in everything.signals(2)] == [other, wanted]
        (only,) = by_sub.signals(1)
        assert only["symbol"] == wanted
        assert [s["symbol"] for s in at_score.signals(2)] == [other, wanted]
        time.sleep(0.3)  # sent in the same fan-out as the others, had it matched
        assert by_score.messages.empty()
    finally:
        for client in (by_sub, by_score, everything, at_score):
            client.close()


def test_other_tenants_subscriptions_and_signals_stay_invisible(
        stack: tuple[ApiHarness, ServerThread]) -> None:
    api, server = stack
    _victim, victim_key, victim_strategy = _tenant_with_strategy(api)
    _attacker, attacker_key, attacker_strategy = _tenant_with_strategy(api)
    victim_sub = httpx.post(f"{server.base}/api/v1/subscriptions",
                            headers=api.auth(victim_key),
                            json={"name": "mine", "strategies": [victim_strategy]}).json()["id"]
    with pytest.raises(InvalidStatus) as refused:
        WsClient(server.ws_url(f"/api/v1/stream/ws?subscription={victim_sub}"), attacker_key)
    assert refused.value.response.status_code == 404
    sse = SseClient(f"{server.base}/api/v1/stream/sse?subscription={victim_sub}", attacker_key)
    assert sse.response.status_code == 404
    sse.close()
    # Naming the victim's strategy is refused as unknown, like any name the caller cannot see.
    with pytest.raises(InvalidStatus) as unknown:
        WsClient(server.ws_url(f"/api/v1/stream/ws?strategies={victim_strategy}"),
                 attacker_key)
    assert unknown.value.response.status_code == 404
    # An unfiltered stream carries the caller's own signals and never the victim's.
    (symbol,) = _symbols()
    write_bars_for(api.platform, [symbol], range(30))
    unfiltered = WsClient(server.ws_url("/api/v1/stream/ws"), attacker_key)
    try:
        unfiltered.wait_live()
        write_bars_for(api.platform, [symbol], [30])
        got = unfiltered.signals(1)
        assert {s["strategy"] for s in got} == {attacker_strategy}
        assert len(_stored_ids(api, victim_strategy)) == 31  # the victim's exist, unseen
    finally:
        unfiltered.close()


def test_reconnect_with_last_event_id_gets_exactly_what_was_missed(
        stack: tuple[ApiHarness, ServerThread]) -> None:
    api, server = stack
    _tenant, key, name = _tenant_with_strategy(api)
    a, b = _symbols(2)
    write_bars_for(api.platform, [a, b], range(30))
    ws = WsClient(server.ws_url(f"/api/v1/stream/ws?strategies={name}"), key)
    ws.wait_live()
    write_bars_for(api.platform, [a, b], [30])
    last = max(s["id"] for s in ws.signals(2))
    ws.close()
    write_bars_for(api.platform, [a], [31])  # missed while away
    write_bars_for(api.platform, [a, b], [32])
    missed = _stored_ids(api, name, after=last)
    assert len(missed) == 3

    back = WsClient(server.ws_url(f"/api/v1/stream/ws?strategies={name}&last_event_id={last}"),
                    key)
    sse = SseClient(f"{server.base}/api/v1/stream/sse?strategies={name}", key,
                    **{"Last-Event-ID": str(last)})
    try:
        assert [s["id"] for s in back.wait_live()] == missed
        assert [int(s["_sse_id"]) for s in sse.wait_live()] == missed
        write_bars_for(api.platform, [b], [33])
        (new,) = back.signals(1)
        (new_sse,) = sse.signals(1)
        assert new["id"] == new_sse["id"] == _stored_ids(api, name, after=missed[-1])[0]
    finally:
        back.close()
        sse.close()


def test_reconnects_during_writes_lose_and_repeat_nothing(
        stack: tuple[ApiHarness, ServerThread]) -> None:
    """The seam between replay and live, hit while bars keep arriving."""
    api, server = stack
    _tenant, key, name = _tenant_with_strategy(api)
    (symbol,) = _symbols()
    write_bars_for(api.platform, [symbol], range(30))
    baseline = _stored_ids(api, name)[-1]
    # The key's first use records it (a write); done here, not racing the writer below.
    WsClient(server.ws_url(f"/api/v1/stream/ws?strategies={name}"), key).close()
    done = threading.Event()
    failed: list[BaseException] = []

    def writer() -> None:
        try:
            for d in range(30, 70):
                write_bars_for(api.platform, [symbol], [d])
        except BaseException as exc:
            failed.append(exc)
        done.set()

    received: list[int] = []
    connections = 0
    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for connections in range(1, 200):  # noqa: B007 - counted below
            assert not failed, failed
            after = received[-1] if received else baseline
            client = WsClient(server.ws_url(
                f"/api/v1/stream/ws?strategies={name}&last_event_id={after}"), key)
            received.extend(s["id"] for s in client.wait_live())
            if done.is_set() and received and received[-1] == _stored_ids(api, name)[-1]:
                client.close()
                break
            with contextlib.suppress(queue.Empty):  # a live one, then drop the connection
                received.extend(s["id"] for s in client.signals(1, timeout=2))
            client.close()
    finally:
        thread.join(60)
    assert not failed, failed
    assert connections >= 3  # the seam was crossed several times
    assert received == _stored_ids(api, name, after=baseline)
    assert len(received) == 40


def test_stream_refuses_missing_and_bad_keys(stack: tuple[ApiHarness, ServerThread]) -> None:
    api, server = stack
    for headers in ({}, {"Authorization": "Bearer sf_live_nonsense"}):
        with pytest.raises(InvalidStatus) as refused:
            WsClient(server.ws_url("/api/v1/stream/ws"), None, **headers)
        assert refused.value.response.status_code == 401
        assert b"unauthorized" in refused.value.response.body
        sse = httpx.get(f"{server.base}/api/v1/stream/sse", headers=headers)
        assert sse.status_code == 401
        assert sse.headers["content-type"].startswith("application/problem+json")
    # A browser passes the key in the query string instead.
    _tenant, key, name = _tenant_with_strategy(api)
    by_query = WsClient(server.ws_url(f"/api/v1/stream/ws?strategies={name}&api_key={key}"))
    try:
        assert by_query.next()["type"] == "subscribed"
    finally:
        by_query.close()


def _metric(server: ServerThread, name: str) -> float:
    text = httpx.get(f"{server.base}/metrics").text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def _latency_count(server: ServerThread) -> float:
    return _metric(server, "signalfactory_signal_latency_seconds_count")


def test_signal_latency_is_observed(stack: tuple[ApiHarness, ServerThread]) -> None:
    api, server = stack
    _tenant, key, name = _tenant_with_strategy(api)
    (symbol,) = _symbols()
    write_bars_for(api.platform, [symbol], range(30))
    ws = WsClient(server.ws_url(f"/api/v1/stream/ws?strategies={name}"), key)
    try:
        ws.wait_live()
        before = _latency_count(server)
        write_bars_for(api.platform, [symbol], [30, 31])
        assert len(ws.signals(2)) == 2
        assert _latency_count(server) >= before + 2
    finally:
        ws.close()


def test_bars_ingested_by_another_process_reach_the_stream(
        stack: tuple[ApiHarness, ServerThread], tmp_path: Path) -> None:
    api, server = stack
    _tenant, key, name = _tenant_with_strategy(api)
    (symbol,) = _symbols()
    write_bars_for(api.platform, [symbol], range(30))
    csv = tmp_path / "new.csv"
    csv.write_text("timestamp,symbol,open,high,low,close,volume\n"
                   f"2020-01-31,{symbol},100,101,99,100,1000\n")
    settings = api.platform.settings
    env = {**os.environ, "SIGNALFACTORY_HOME": str(settings.home),
           "SIGNALFACTORY_DATABASE_URL": settings.resolved_database_url,
           "SIGNALFACTORY_BAR_STORE": "columnar", "SIGNALFACTORY_LOG_LEVEL": "WARNING"}
    ws = WsClient(server.ws_url(f"/api/v1/stream/ws?strategies={name}"), key)
    try:
        ws.wait_live()
        done = subprocess.run([sys.executable, "-m", "signalfactory", "ingest", str(csv),
                               "--timeframe", "1d"], env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        (got,) = ws.signals(1, timeout=15)
        assert got["symbol"] == symbol and got["bar_ts"].startswith("2020-01-31")
    finally:
        ws.close()
