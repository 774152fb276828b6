"""Endpoints: a tenant's webhook URLs, Apprise destinations and e-mail addresses.

Targets and signing secrets are sealed with the platform's secret box before they reach a
repository and opened only to send; listings carry a redacted ``target_hint``. A webhook's
signing secret is shown once, when it is made (creation, rotation). Another tenant's
endpoint answers exactly like a missing one.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from datetime import UTC

from signalfactory.domain.delivery import (
    ENDPOINT_KINDS,
    REALTIME,
    Endpoint,
    EndpointKind,
    NewDelivery,
    NewEndpoint,
)
from signalfactory.domain.endpoint_secrets import (
    SECRET_PREFIX,
    SigningSecret,
    decode_secrets,
    encode_secrets,
    rotate,
)
from signalfactory.domain.errors import BadInputError, ConflictError, NotFoundError
from signalfactory.domain.message_ids import new_message_id
from signalfactory.services.delivery.outbox import announce
from signalfactory.services.delivery.ports import SecretBox
from signalfactory.services.delivery.targets import check_target, target_hint
from signalfactory.services.platform import Platform
from signalfactory.services.ports import UnitOfWork

MAX_NAME_CHARS = 100
MAX_PER_SECOND = 1000.0
TEST_MESSAGE_TYPE = "endpoint.test"


@dataclass(frozen=True)
class CreatedEndpoint:
    endpoint: Endpoint
    #: the webhook signing secret, in clear this once (None for kinds that sign nothing)
    secret: str | None


def secret_box(platform: Platform) -> SecretBox:
    if platform.secret_box is None:
        raise BadInputError("delivery endpoints need an encryption key for their targets and "
                            "secrets: set SIGNALFACTORY_DELIVERY_KEY (or _FILE) to 32 random "
                            "bytes, base64-encoded")
    return platform.secret_box


def new_signing_secret() -> str:
    """``whsec_`` + base64 of 24 random bytes (the Standard Webhooks secret format)."""
    return SECRET_PREFIX + base64.b64encode(os.urandom(24)).decode()


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME_CHARS or not all(" " <= c != "\x7f" for c in name):
        raise BadInputError(f"endpoint name must be 1..{MAX_NAME_CHARS} printable characters")
    return name


def _check_kind(kind: str) -> EndpointKind:
    for known in ENDPOINT_KINDS:
        if kind == known:
            return known
    raise BadInputError(f"endpoint kind must be one of {', '.join(ENDPOINT_KINDS)}")


def create_endpoint(platform: Platform, tenant_id: int, *, name: str, kind: str, target: str,
                    max_per_second: float | None = None) -> CreatedEndpoint:
    """Check, seal and store an endpoint; a webhook gets a new signing secret."""
    checked_kind = _check_kind(kind)
    checked_name = _check_name(name)
    if max_per_second is not None and not 0 < max_per_second <= MAX_PER_SECOND:
        raise BadInputError(f"max_per_second must be in (0, {MAX_PER_SECOND:g}]")
    box = secret_box(platform)  # first: without a key nothing can be stored
    clear_target = check_target(platform, checked_kind, target)
    secret = new_signing_secret() if checked_kind == "webhook" else None
    sealed_secrets = (box.seal(encode_secrets((SigningSecret(secret),)))
                      if secret is not None else None)
    with platform.database.write() as uow:
        endpoint = uow.endpoints.add(NewEndpoint(
            tenant_id=tenant_id, name=checked_name, kind=checked_kind,
            target_sealed=box.seal(clear_target.encode()),
            target_hint=target_hint(checked_kind, clear_target),
            secrets_sealed=sealed_secrets, max_per_second=max_per_second))
    return CreatedEndpoint(endpoint=endpoint, secret=secret)


def get_endpoint(uow: UnitOfWork, tenant_id: int, endpoint_id: int) -> Endpoint:
    found = uow.endpoints.get(tenant_id, endpoint_id)
    if found is None:
        raise NotFoundError(f"no endpoint {endpoint_id}; list yours with "
                            "GET /api/v1/endpoints")
    return found


def list_endpoints(uow: UnitOfWork, tenant_id: int) -> list[Endpoint]:
    return uow.endpoints.for_tenant(tenant_id)


def rotate_secret(platform: Platform, tenant_id: int, endpoint_id: int) -> CreatedEndpoint:
    """A new signing secret; the previous one keeps signing for 24 hours."""
    box = secret_box(platform)
    secret = new_signing_secret()
    now = platform.clock.now()
    with platform.database.write() as uow:
        endpoint = get_endpoint(uow, tenant_id, endpoint_id)
        if endpoint.kind != "webhook" or endpoint.secrets_sealed is None:
            raise BadInputError(f"endpoint {endpoint_id} is a {endpoint.kind} endpoint; only "
                                "webhooks have signing secrets")
        current = decode_secrets(box.open(endpoint.secrets_sealed))
        uow.endpoints.set_secrets(endpoint_id, box.seal(encode_secrets(
            rotate(current, secret, now))))
        updated = get_endpoint(uow, tenant_id, endpoint_id)
    return CreatedEndpoint(endpoint=updated, secret=secret)


def set_endpoint_enabled(platform: Platform, tenant_id: int, endpoint_id: int,
                         enabled: bool) -> Endpoint:
    with platform.database.write() as uow:
        get_endpoint(uow, tenant_id, endpoint_id)
        uow.endpoints.set_enabled(endpoint_id, enabled,
                                  None if enabled else "disabled by the tenant")
        return get_endpoint(uow, tenant_id, endpoint_id)


def delete_endpoint(platform: Platform, tenant_id: int, endpoint_id: int) -> None:
    with platform.database.write() as uow:
        if not uow.endpoints.delete(tenant_id, endpoint_id):
            raise NotFoundError(f"no endpoint {endpoint_id}; list yours with "
                                "GET /api/v1/endpoints")


def send_test(platform: Platform, tenant_id: int, endpoint_id: int) -> str:
    """Queue a test message to the endpoint at real-time priority; returns its delivery id
    (follow it with GET /api/v1/deliveries/{id})."""
    now = platform.clock.now()
    message_id = new_message_id(now_ms=int(now.timestamp() * 1000))
    with platform.database.write() as uow:
        endpoint = get_endpoint(uow, tenant_id, endpoint_id)
        if not endpoint.enabled:
            raise ConflictError(f"endpoint {endpoint_id} is disabled; enable it before "
                                "sending a test")
        uow.deliveries.enqueue([NewDelivery(
            id=message_id, tenant_id=tenant_id, endpoint_id=endpoint_id, priority=REALTIME,
            payload={"type": TEST_MESSAGE_TYPE, "endpoint_id": endpoint_id,
                     "endpoint": endpoint.name,
                     "sent_at": now.astimezone(UTC).isoformat(),
                     "message": "A test message from Signal Factory: this endpoint works."})])
        announce(platform, uow, [message_id])
    return message_id
