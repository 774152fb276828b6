"""Campaign requests as the API and CLI take them: checked and stored; reading them back
with their progress. The fan-out (one outbox row per recipient, in chunks) is
``services.delivery.campaigns.start_campaign``."""

from __future__ import annotations

from collections.abc import Sequence

from signalfactory.domain.delivery import Campaign, NewCampaign
from signalfactory.domain.errors import BadInputError, NotFoundError
from signalfactory.services.ports import UnitOfWork

MAX_SUBJECT_CHARS = 200
MAX_BODY_CHARS = 20_000
MAX_SUBSCRIPTIONS = 10_000


def check_campaign(uow: UnitOfWork, tenant_id: int, subject: str, body: str,
                   subscription_ids: Sequence[int] = ()) -> NewCampaign:
    """A campaign request checked against the tenant's subscriptions (another tenant's
    subscription id is as unknown as a missing one)."""
    subject = subject.strip()
    if not subject or len(subject) > MAX_SUBJECT_CHARS:
        raise BadInputError(f"subject must be 1..{MAX_SUBJECT_CHARS} characters")
    if not body.strip() or len(body) > MAX_BODY_CHARS:
        raise BadInputError(f"body must be 1..{MAX_BODY_CHARS} characters")
    if "\x00" in subject or "\x00" in body:
        raise BadInputError("subject and body must not contain NUL characters")
    wanted = tuple(sorted(set(subscription_ids)))
    if len(wanted) > MAX_SUBSCRIPTIONS:
        raise BadInputError(f"at most {MAX_SUBSCRIPTIONS} subscriptions; omit them to reach "
                            "every subscription")
    unknown = [s for s in wanted
               if not 0 < s < 2**31 or uow.subscriptions.get(tenant_id, s) is None]
    if unknown:
        raise NotFoundError(f"no subscription {', '.join(map(str, unknown))}; list yours "
                            "with GET /api/v1/subscriptions")
    return NewCampaign(tenant_id=tenant_id, subject=subject, body=body,
                       subscription_ids=wanted)


def create_campaign(uow: UnitOfWork, tenant_id: int, subject: str, body: str,
                    subscription_ids: Sequence[int] = ()) -> Campaign:
    return uow.campaigns.add(check_campaign(uow, tenant_id, subject, body, subscription_ids))


def get_campaign(uow: UnitOfWork, tenant_id: int, campaign_id: int) -> Campaign:
    found = uow.campaigns.get(tenant_id, campaign_id)
    if found is None:
        raise NotFoundError(f"no campaign {campaign_id}; list yours with "
                            "GET /api/v1/campaigns")
    return found


def list_campaigns(uow: UnitOfWork, tenant_id: int) -> list[Campaign]:
    return uow.campaigns.for_tenant(tenant_id)
