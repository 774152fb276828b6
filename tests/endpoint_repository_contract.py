"""One behaviour for every ``EndpointRepository`` / ``CampaignRepository``: the in-memory
ports (unit tests) and SQL on SQLite and PostgreSQL (integration tests) run these."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from signalfactory.domain.delivery import DeliveryControls, NewCampaign, NewEndpoint
from signalfactory.domain.errors import ConflictError, NotFoundError
from signalfactory.domain.streaming import NewSubscription
from signalfactory.services.ports import Database


def _endpoint(tenant_id: int, name: str) -> NewEndpoint:
    return NewEndpoint(tenant_id=tenant_id, name=name, kind="webhook",
                       target_sealed=b"\x01sealed-" + name.encode(),
                       target_hint="https://example.com/…", secrets_sealed=b"\x01s")


def _subscription(tenant_id: int, name: str) -> NewSubscription:
    return NewSubscription(tenant_id=tenant_id, name=name, strategies=(), symbols=(),
                           min_score=None)


def check_endpoint_repository(database: Database) -> None:
    with database.write() as uow:
        other = uow.accounts.create_tenant("other", "free").id
        first = uow.endpoints.add(_endpoint(1, "hook"))
        second = uow.endpoints.add(_endpoint(1, "hook2"))
        foreign = uow.endpoints.add(_endpoint(other, "hook"))  # same name, other tenant
        sub = uow.subscriptions.add(_subscription(1, "s1")).id
        sub2 = uow.subscriptions.add(_subscription(1, "s2")).id
        other_sub = uow.subscriptions.add(_subscription(other, "s1")).id
    assert first.enabled and first.disabled_reason is None
    assert first.target_sealed == b"\x01sealed-hook" and first.secrets_sealed == b"\x01s"
    assert first.created_at.tzinfo is not None

    # a taken name is a conflict and leaves the transaction usable
    with database.write() as uow:
        with pytest.raises(ConflictError):
            uow.endpoints.add(_endpoint(1, "hook"))
        assert [e.name for e in uow.endpoints.for_tenant(1)] == ["hook", "hook2"]

    with database.read() as uow:
        assert uow.endpoints.get(1, first.id) == first
        assert uow.endpoints.get(None, foreign.id) == foreign
        assert uow.endpoints.get(1, foreign.id) is None  # another tenant's: not found
        assert [e.id for e in uow.endpoints.for_tenant(other)] == [foreign.id]
        # fresh subscriptions have the default controls
        assert uow.endpoints.controls(sub) == DeliveryControls()
        with pytest.raises(NotFoundError):
            uow.endpoints.controls(999_999)

    controls = DeliveryControls(endpoint_ids=(second.id, first.id, first.id),
                                timezone="Europe/Paris", quiet_start=22 * 60, quiet_end=7 * 60,
                                max_per_hour=10, digest_minutes=60, template="{{ symbol }}")
    with database.write() as uow:
        uow.endpoints.set_controls(sub, controls)
        uow.endpoints.set_controls(sub2, DeliveryControls(endpoint_ids=(second.id,)))
        uow.endpoints.set_controls(other_sub, DeliveryControls(endpoint_ids=(foreign.id,)))
        with pytest.raises(NotFoundError):
            uow.endpoints.set_controls(999_999, controls)
    with database.read() as uow:
        stored = uow.endpoints.controls(sub)
        assert stored == DeliveryControls(
            endpoint_ids=(first.id, second.id), timezone="Europe/Paris", quiet_start=1320,
            quiet_end=420, max_per_hour=10, digest_minutes=60, template="{{ symbol }}")
        assert uow.endpoints.routes([1, other]) == {
            1: [(sub, first.id), (sub, second.id), (sub2, second.id)],
            other: [(other_sub, foreign.id)]}
        assert uow.endpoints.routes([other]) == {other: [(other_sub, foreign.id)]}
        assert uow.endpoints.routes([]) == {}
        assert uow.endpoints.routes(None) == uow.endpoints.routes([1, other])

    # disabling takes an endpoint out of the routes, enabling clears the reason
    with database.write() as uow:
        uow.endpoints.set_enabled(second.id, False, "410 Gone")
    with database.read() as uow:
        disabled = uow.endpoints.get(1, second.id)
        assert disabled is not None and not disabled.enabled
        assert disabled.disabled_reason == "410 Gone"
        assert uow.endpoints.routes([1]) == {1: [(sub, first.id)]}
    with database.write() as uow:
        uow.endpoints.set_enabled(second.id, True)
        uow.endpoints.set_secrets(first.id, b"\x01rotated")
    with database.read() as uow:
        enabled = uow.endpoints.get(1, second.id)
        assert enabled is not None and enabled.enabled and enabled.disabled_reason is None
        rotated = uow.endpoints.get(1, first.id)
        assert rotated is not None and rotated.secrets_sealed == b"\x01rotated"

    # replacing controls replaces the links; deleting an endpoint drops its links
    with database.write() as uow:
        uow.endpoints.set_controls(sub, DeliveryControls(endpoint_ids=(first.id,)))
        assert not uow.endpoints.delete(other, first.id)  # not that tenant's
        assert uow.endpoints.delete(1, second.id)
        assert not uow.endpoints.delete(1, second.id)
    with database.read() as uow:
        assert uow.endpoints.controls(sub) == DeliveryControls(endpoint_ids=(first.id,))
        assert uow.endpoints.controls(sub2).endpoint_ids == ()
        assert uow.endpoints.routes([1]) == {1: [(sub, first.id)]}
        assert uow.endpoints.get(None, second.id) is None


def check_campaign_repository(database: Database) -> None:
    with database.write() as uow:
        other = uow.accounts.create_tenant("other", "free").id
        first = uow.campaigns.add(NewCampaign(tenant_id=1, subject="Hello", body="Body",
                                              subscription_ids=(3, 1)))
        second = uow.campaigns.add(NewCampaign(tenant_id=1, subject="Again", body="B2"))
        foreign = uow.campaigns.add(NewCampaign(tenant_id=other, subject="X", body="Y"))
    assert (first.status, first.total, first.enqueued, first.finished_at) == (
        "pending", 0, 0, None)
    assert first.subscription_ids == (3, 1) and second.subscription_ids == ()
    done_at = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    with database.write() as uow:
        uow.campaigns.progress(first.id, total=250, status="fanning_out")
        uow.campaigns.progress(first.id, enqueued=100)
        uow.campaigns.progress(first.id, enqueued=150, status="done", finished_at=done_at)
    with database.read() as uow:
        got = uow.campaigns.get(1, first.id)
        assert got is not None
        assert (got.total, got.enqueued, got.status, got.finished_at) == (
            250, 250, "done", done_at)
        assert uow.campaigns.get(1, foreign.id) is None
        assert uow.campaigns.get(None, foreign.id) == foreign
        assert [c.id for c in uow.campaigns.for_tenant(1)] == [second.id, first.id]
        assert [c.id for c in uow.campaigns.for_tenant(other)] == [foreign.id]
