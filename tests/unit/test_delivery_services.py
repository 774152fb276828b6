"""The outbox, the dispatcher and DLQ replay against the in-memory ports, with a scripted
channel: what each answer leads to, subscriber controls, the breaker."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from signalfactory.domain.delivery import DEAD, DELIVERED, PENDING, SUPPRESSED, SendResult
from signalfactory.domain.errors import BadInputError, NotFoundError
from signalfactory.domain.message_ids import is_message_id, new_message_id
from signalfactory.services.delivery.dispatch import deliver_due
from signalfactory.services.delivery.replay import replay
from signalfactory.services.platform import Platform
from signalfactory.testing import FixedClock, InMemoryDatabase, memory_platform
from tests.delivery_support import (
    SECRET,
    ScriptedChannel,
    insert_signals,
    new_signals,
    seed_instruments,
    seed_route,
    seed_strategy,
    with_delivery,
)

START = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
def channel() -> ScriptedChannel:
    return ScriptedChannel()


@pytest.fixture
def platform(clock: FixedClock, channel: ScriptedChannel) -> Iterator[Platform]:
    p = with_delivery(memory_platform(clock=clock), {"webhook": channel})
    yield p
    p.close()


def _rows(platform: Platform) -> dict[str, Any]:
    with platform.database.read() as uow:
        return {d.id: d for d in uow.deliveries.find(None, limit=100_000)}


def _state(platform: Platform) -> Any:
    database = platform.database
    if not isinstance(database, InMemoryDatabase):
        raise TypeError("in-memory tests")
    return copy.deepcopy(database.state._stores)


def _one_signal(platform: Platform, **route: Any) -> tuple[int, str]:
    stored = seed_strategy(platform)
    instruments = seed_instruments(platform, ["AAA", "BBB"])
    endpoint_id, _sub = seed_route(platform, "hook", "https://example.com/hook", **route)
    inserted = insert_signals(platform, stored, new_signals(stored, instruments, 1))
    (delivery_id,) = inserted.delivery_ids
    return endpoint_id, delivery_id


def test_message_ids_sort_by_creation_time_and_are_unique() -> None:
    ids = [new_message_id(now_ms=1_700_000_000_000 + i) for i in range(1000)]
    assert ids == sorted(ids) and len(set(ids)) == 1000
    assert all(is_message_id(i) for i in ids)
    same_ms = {new_message_id(now_ms=5) for _ in range(1000)}
    assert len(same_ms) == 1000
    assert not is_message_id("msg_short") and not is_message_id("job_" + ids[0][4:])


def test_matching_subscriptions_get_rows_with_the_api_shape(platform: Platform) -> None:
    stored = seed_strategy(platform)
    instruments = seed_instruments(platform, ["AAA", "BBB"])
    seed_route(platform, "all", "https://a.example/h")
    seed_route(platform, "bbb-only", "https://b.example/h", symbols=["BBB"])
    seed_route(platform, "high-score", "https://c.example/h", min_score=5.0)
    seed_route(platform, "other-strategy", "https://d.example/h", strategies=["sma_cross"])
    seed_route(platform, "other-tenant", "https://e.example/h", tenant_id=2)
    result = insert_signals(platform, stored, new_signals(stored, instruments, 2))
    rows = _rows(platform)
    assert set(rows) == set(result.delivery_ids)
    routed = sorted((r.endpoint_id, r.payload["symbol"]) for r in rows.values())
    # endpoints 1 (all) and 2 (BBB only); 3 wants a score >= 5, 4 another strategy, 5 is
    # another tenant's (this tenant's own strategy is invisible to it)
    assert routed == [(1, "AAA"), (1, "BBB"), (2, "BBB")]
    payload = next(r.payload for r in rows.values() if r.endpoint_id == 2)
    assert payload["type"] == "signal.created"
    assert set(payload) == {"type", "id", "bar_ts", "symbol", "side", "strategy",
                            "strategy_version", "code_hash", "timeframe", "score", "price",
                            "values", "created_at"}
    assert payload["strategy"] == "always" and payload["price"] == 101.0
    # the same signals stored again: nothing new, no new rows
    again = insert_signals(platform, stored, new_signals(stored, instruments, 2))
    assert again.delivery_ids == [] and len(_rows(platform)) == 3


def test_a_failing_signal_transaction_leaves_neither_signal_nor_row(
        platform: Platform) -> None:
    from signalfactory.services.signals.store import store_signals

    stored = seed_strategy(platform)
    instruments = seed_instruments(platform, ["AAA"])
    seed_route(platform, "hook", "https://example.com/hook")
    before = _state(platform)
    with pytest.raises(RuntimeError), platform.database.write() as uow:
        store_signals(platform, uow, [(stored, s) for s in new_signals(stored, instruments, 3)])
        assert len(uow.deliveries.find(None)) == 3
        raise RuntimeError("the rest of the transaction failed")
    assert _state(platform) == before


def test_delivered_with_the_opened_target_secret_and_canonical_payload(
        platform: Platform, channel: ScriptedChannel) -> None:
    _ep, delivery_id = _one_signal(platform)
    report = deliver_due(platform, "w1", limit=10)
    assert report.claimed == 1 and report.delivered == 1
    (sent,) = channel.sent
    assert sent["target"] == "https://example.com/hook" and sent["secrets"] == [SECRET]
    assert sent["id"] == delivery_id and sent["timestamp"] == int(START.timestamp())
    assert sent["payload"]["type"] == "signal.created" and "AAA" in sent["subject"]
    row = _rows(platform)[delivery_id]
    assert row.status == DELIVERED and row.delivered_at == START and row.attempts == 1
    with platform.database.read() as uow:
        (attempt,) = uow.deliveries.attempts(delivery_id)
    assert attempt.status_code == 200 and attempt.error is None
    assert deliver_due(platform, "w1", limit=10).claimed == 0


def test_500_follows_the_retry_schedule_then_dead_letters(
        platform: Platform, channel: ScriptedChannel, clock: FixedClock) -> None:
    channel.answer = lambda _t, _m: SendResult(ok=False, status_code=500,
                                               response_excerpt="x" * 2000)
    _ep, delivery_id = _one_signal(platform)
    schedule = [5, 300, 1800, 7200, 18000, 36000, 36000]
    for n, delay in enumerate(schedule, start=1):
        report = deliver_due(platform, "w1", limit=10)
        assert report.retried == 1, n
        row = _rows(platform)[delivery_id]
        assert row.status == PENDING and row.attempts == n
        wait = (row.next_attempt_at - clock.now()).total_seconds()
        assert delay * 0.9 <= wait <= delay * 1.1  # jitter of +-10 %
        assert deliver_due(platform, "w1", limit=10).claimed == 0  # not due yet
        clock.advance(wait)
    report = deliver_due(platform, "w1", limit=10)
    assert report.dead == 1
    row = _rows(platform)[delivery_id]
    assert row.status == DEAD and row.attempts == 8
    with platform.database.read() as uow:
        attempts = uow.deliveries.attempts(delivery_id)
    assert [a.attempt for a in attempts] == list(range(1, 9))
    assert all(a.status_code == 500 and len(a.response_excerpt or "") == 500
               for a in attempts)


def test_retry_after_is_honoured(platform: Platform, channel: ScriptedChannel,
                                 clock: FixedClock) -> None:
    channel.answer = lambda _t, _m: SendResult(ok=False, status_code=429, retry_after_s=120)
    _ep, delivery_id = _one_signal(platform)
    deliver_due(platform, "w1", limit=10)
    row = _rows(platform)[delivery_id]
    assert row.status == PENDING
    assert (row.next_attempt_at - clock.now()).total_seconds() == pytest.approx(120)


def test_a_timeout_is_retried(platform: Platform, channel: ScriptedChannel) -> None:
    channel.answer = lambda _t, _m: SendResult(ok=False, error="timed out after 10 s")
    _ep, delivery_id = _one_signal(platform)
    assert deliver_due(platform, "w1", limit=10).retried == 1
    row = _rows(platform)[delivery_id]
    assert row.status == PENDING and row.last_error == "timed out after 10 s"


def test_410_disables_the_endpoint_and_400_dead_letters(
        platform: Platform, channel: ScriptedChannel) -> None:
    channel.answer = lambda _t, _m: SendResult(ok=False, status_code=410)
    endpoint_id, delivery_id = _one_signal(platform)
    report = deliver_due(platform, "w1", limit=10)
    assert report.dead == 1 and report.disabled_endpoints == (endpoint_id,)
    with platform.database.read() as uow:
        endpoint = uow.endpoints.get(None, endpoint_id)
    assert endpoint is not None and not endpoint.enabled
    assert "410" in (endpoint.disabled_reason or "")
    assert _rows(platform)[delivery_id].status == DEAD

    channel.answer = lambda _t, _m: SendResult(ok=False, status_code=400)
    stored = seed_strategy(platform, name="second")
    instruments = seed_instruments(platform, ["CCC"])
    seed_route(platform, "other", "https://other.example/h", strategies=["second"])
    (row_id,) = insert_signals(platform, stored,
                               new_signals(stored, instruments, 1)).delivery_ids
    assert deliver_due(platform, "w1", limit=10).dead == 1
    assert _rows(platform)[row_id].status == DEAD


def test_breaker_opens_then_probes_and_other_endpoints_go_on(
        platform: Platform, channel: ScriptedChannel, clock: FixedClock) -> None:
    down = "https://down.example/h"
    channel.answer = lambda target, _m: SendResult(ok=target != down,
                                                   status_code=503 if target == down else 200)
    stored = seed_strategy(platform)
    instruments = seed_instruments(platform, ["AAA"])
    seed_route(platform, "down", down)
    seed_route(platform, "up", "https://up.example/h")
    insert_signals(platform, stored, new_signals(stored, instruments, 20))
    report = deliver_due(platform, "w1", limit=100)
    to_down = [s for s in channel.sent if s["target"] == down]
    # five failures open the breaker: the other 15 rows of that endpoint wait untried
    assert len(to_down) == 5 and report.deferred == 15
    assert report.delivered == 20  # the healthy endpoint got all of its own
    deferred = [r for r in _rows(platform).values() if r.endpoint_id == 1
                and r.status == PENDING and r.last_error is None]
    assert len(deferred) == 15 and all(r.attempts == 0 for r in deferred)
    clock.advance(31)  # past the breaker's reset: one probe, which fails -> open again
    channel.sent.clear()
    deliver_due(platform, "w1", limit=100)
    assert len([s for s in channel.sent if s["target"] == down]) == 1
    clock.advance(31)
    channel.answer = lambda _t, _m: SendResult(ok=True, status_code=200)
    channel.sent.clear()
    deliver_due(platform, "w1", limit=100)  # the probe succeeds: the breaker closes
    deliver_due(platform, "w1", limit=100)
    assert len(channel.sent) >= 15


def test_throttle_suppresses_and_summarises(platform: Platform,
                                            channel: ScriptedChannel,
                                            clock: FixedClock) -> None:
    stored = seed_strategy(platform)
    instruments = seed_instruments(platform, ["AAA"])
    seed_route(platform, "hook", "https://example.com/hook", max_per_hour=3)
    insert_signals(platform, stored, new_signals(stored, instruments, 5))
    report = deliver_due(platform, "w1", limit=100)
    assert report.delivered == 3 and report.suppressed == 2
    rows = _rows(platform).values()
    assert sorted(r.status for r in rows if r.signal_id) == [DELIVERED] * 3 + [SUPPRESSED] * 2
    (summary,) = [r for r in rows if r.payload["type"] == "signal.summary"]
    assert summary.payload["count"] == 2 and summary.status == PENDING
    clock.advance(3601)
    deliver_due(platform, "w1", limit=100)
    assert channel.sent[-1]["payload"]["type"] == "signal.summary"


def test_digest_waits_for_the_boundary_and_sends_one_message(
        platform: Platform, channel: ScriptedChannel, clock: FixedClock) -> None:
    stored = seed_strategy(platform)
    instruments = seed_instruments(platform, ["AAA", "BBB"])
    seed_route(platform, "hook", "https://example.com/hook", digest_minutes=60)
    ids = insert_signals(platform, stored, new_signals(stored, instruments, 4)).delivery_ids
    # the memory repository stamps rows with the wall clock: move the fixed clock near it
    created = min(r.created_at for r in _rows(platform).values())
    clock.advance((created - clock.now()).total_seconds())
    report = deliver_due(platform, "w1", limit=100)
    assert report.deferred == 4 and channel.sent == []
    clock.advance(3600)
    report = deliver_due(platform, "w1", limit=100)
    assert report.delivered == 4
    (message,) = channel.sent
    assert message["payload"]["type"] == "signal.digest" and message["payload"]["count"] == 4
    assert message["id"] == min(ids)
    assert {r.status for r in _rows(platform).values()} == {DELIVERED}


def test_replay_brings_dead_rows_back(platform: Platform, channel: ScriptedChannel) -> None:
    channel.answer = lambda _t, _m: SendResult(ok=False, status_code=400)
    endpoint_id, delivery_id = _one_signal(platform)
    deliver_due(platform, "w1", limit=10)
    before = _state(platform)
    with pytest.raises(NotFoundError):
        replay(platform, 2, [delivery_id])  # another tenant's row: unknown to it
    with pytest.raises(BadInputError):
        replay(platform, 1, [])  # an empty selection never means "everything"
    assert _state(platform) == before
    assert replay(platform, 1, [delivery_id]) == 1
    row = _rows(platform)[delivery_id]
    assert row.status == PENDING and row.attempts == 0
    channel.answer = lambda _t, _m: SendResult(ok=True, status_code=200)
    assert deliver_due(platform, "w1", limit=10).delivered == 1
    assert replay(platform, 1, None, endpoint_id=endpoint_id) == 0  # nothing dead now


def test_messages_come_from_templates_and_a_failing_one_dead_letters_at_once(
        platform: Platform, channel: ScriptedChannel) -> None:
    import dataclasses

    from signalfactory.adapters.templates import JinjaMessageRenderer

    templated = dataclasses.replace(platform, renderer=JinjaMessageRenderer(),
                                    channels={"apprise": ScriptedChannel("apprise")})
    apprise = templated.channels["apprise"]
    assert isinstance(apprise, ScriptedChannel)
    _endpoint, good = _one_signal(templated, kind="apprise")
    assert deliver_due(templated, "w1", limit=10).delivered == 1
    (sent,) = apprise.sent
    payload = _rows(templated)[good].payload
    # the apprise kind's default template: "BUY AAA (always)" and the price in the text
    assert sent["subject"] == f"{str(payload['side']).upper()} {payload['symbol']} (always)"
    assert str(payload["price"]) in sent["body"]

    stored = seed_strategy(templated, name="templated")
    instruments = seed_instruments(templated, ["TPL"])
    broken, _sub = seed_route(templated, "broken", "json://example.com/x", kind="apprise",
                              strategies=["templated"], template="{{ signal.price / 0 }}")
    ids = insert_signals(templated, stored, new_signals(stored, instruments, 1)).delivery_ids
    (bad,) = [i for i in ids if _rows(templated)[i].endpoint_id == broken]
    report = deliver_due(templated, "w1", limit=10)
    # the first subscription (every strategy) gets its copy; the broken template's is never sent
    assert report.dead == 1 and report.delivered == 1 and len(apprise.sent) == 2
    with templated.database.read() as uow:
        (attempt,) = uow.deliveries.attempts(bad)
    assert _rows(templated)[bad].status == DEAD and "division" in (attempt.error or "")
