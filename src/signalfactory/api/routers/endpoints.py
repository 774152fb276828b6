"""Delivery endpoints over HTTP (webhooks, Apprise destinations, e-mail) and the delivery
controls of a subscription.

A webhook's signing secret is in the answer of creation and rotation only; those answers
carry ``Cache-Control: no-store`` (and are kept sealed by the idempotency store). Another
tenant's endpoint or subscription answers 404, exactly like a missing one.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, Field

from signalfactory.api.auth import PrincipalDep, TraderDep
from signalfactory.api.deps import PlatformDep
from signalfactory.api.routers.webhook_payloads import (
    WebhookCampaignPayload,
    WebhookDigestPayload,
    WebhookSignalPayload,
    WebhookSummaryPayload,
    WebhookTestPayload,
)
from signalfactory.api.schemas import AUTH_RESPONSES, Problem, RequestModel
from signalfactory.domain.delivery import DeliveryControls, Endpoint
from signalfactory.domain.streaming import iso_utc
from signalfactory.services.delivery import controls as controls_service
from signalfactory.services.delivery import endpoints as service
from signalfactory.services.delivery.targets import MAX_TARGET_CHARS

router = APIRouter(prefix="/api/v1", tags=["delivery"], responses=AUTH_RESPONSES)
#: documents what webhook endpoints receive (OpenAPI ``webhooks``)
webhooks = APIRouter()

ENDPOINT_ID = Path(ge=1, le=2**31 - 1)
SUBSCRIPTION_ID = Path(ge=1, le=2**31 - 1)
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such endpoint in this tenant"}}
NO_STORE = {"Cache-Control": "no-store"}
#: the idempotency middleware documents POST's 400; a body that is not JSON is one here too
BAD_BODY: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "The body is not valid JSON"}}


class EndpointIn(RequestModel):
    name: str = Field(min_length=1, max_length=100, examples=["trading desk"])
    kind: Literal["webhook", "apprise", "email"] = Field(
        description="webhook: an https URL receiving signed JSON; apprise: an Apprise URL "
                    "(tgram://, slack://, ntfy://, ...); email: an address or mailto:// URL")
    target: str = Field(min_length=1, max_length=MAX_TARGET_CHARS,
                        examples=["https://example.com/hooks/signals"],
                        description="Stored encrypted; never shown again in full")
    max_per_second: float | None = Field(default=None, gt=0, le=service.MAX_PER_SECOND,
                                         description="Pace sends to this endpoint")


class EndpointOut(BaseModel):
    id: int
    name: str
    kind: str
    target_hint: str = Field(description="The target with its secret parts hidden")
    enabled: bool
    disabled_reason: str | None
    max_per_second: float | None
    created_at: str | None

    @classmethod
    def of(cls, ep: Endpoint) -> EndpointOut:
        return cls(id=ep.id, name=ep.name, kind=ep.kind, target_hint=ep.target_hint,
                   enabled=ep.enabled, disabled_reason=ep.disabled_reason,
                   max_per_second=ep.max_per_second, created_at=iso_utc(ep.created_at))


class EndpointWithSecret(EndpointOut):
    secret: str | None = Field(description="The webhook signing secret (whsec_...): shown "
                                           "only in this answer; null for other kinds")

    @classmethod
    def made(cls, created: service.CreatedEndpoint) -> EndpointWithSecret:
        return cls(**EndpointOut.of(created.endpoint).model_dump(), secret=created.secret)


class EndpointList(BaseModel):
    items: list[EndpointOut]


class EnabledIn(RequestModel):
    enabled: bool


class TestSent(BaseModel):
    delivery_id: str = Field(description="Follow it with GET /api/v1/deliveries/{id}")


class ControlsBody(RequestModel):
    endpoint_ids: list[Annotated[int, Field(ge=1, le=2**31 - 1)]] = Field(
        default_factory=list, max_length=50,
                                    description="Endpoints this subscription's signals go to")
    timezone: str = Field(default="UTC", max_length=64, examples=["Europe/Paris"])
    quiet_start: int | None = Field(default=None, ge=0, le=1439,
                                    description="Quiet hours start, minutes after local "
                                                "midnight (with quiet_end)")
    quiet_end: int | None = Field(default=None, ge=0, le=1439)
    max_per_hour: int | None = Field(default=None, ge=1, le=1_000_000,
                                     description="At most this many messages an hour per "
                                                 "endpoint; the rest are summarised")
    digest_minutes: int | None = Field(default=None, ge=1, le=10_080,
                                       description="One message per interval listing the "
                                                   "signals")
    template: str | None = Field(default=None, max_length=controls_service.MAX_TEMPLATE_CHARS,
                                 description="Jinja2 (sandboxed) overriding the default")

    def record(self) -> DeliveryControls:
        return DeliveryControls(endpoint_ids=tuple(self.endpoint_ids), timezone=self.timezone,
                                quiet_start=self.quiet_start, quiet_end=self.quiet_end,
                                max_per_hour=self.max_per_hour,
                                digest_minutes=self.digest_minutes, template=self.template)

    @classmethod
    def of(cls, c: DeliveryControls) -> ControlsBody:
        return cls(endpoint_ids=list(c.endpoint_ids), timezone=c.timezone,
                   quiet_start=c.quiet_start, quiet_end=c.quiet_end,
                   max_per_hour=c.max_per_hour, digest_minutes=c.digest_minutes,
                   template=c.template)


@router.post("/endpoints", response_model=EndpointWithSecret, status_code=201,
             summary="Add a delivery endpoint (a webhook's signing secret is shown once)",
             responses={409: {"model": Problem, "description": "That name is taken"},
                        422: {"description": "Bad target (URL, scheme, private address) or "
                                             "no delivery key configured"}})
def post_endpoint(body: EndpointIn, principal: TraderDep, platform: PlatformDep,
                  response: Response) -> EndpointWithSecret:
    response.headers.update(NO_STORE)
    return EndpointWithSecret.made(service.create_endpoint(
        platform, principal.tenant_id, name=body.name, kind=body.kind, target=body.target,
        max_per_second=body.max_per_second))


@router.get("/endpoints", response_model=EndpointList, summary="Your delivery endpoints")
def get_endpoints(principal: PrincipalDep, platform: PlatformDep) -> EndpointList:
    with platform.database.read() as uow:
        items = service.list_endpoints(uow, principal.tenant_id)
    return EndpointList(items=[EndpointOut.of(e) for e in items])


@router.get("/endpoints/{endpoint_id}", response_model=EndpointOut, responses=NOT_FOUND,
            summary="One delivery endpoint")
def get_endpoint(principal: PrincipalDep, platform: PlatformDep,
                 endpoint_id: int = ENDPOINT_ID) -> EndpointOut:
    with platform.database.read() as uow:
        return EndpointOut.of(service.get_endpoint(uow, principal.tenant_id, endpoint_id))


@router.post("/endpoints/{endpoint_id}/rotate-secret", response_model=EndpointWithSecret,
             responses=NOT_FOUND,
             summary="New signing secret (shown once); the previous one signs for 24 h more")
def rotate_secret(principal: TraderDep, platform: PlatformDep, response: Response,
                  endpoint_id: int = ENDPOINT_ID) -> EndpointWithSecret:
    response.headers.update(NO_STORE)
    return EndpointWithSecret.made(service.rotate_secret(platform, principal.tenant_id,
                                                         endpoint_id))


@router.post("/endpoints/{endpoint_id}/test", response_model=TestSent, status_code=202,
             responses={**NOT_FOUND, 409: {"model": Problem,
                                           "description": "The endpoint is disabled"}},
             summary="Queue a test message to the endpoint (real-time priority)")
def test_endpoint(principal: TraderDep, platform: PlatformDep,
                  endpoint_id: int = ENDPOINT_ID) -> TestSent:
    return TestSent(delivery_id=service.send_test(platform, principal.tenant_id, endpoint_id))


def _set_enabled(principal: TraderDep, platform: PlatformDep, endpoint_id: int,
                 enabled: bool) -> EndpointOut:
    return EndpointOut.of(service.set_endpoint_enabled(platform, principal.tenant_id,
                                                       endpoint_id, enabled))


@router.patch("/endpoints/{endpoint_id}", response_model=EndpointOut,
              responses={**NOT_FOUND, **BAD_BODY},
              summary="Enable or disable an endpoint")
def patch_endpoint(body: EnabledIn, principal: TraderDep, platform: PlatformDep,
                   endpoint_id: int = ENDPOINT_ID) -> EndpointOut:
    return _set_enabled(principal, platform, endpoint_id, body.enabled)


@router.post("/endpoints/{endpoint_id}/enable", response_model=EndpointOut,
             responses=NOT_FOUND, summary="Enable an endpoint")
def enable_endpoint(principal: TraderDep, platform: PlatformDep,
                    endpoint_id: int = ENDPOINT_ID) -> EndpointOut:
    return _set_enabled(principal, platform, endpoint_id, True)


@router.post("/endpoints/{endpoint_id}/disable", response_model=EndpointOut,
             responses=NOT_FOUND, summary="Disable an endpoint (nothing is sent to it)")
def disable_endpoint(principal: TraderDep, platform: PlatformDep,
                     endpoint_id: int = ENDPOINT_ID) -> EndpointOut:
    return _set_enabled(principal, platform, endpoint_id, False)


@router.delete("/endpoints/{endpoint_id}", status_code=204, responses=NOT_FOUND,
               summary="Remove an endpoint and its deliveries")
def delete_endpoint(principal: TraderDep, platform: PlatformDep,
                    endpoint_id: int = ENDPOINT_ID) -> Response:
    service.delete_endpoint(platform, principal.tenant_id, endpoint_id)
    return Response(status_code=204)


@router.get("/subscriptions/{subscription_id}/delivery", response_model=ControlsBody,
            summary="A subscription's delivery controls",
            responses={404: {"model": Problem, "description": "No such subscription"}})
def get_controls(principal: PrincipalDep, platform: PlatformDep,
                 subscription_id: int = SUBSCRIPTION_ID) -> ControlsBody:
    with platform.database.read() as uow:
        return ControlsBody.of(controls_service.get_controls(uow, principal.tenant_id,
                                                             subscription_id))


@router.put("/subscriptions/{subscription_id}/delivery", response_model=ControlsBody,
            summary="Replace a subscription's delivery controls (endpoints, quiet hours, "
                    "throttle, digest, template)",
            responses={**BAD_BODY, 404: {"model": Problem,
                                         "description": "No such subscription or endpoint"}})
def put_controls(body: ControlsBody, principal: TraderDep, platform: PlatformDep,
                 subscription_id: int = SUBSCRIPTION_ID) -> ControlsBody:
    return ControlsBody.of(controls_service.set_controls(
        platform, principal.tenant_id, subscription_id, body.record()))


_SIGNED = ("Headers: webhook-id (the same on every attempt: drop repeats), "
           "webhook-timestamp (Unix seconds), webhook-signature (v1,<base64 HMAC-SHA256 of "
           "id.timestamp.body> per active secret, space-separated; two during a rotation). "
           "Answer 2xx within the timeout; 410 disables the endpoint.")


@webhooks.post("signal.created", summary="A new signal", description=_SIGNED)
def signal_webhook(body: WebhookSignalPayload) -> None:
    """Documentation only: Signal Factory calls your URL with this body."""


@webhooks.post("signal.digest", summary="Signals of one digest interval",
               description=_SIGNED)
def digest_webhook(body: WebhookDigestPayload) -> None:
    """Documentation only."""


@webhooks.post("signal.summary", summary="What the throttle held back", description=_SIGNED)
def summary_webhook(body: WebhookSummaryPayload) -> None:
    """Documentation only."""


@webhooks.post("campaign.message", summary="An announcement", description=_SIGNED)
def campaign_webhook(body: WebhookCampaignPayload) -> None:
    """Documentation only."""


@webhooks.post("endpoint.test", summary="A test message (POST /api/v1/endpoints/{id}/test)",
               description=_SIGNED)
def test_webhook(body: WebhookTestPayload) -> None:
    """Documentation only: signed like a signal."""
