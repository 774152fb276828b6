"""Campaigns on the in-memory ports: storing, fan-out in chunk jobs, the counter row,
exactly-once queueing with derived ids, priorities, and bad input that stores nothing."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from signalfactory.domain.delivery import (
    BULK,
    REALTIME,
    Campaign,
    DeliveryControls,
    NewCampaign,
    NewDelivery,
    NewEndpoint,
)
from signalfactory.domain.errors import BadInputError, NotFoundError
from signalfactory.domain.message_ids import derived_message_id, is_message_id
from signalfactory.domain.streaming import NewSubscription
from signalfactory.services.delivery.campaign_records import list_campaigns
from signalfactory.services.delivery.campaigns import (
    CAMPAIGN_MESSAGE,
    CHUNK_KIND,
    DONE,
    FANNING_OUT,
    FANOUT_KIND,
    PENDING,
    Recipient,
    campaign_rows,
    message_id,
    start_campaign,
)
from signalfactory.services.jobs.execution import claim_next, run_claimed
from signalfactory.services.platform import Platform
from signalfactory.testing import FixedClock, memory_platform
from signalfactory.testing.memory import InMemoryDatabase

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def platform() -> Platform:
    return memory_platform(clock=FixedClock(T0))


def _state(platform: Platform) -> object:
    database = platform.database
    assert isinstance(database, InMemoryDatabase)
    return copy.deepcopy(database.state.__dict__)


def get_campaign(platform: Platform, tenant_id: int | None, campaign_id: int) -> Campaign:
    with platform.database.read() as uow:
        found = uow.campaigns.get(tenant_id, campaign_id)
    if found is None:
        raise NotFoundError(f"no campaign {campaign_id}")
    return found


def _endpoint(tenant_id: int, name: str) -> NewEndpoint:
    return NewEndpoint(tenant_id=tenant_id, name=name, kind="webhook",
                       target_sealed=b"sealed-" + name.encode(), target_hint="https://…")


def _subscriber(platform: Platform, tenant_id: int, name: str, endpoints: int) -> tuple[int,
                                                                                      list[int]]:
    """A subscription with ``endpoints`` fresh endpoints linked to it."""
    with platform.database.write() as uow:
        sub = uow.subscriptions.add(NewSubscription(tenant_id=tenant_id, name=name,
                                                    strategies=(), symbols=(), min_score=None))
        ids = [uow.endpoints.add(_endpoint(tenant_id, f"{name}-{i}")).id
               for i in range(endpoints)]
        uow.endpoints.set_controls(sub.id, DeliveryControls(endpoint_ids=tuple(ids)))
    return sub.id, ids


def _run_all(platform: Platform, owner: str = "unit-worker", limit: int = 200) -> list[str]:
    """Run queued jobs until none is left; returns the kinds in the order they ran."""
    kinds = []
    for _ in range(limit):
        job = claim_next(platform, owner)
        if job is None:
            return kinds
        assert run_claimed(platform, job, owner).status == "succeeded"
        kinds.append(job.kind)
    raise AssertionError("jobs kept coming")


def _campaign(tenant_id: int = 1, subs: tuple[int, ...] = ()) -> NewCampaign:
    return NewCampaign(tenant_id=tenant_id, subject="Market closed early",
                       body="Trading ends at 13:00 today.", subscription_ids=subs)


def test_start_stores_a_pending_campaign_and_one_fanout_job(platform: Platform) -> None:
    _subscriber(platform, 1, "alpha", 3)
    campaign = start_campaign(platform, 1, _campaign())
    assert (campaign.status, campaign.total, campaign.enqueued) == (PENDING, 0, 0)
    with platform.database.read() as uow:
        queued = uow.jobs.find(tenant_id=1, status="queued", kind=None, limit=10, offset=0)
        assert uow.deliveries.find(None) == []
    assert [(j.kind, j.payload["campaign_id"]) for j in queued] == [(FANOUT_KIND, campaign.id)]
    assert platform.jobs.announced == [queued[0].id]  # type: ignore[attr-defined]
    with platform.database.read() as uow:
        assert list_campaigns(uow, 1) == [campaign]


def test_fanout_queues_one_bulk_row_per_endpoint_in_chunks_and_completes(
        platform: Platform) -> None:
    sub_a, eps_a = _subscriber(platform, 1, "alpha", 7)
    sub_b, eps_b = _subscriber(platform, 1, "beta", 4)
    # one endpoint linked to both subscriptions gets one copy
    with platform.database.write() as uow:
        uow.endpoints.set_controls(sub_b, DeliveryControls(endpoint_ids=(*eps_b, eps_a[0])))
        uow.endpoints.set_enabled(eps_b[3], False, "owner paused it")
    other = _other_tenant(platform)
    _subscriber(platform, other, "theirs", 2)

    campaign = start_campaign(platform, 1, _campaign(), chunk_size=4)
    kinds = _run_all(platform)
    # 7 + 3 enabled endpoints = 10 recipients: 3 chunks of at most 4
    assert kinds == [FANOUT_KIND, CHUNK_KIND, CHUNK_KIND, CHUNK_KIND]

    done = get_campaign(platform, 1, campaign.id)
    assert (done.status, done.total, done.enqueued, done.finished_at) == (DONE, 10, 10, T0)
    with platform.database.read() as uow:
        rows = uow.deliveries.find(None, campaign_id=campaign.id, limit=1000)
    assert sorted(r.endpoint_id for r in rows) == sorted([*eps_a, *eps_b[:3]])
    assert {r.priority for r in rows} == {BULK}
    assert {r.tenant_id for r in rows} == {1}
    assert all(is_message_id(r.id) for r in rows)
    assert rows[0].payload == {"type": CAMPAIGN_MESSAGE, "campaign_id": campaign.id,
                               "subject": "Market closed early",
                               "body": "Trading ends at 13:00 today."}
    by_endpoint = {r.endpoint_id: r for r in rows}
    assert by_endpoint[eps_a[0]].subscription_id == sub_a
    assert by_endpoint[eps_b[0]].subscription_id == sub_b


def test_a_campaign_can_target_chosen_subscriptions(platform: Platform) -> None:
    _subscriber(platform, 1, "alpha", 3)
    sub_b, eps_b = _subscriber(platform, 1, "beta", 2)
    campaign = start_campaign(platform, 1, _campaign(subs=(sub_b,)))
    _run_all(platform)
    with platform.database.read() as uow:
        rows = uow.deliveries.find(1, campaign_id=campaign.id)
    assert sorted(r.endpoint_id for r in rows) == sorted(eps_b)
    assert get_campaign(platform, 1, campaign.id).total == 2


def test_a_campaign_without_recipients_is_done_at_once(platform: Platform) -> None:
    campaign = start_campaign(platform, 1, _campaign())
    assert _run_all(platform) == [FANOUT_KIND]
    done = get_campaign(platform, 1, campaign.id)
    assert (done.status, done.total, done.enqueued) == (DONE, 0, 0)


def test_progress_is_visible_between_chunks(platform: Platform) -> None:
    _subscriber(platform, 1, "alpha", 5)
    campaign = start_campaign(platform, 1, _campaign(), chunk_size=2)
    seen = []
    for _ in range(4):  # the fan-out, then three chunks (2 + 2 + 1) in any order
        job = claim_next(platform, "w")
        assert job is not None
        run_claimed(platform, job, "w")
        now = get_campaign(platform, 1, campaign.id)
        assert now.total == 5
        seen.append((now.status, now.enqueued))
    assert [status for status, _ in seen] == [FANNING_OUT, FANNING_OUT, FANNING_OUT, DONE]
    counts = [count for _, count in seen]
    assert counts[0] == 0 and counts[-1] == 5
    assert sorted(b - a for a, b in pairwise(counts)) == [1, 2, 2]
    assert claim_next(platform, "w") is None


def test_a_chunk_rerun_by_a_second_worker_never_doubles_rows(platform: Platform) -> None:
    _subscriber(platform, 1, "alpha", 6)
    campaign = start_campaign(platform, 1, _campaign(), chunk_size=3)
    fanout = claim_next(platform, "worker-a")
    assert fanout is not None and run_claimed(platform, fanout, "worker-a").status == "succeeded"
    stalled = claim_next(platform, "worker-a")
    assert stalled is not None and stalled.kind == CHUNK_KIND
    # worker-a hangs past its lease; worker-b takes the chunk over and finishes everything
    clock = platform.clock
    assert isinstance(clock, FixedClock)
    clock.advance(platform.settings.job_lease_seconds + 1)
    assert _run_all(platform, owner="worker-b") == [CHUNK_KIND, CHUNK_KIND]
    # worker-a wakes up and completes its run: it no longer holds the lease, nothing is written
    assert run_claimed(platform, stalled, "worker-a").status == "lost"
    with platform.database.read() as uow:
        rows = uow.deliveries.find(None, campaign_id=campaign.id)
    assert len(rows) == len({r.id for r in rows}) == 6
    done = get_campaign(platform, 1, campaign.id)
    assert (done.status, done.enqueued, done.total) == (DONE, 6, 6)


def test_rows_already_in_the_outbox_are_skipped_by_their_derived_ids(
        platform: Platform) -> None:
    sub, eps = _subscriber(platform, 1, "alpha", 4)
    campaign = start_campaign(platform, 1, _campaign(), chunk_size=10)
    # as if an earlier run had queued two of the messages already
    early = campaign_rows(campaign, [Recipient(sub, eps[0]), Recipient(sub, eps[1])])
    with platform.database.write() as uow:
        assert uow.deliveries.enqueue(early) == 2
    _run_all(platform)
    with platform.database.read() as uow:
        rows = uow.deliveries.find(None, campaign_id=campaign.id)
    assert sorted(r.id for r in rows) == sorted(
        message_id(campaign, Recipient(sub, e)) for e in eps)
    assert get_campaign(platform, 1, campaign.id).status == DONE


def test_derived_ids_are_stable_distinct_and_well_formed() -> None:
    at = int(T0.timestamp() * 1000)
    first = derived_message_id("msg_c1_2_3", at)
    assert first == derived_message_id("msg_c1_2_3", at)
    assert is_message_id(first)
    assert first != derived_message_id("msg_c1_2_4", at)
    assert first != derived_message_id("msg_c1_23_", at)
    # the time prefix keeps them in creation order with random ids of the same millisecond
    assert derived_message_id("x", at)[:14] == derived_message_id("y", at)[:14]
    assert derived_message_id("x", at) < derived_message_id("x", at + 1)
    with pytest.raises(ValueError, match="48 bits"):
        derived_message_id("x", -1)


def test_real_time_rows_are_claimed_before_queued_campaign_rows(platform: Platform) -> None:
    sub, eps = _subscriber(platform, 1, "alpha", 5)
    start_campaign(platform, 1, _campaign())
    _run_all(platform)
    realtime = NewDelivery(id=derived_message_id("signal-1", int(T0.timestamp() * 1000) + 9),
                           tenant_id=1, endpoint_id=eps[0], subscription_id=sub, signal_id=None,
                           payload={"type": "signal.created"}, priority=REALTIME)
    with platform.database.write() as uow:
        uow.deliveries.enqueue([realtime])
        claimed = uow.deliveries.claim_due(T0, "d", T0 + timedelta(seconds=30), limit=2)
    assert [c.priority for c in claimed] == [REALTIME, BULK]
    assert claimed[0].id == realtime.id


def _other_tenant(platform: Platform) -> int:
    with platform.database.write() as uow:
        return uow.accounts.create_tenant("other", "free").id


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tenant_id": 2}, "own tenant"),
        ({"subject": "   "}, "subject"),
        ({"subject": "x" * 201}, "subject"),
        ({"body": ""}, "body"),
        ({"body": "x" * 20_001}, "body"),
        ({"body": "a\x00b"}, "NUL"),
        ({"subscription_ids": (999,)}, "no subscription 999"),
        ({"subscription_ids": "foreign"}, "no subscription"),
    ],
)
def test_bad_input_is_refused_and_stores_nothing(platform: Platform, change: dict[str, object],
                                                 message: str) -> None:
    sub, _ = _subscriber(platform, 1, "alpha", 2)
    foreign, _ = _subscriber(platform, _other_tenant(platform), "theirs", 1)
    fields: dict[str, object] = {"tenant_id": 1, "subject": "s", "body": "b",
                                 "subscription_ids": ()}
    fields.update(change)
    if fields["subscription_ids"] == "foreign":
        fields["subscription_ids"] = (sub, foreign)
    before = _state(platform)
    with pytest.raises((BadInputError, NotFoundError), match=message):
        start_campaign(platform, 1, NewCampaign(**fields))  # type: ignore[arg-type]
    assert _state(platform) == before


def test_chunk_size_out_of_range_is_refused(platform: Platform) -> None:
    before = _state(platform)
    with pytest.raises(BadInputError, match="chunk_size"):
        start_campaign(platform, 1, _campaign(), chunk_size=0)
    assert _state(platform) == before


def test_another_tenants_campaign_is_not_found(platform: Platform) -> None:
    campaign = start_campaign(platform, 1, _campaign())
    other = _other_tenant(platform)
    with pytest.raises(NotFoundError):
        get_campaign(platform, other, campaign.id)
    with platform.database.read() as uow:
        assert list_campaigns(uow, other) == []
    assert get_campaign(platform, None, campaign.id) == campaign
