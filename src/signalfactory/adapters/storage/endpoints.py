"""Endpoints, subscription delivery controls and campaigns in SQL (``EndpointRepository``,
``CampaignRepository``).

Targets and secrets arrive sealed; this module stores and returns the sealed bytes as they
are and never sees clear text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from signalfactory.adapters.storage.jobs import as_utc
from signalfactory.adapters.storage.tables import (
    campaigns,
    endpoints,
    subscription_endpoints,
    subscriptions,
)
from signalfactory.domain.delivery import (
    Campaign,
    DeliveryControls,
    Endpoint,
    EndpointKind,
    NewCampaign,
    NewEndpoint,
)
from signalfactory.domain.errors import ConflictError, NotFoundError


def _utc(value: datetime | None) -> datetime:
    found = as_utc(value)
    if found is None:  # the columns are NOT NULL with a server default
        raise NotFoundError("a stored row has no creation time")
    return found


def _endpoint(row: sa.RowMapping) -> Endpoint:
    secrets = row["secrets_sealed"]
    return Endpoint(id=int(row["id"]), tenant_id=int(row["tenant_id"]), name=row["name"],
                    kind=cast(EndpointKind, row["kind"]),
                    target_sealed=bytes(row["target_sealed"]), target_hint=row["target_hint"],
                    secrets_sealed=bytes(secrets) if secrets is not None else None,
                    enabled=bool(row["enabled"]), disabled_reason=row["disabled_reason"],
                    max_per_second=row["max_per_second"],
                    created_at=_utc(row["created_at"]))


def _no_subscription(subscription_id: int) -> NotFoundError:
    return NotFoundError(f"no subscription {subscription_id}")


class SqlEndpointRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add(self, endpoint: NewEndpoint) -> Endpoint:
        try:
            # A savepoint: a taken name leaves the caller's transaction usable.
            with self.conn.begin_nested():
                inserted = self.conn.execute(endpoints.insert().values(
                    tenant_id=endpoint.tenant_id, name=endpoint.name, kind=endpoint.kind,
                    target_sealed=endpoint.target_sealed, target_hint=endpoint.target_hint,
                    secrets_sealed=endpoint.secrets_sealed,
                    max_per_second=endpoint.max_per_second))
                new_id = int(inserted.inserted_primary_key[0])  # type: ignore[index]
        except IntegrityError:
            raise ConflictError(f"an endpoint named {endpoint.name!r} exists; choose another "
                                "name or remove it first") from None
        found = self.get(endpoint.tenant_id, new_id)
        if found is None:  # cannot happen inside one transaction; keeps the type honest
            raise ConflictError(f"endpoint {new_id} vanished while being stored")
        return found

    def get(self, tenant_id: int | None, endpoint_id: int) -> Endpoint | None:
        query = sa.select(endpoints).where(endpoints.c.id == endpoint_id)
        if tenant_id is not None:
            query = query.where(endpoints.c.tenant_id == tenant_id)
        row = self.conn.execute(query).mappings().first()
        return _endpoint(row) if row is not None else None

    def for_tenant(self, tenant_id: int) -> list[Endpoint]:
        rows = self.conn.execute(sa.select(endpoints).where(endpoints.c.tenant_id == tenant_id)
                                 .order_by(endpoints.c.id)).mappings()
        return [_endpoint(r) for r in rows]

    def set_enabled(self, endpoint_id: int, enabled: bool, reason: str | None = None) -> None:
        self.conn.execute(endpoints.update().where(endpoints.c.id == endpoint_id).values(
            enabled=enabled, disabled_reason=None if enabled else reason))

    def set_secrets(self, endpoint_id: int, secrets_sealed: bytes) -> None:
        self.conn.execute(endpoints.update().where(endpoints.c.id == endpoint_id)
                          .values(secrets_sealed=secrets_sealed))

    def delete(self, tenant_id: int, endpoint_id: int) -> bool:
        # SQLite enforces no foreign keys unless asked: remove the links explicitly.
        owned = sa.select(endpoints.c.id).where(endpoints.c.id == endpoint_id,
                                                endpoints.c.tenant_id == tenant_id)
        self.conn.execute(subscription_endpoints.delete().where(
            subscription_endpoints.c.endpoint_id.in_(owned)))
        deleted = self.conn.execute(endpoints.delete().where(
            endpoints.c.id == endpoint_id, endpoints.c.tenant_id == tenant_id))
        return deleted.rowcount > 0

    def controls(self, subscription_id: int) -> DeliveryControls:
        row = self.conn.execute(sa.select(
            subscriptions.c.timezone, subscriptions.c.quiet_start, subscriptions.c.quiet_end,
            subscriptions.c.max_per_hour, subscriptions.c.digest_minutes,
            subscriptions.c.template).where(subscriptions.c.id == subscription_id)
        ).mappings().first()
        if row is None:
            raise _no_subscription(subscription_id)
        linked = self.conn.execute(
            sa.select(subscription_endpoints.c.endpoint_id)
            .where(subscription_endpoints.c.subscription_id == subscription_id)
            .order_by(subscription_endpoints.c.endpoint_id)).scalars()
        return DeliveryControls(endpoint_ids=tuple(int(e) for e in linked),
                                timezone=row["timezone"], quiet_start=row["quiet_start"],
                                quiet_end=row["quiet_end"], max_per_hour=row["max_per_hour"],
                                digest_minutes=row["digest_minutes"], template=row["template"])

    def set_controls(self, subscription_id: int, controls: DeliveryControls) -> None:
        updated = self.conn.execute(subscriptions.update().where(
            subscriptions.c.id == subscription_id).values(
            timezone=controls.timezone, quiet_start=controls.quiet_start,
            quiet_end=controls.quiet_end, max_per_hour=controls.max_per_hour,
            digest_minutes=controls.digest_minutes, template=controls.template))
        if updated.rowcount == 0:
            raise _no_subscription(subscription_id)
        self.conn.execute(subscription_endpoints.delete().where(
            subscription_endpoints.c.subscription_id == subscription_id))
        links = sorted(set(controls.endpoint_ids))
        if links:
            self.conn.execute(subscription_endpoints.insert(), [
                {"subscription_id": subscription_id, "endpoint_id": e} for e in links])

    def routes(self, tenant_ids: Sequence[int] | None
               ) -> Mapping[int, Sequence[tuple[int, int]]]:
        if tenant_ids is not None and not tenant_ids:
            return {}
        # The endpoint's tenant must be the subscription's: a link is never a way out.
        wanted = [endpoints.c.tenant_id == subscriptions.c.tenant_id,
                  endpoints.c.enabled.is_(True)]
        if tenant_ids is not None:
            wanted.append(subscriptions.c.tenant_id.in_(sorted(set(tenant_ids))))
        rows = self.conn.execute(
            sa.select(subscriptions.c.tenant_id, subscription_endpoints.c.subscription_id,
                      subscription_endpoints.c.endpoint_id)
            .join(subscriptions,
                  subscriptions.c.id == subscription_endpoints.c.subscription_id)
            .join(endpoints, endpoints.c.id == subscription_endpoints.c.endpoint_id)
            .where(*wanted)
            .order_by(subscriptions.c.tenant_id, subscription_endpoints.c.subscription_id,
                      subscription_endpoints.c.endpoint_id))
        found: dict[int, list[tuple[int, int]]] = {}
        for tenant_id, subscription_id, endpoint_id in rows:
            found.setdefault(int(tenant_id), []).append((int(subscription_id),
                                                         int(endpoint_id)))
        return found


def _campaign(row: sa.RowMapping) -> Campaign:
    return Campaign(id=int(row["id"]), tenant_id=int(row["tenant_id"]), subject=row["subject"],
                    body=row["body"],
                    subscription_ids=tuple(int(s) for s in row["subscription_ids"] or ()),
                    status=row["status"], total=int(row["total"]),
                    enqueued=int(row["enqueued"]), created_at=_utc(row["created_at"]),
                    finished_at=as_utc(row["finished_at"]))


class SqlCampaignRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add(self, campaign: NewCampaign) -> Campaign:
        inserted = self.conn.execute(campaigns.insert().values(
            tenant_id=campaign.tenant_id, subject=campaign.subject, body=campaign.body,
            subscription_ids=list(campaign.subscription_ids)))
        new_id = int(inserted.inserted_primary_key[0])  # type: ignore[index]
        found = self.get(campaign.tenant_id, new_id)
        if found is None:  # cannot happen inside one transaction; keeps the type honest
            raise ConflictError(f"campaign {new_id} vanished while being stored")
        return found

    def get(self, tenant_id: int | None, campaign_id: int) -> Campaign | None:
        query = sa.select(campaigns).where(campaigns.c.id == campaign_id)
        if tenant_id is not None:
            query = query.where(campaigns.c.tenant_id == tenant_id)
        row = self.conn.execute(query).mappings().first()
        return _campaign(row) if row is not None else None

    def for_tenant(self, tenant_id: int) -> list[Campaign]:
        rows = self.conn.execute(sa.select(campaigns).where(campaigns.c.tenant_id == tenant_id)
                                 .order_by(campaigns.c.id.desc())).mappings()
        return [_campaign(r) for r in rows]

    def progress(self, campaign_id: int, *, total: int | None = None, enqueued: int = 0,
                 status: str | None = None, finished_at: datetime | None = None) -> None:
        values: dict[str, object] = {"enqueued": campaigns.c.enqueued + enqueued}
        if total is not None:
            values["total"] = total
        if status is not None:
            values["status"] = status
        if finished_at is not None:
            values["finished_at"] = finished_at
        self.conn.execute(campaigns.update().where(campaigns.c.id == campaign_id)
                          .values(values))
