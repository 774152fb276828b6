"""In-memory endpoints, subscription delivery controls and campaigns."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from signalfactory.domain.delivery import (
    Campaign,
    DeliveryControls,
    Endpoint,
    NewCampaign,
    NewEndpoint,
)
from signalfactory.domain.errors import ConflictError, NotFoundError
from signalfactory.testing.memory import MemoryState
from signalfactory.testing.streaming import SubscriptionStore


@dataclass
class EndpointStore:
    rows: dict[int, Endpoint] = field(default_factory=dict)
    next_id: int = 1
    #: subscription id -> its delivery settings (endpoint links included); absent: defaults
    controls: dict[int, DeliveryControls] = field(default_factory=dict)


class MemoryEndpointRepository:
    def __init__(self, state: MemoryState) -> None:
        self.data = state.store("endpoints", EndpointStore)
        self.subscriptions = state.store("subscriptions", SubscriptionStore)

    def add(self, endpoint: NewEndpoint) -> Endpoint:
        if any(e.tenant_id == endpoint.tenant_id and e.name == endpoint.name
               for e in self.data.rows.values()):
            raise ConflictError(f"an endpoint named {endpoint.name!r} exists; choose another "
                                "name or remove it first")
        row = Endpoint(id=self.data.next_id, enabled=True, disabled_reason=None,
                       created_at=datetime.now(UTC), **dataclasses.asdict(endpoint))
        self.data.rows[row.id] = row
        self.data.next_id += 1
        return row

    def get(self, tenant_id: int | None, endpoint_id: int) -> Endpoint | None:
        found = self.data.rows.get(endpoint_id)
        if found is None or (tenant_id is not None and found.tenant_id != tenant_id):
            return None
        return found

    def for_tenant(self, tenant_id: int) -> list[Endpoint]:
        return [e for _, e in sorted(self.data.rows.items()) if e.tenant_id == tenant_id]

    def set_enabled(self, endpoint_id: int, enabled: bool, reason: str | None = None) -> None:
        found = self.data.rows.get(endpoint_id)
        if found is not None:
            self.data.rows[endpoint_id] = dataclasses.replace(
                found, enabled=enabled, disabled_reason=None if enabled else reason)

    def set_secrets(self, endpoint_id: int, secrets_sealed: bytes) -> None:
        found = self.data.rows.get(endpoint_id)
        if found is not None:
            self.data.rows[endpoint_id] = dataclasses.replace(found,
                                                              secrets_sealed=secrets_sealed)

    def delete(self, tenant_id: int, endpoint_id: int) -> bool:
        if self.get(tenant_id, endpoint_id) is None:
            return False
        del self.data.rows[endpoint_id]
        for sub_id, ctl in list(self.data.controls.items()):
            if endpoint_id in ctl.endpoint_ids:
                self.data.controls[sub_id] = dataclasses.replace(ctl, endpoint_ids=tuple(
                    e for e in ctl.endpoint_ids if e != endpoint_id))
        return True

    def _check_subscription(self, subscription_id: int) -> None:
        if subscription_id not in self.subscriptions.rows:
            # a deleted subscription's settings go with it, as the SQL row does
            self.data.controls.pop(subscription_id, None)
            raise NotFoundError(f"no subscription {subscription_id}")

    def controls(self, subscription_id: int) -> DeliveryControls:
        self._check_subscription(subscription_id)
        return self.data.controls.get(subscription_id, DeliveryControls())

    def set_controls(self, subscription_id: int, controls: DeliveryControls) -> None:
        self._check_subscription(subscription_id)
        self.data.controls[subscription_id] = dataclasses.replace(
            controls, endpoint_ids=tuple(sorted(set(controls.endpoint_ids))))

    def routes(self, tenant_ids: Sequence[int] | None
               ) -> Mapping[int, Sequence[tuple[int, int]]]:
        wanted = None if tenant_ids is None else set(tenant_ids)
        found: dict[int, list[tuple[int, int]]] = {}
        for sub_id, sub in sorted(self.subscriptions.rows.items()):
            if wanted is not None and sub.tenant_id not in wanted:
                continue
            for endpoint_id in self.data.controls.get(sub_id, DeliveryControls()).endpoint_ids:
                endpoint = self.data.rows.get(endpoint_id)
                # The endpoint's tenant must be the subscription's: a link is never a way out.
                if endpoint is not None and endpoint.enabled and \
                        endpoint.tenant_id == sub.tenant_id:
                    found.setdefault(sub.tenant_id, []).append((sub_id, endpoint_id))
        return dict(sorted(found.items()))


@dataclass
class CampaignStore:
    rows: dict[int, Campaign] = field(default_factory=dict)
    next_id: int = 1


class MemoryCampaignRepository:
    def __init__(self, state: MemoryState) -> None:
        self.data = state.store("campaigns", CampaignStore)

    def add(self, campaign: NewCampaign) -> Campaign:
        row = Campaign(id=self.data.next_id, status="pending", total=0, enqueued=0,
                       created_at=datetime.now(UTC), finished_at=None,
                       **dataclasses.asdict(campaign))
        self.data.rows[row.id] = row
        self.data.next_id += 1
        return row

    def get(self, tenant_id: int | None, campaign_id: int) -> Campaign | None:
        found = self.data.rows.get(campaign_id)
        if found is None or (tenant_id is not None and found.tenant_id != tenant_id):
            return None
        return found

    def for_tenant(self, tenant_id: int) -> list[Campaign]:
        return [c for _, c in sorted(self.data.rows.items(), reverse=True)
                if c.tenant_id == tenant_id]

    def progress(self, campaign_id: int, *, total: int | None = None, enqueued: int = 0,
                 status: str | None = None, finished_at: datetime | None = None) -> None:
        found = self.data.rows.get(campaign_id)
        if found is None:
            return
        self.data.rows[campaign_id] = dataclasses.replace(
            found, enqueued=found.enqueued + enqueued,
            total=found.total if total is None else total,
            status=found.status if status is None else status,
            finished_at=found.finished_at if finished_at is None else finished_at)
