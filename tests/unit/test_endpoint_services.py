"""Endpoint, delivery-control and campaign use cases on the in-memory platform."""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
from collections.abc import Sequence
from datetime import timedelta

import pytest

from signalfactory.adapters.secret_box import AesGcmSecretBox
from signalfactory.domain.delivery import DeliveryControls, SendResult
from signalfactory.domain.endpoint_secrets import decode_secrets
from signalfactory.domain.errors import BadInputError, ConflictError, NotFoundError
from signalfactory.domain.streaming import NewSubscription
from signalfactory.services.delivery import campaign_records, controls, endpoints
from signalfactory.services.delivery.dispatch import open_endpoint
from signalfactory.services.platform import Platform
from signalfactory.testing import FixedClock, InMemoryDatabase, memory_platform


@pytest.fixture
def platform() -> Platform:
    base = memory_platform(clock=FixedClock())
    return dataclasses.replace(base, secret_box=AesGcmSecretBox(b"k" * 32))


def _state(platform: Platform) -> object:
    database = platform.database
    if not isinstance(database, InMemoryDatabase):
        raise TypeError("memory platform expected")
    return copy.deepcopy(database.state._stores)


def _tenant(platform: Platform, name: str = "other") -> int:
    with platform.database.write() as uow:
        return uow.accounts.create_tenant(name, "free").id


def _subscription(platform: Platform, tenant_id: int = 1, name: str = "s") -> int:
    with platform.database.write() as uow:
        return uow.subscriptions.add(NewSubscription(tenant_id=tenant_id, name=name,
                                                     strategies=(), symbols=(),
                                                     min_score=None)).id


def test_webhook_is_sealed_with_a_secret_shown_once(platform: Platform) -> None:
    created = endpoints.create_endpoint(platform, 1, name=" hook ", kind="webhook",
                                        target="https://hooks.example.com/in/T0KEN?x=1")
    assert created.secret is not None and created.secret.startswith("whsec_")
    assert len(base64.b64decode(created.secret.removeprefix("whsec_"))) == 24
    ep = created.endpoint
    assert (ep.name, ep.kind, ep.enabled) == ("hook", "webhook", True)
    assert ep.target_hint == "https://hooks.example.com/…"
    assert b"T0KEN" not in ep.target_sealed and b"whsec_" not in (ep.secrets_sealed or b"")
    with platform.database.read() as uow:
        listed = endpoints.list_endpoints(uow, 1)
    assert listed == [ep]
    target, secrets = open_endpoint(platform, ep, platform.clock.now())
    assert target == "https://hooks.example.com/in/T0KEN?x=1"
    assert secrets == [created.secret]


def test_apprise_and_email_have_no_secret_and_redacted_hints(platform: Platform) -> None:
    apprise = endpoints.create_endpoint(platform, 1, name="tg", kind="apprise",
                                        target="tgram://123:SECRET/456")
    email = endpoints.create_endpoint(platform, 1, name="mail", kind="email",
                                      target="alice@example.com")
    assert apprise.secret is None and apprise.endpoint.secrets_sealed is None
    assert apprise.endpoint.target_hint == "tgram://…"
    assert email.endpoint.target_hint == "a***@example.com"


@pytest.mark.parametrize(("kind", "target", "message"), [
    ("webhook", "ftp://example.com/x", "https://"),
    ("webhook", "https://", "no host"),
    ("webhook", "https://user:pw@example.com/", "user or password"),
    ("webhook", "http://127.0.0.1:8080/hook", "SSRF"),
    ("webhook", "http://10.1.2.3/hook", "SSRF"),
    ("webhook", "http://localhost/hook", "SSRF"),
    ("webhook", "https://example.com/" + "a" * 3000, "printable"),
    ("webhook", "https://exa mple.com/", "printable"),
    ("apprise", "not a url", "printable"),
    ("apprise", "tgram:/x", "scheme://"),
    ("email", "nobody", "e-mail address"),
    ("sms", "+15550100", "kind must be one of"),
])
def test_bad_targets_store_nothing(platform: Platform, kind: str, target: str,
                                   message: str) -> None:
    before = _state(platform)
    with pytest.raises(BadInputError, match=message):
        endpoints.create_endpoint(platform, 1, name="x", kind=kind, target=target)
    assert _state(platform) == before


def test_private_targets_allowed_by_setting(platform: Platform) -> None:
    settings = platform.settings.model_copy(update={"delivery_allow_private_targets": True})
    allowed = dataclasses.replace(platform, settings=settings)
    created = endpoints.create_endpoint(allowed, 1, name="local", kind="webhook",
                                        target="http://127.0.0.1:9/hook")
    assert created.endpoint.target_hint == "http://127.0.0.1/…"


class _StrictChannel:
    """A channel whose own target check refuses everything but ``ok://``."""

    kind = "apprise"

    def send(self, target: str, secrets: Sequence[str], message_id: str, timestamp: int,
             subject: str, body: str, payload: bytes) -> SendResult:
        return SendResult(ok=True)

    def check_target(self, target: str) -> str:
        if not target.startswith("ok://"):
            raise BadInputError("unknown Apprise scheme")
        return target.upper()


def test_the_configured_channel_checks_its_targets(platform: Platform) -> None:
    with_channel = dataclasses.replace(platform, channels={"apprise": _StrictChannel()})
    before = _state(with_channel)
    with pytest.raises(BadInputError, match="unknown Apprise scheme"):
        endpoints.create_endpoint(with_channel, 1, name="x", kind="apprise",
                                  target="nosuch://x")
    assert _state(with_channel) == before
    created = endpoints.create_endpoint(with_channel, 1, name="x", kind="apprise",
                                        target="ok://topic")
    assert open_endpoint(with_channel, created.endpoint,
                         with_channel.clock.now())[0] == "OK://TOPIC"


def test_no_key_is_a_clear_error_and_stores_nothing(platform: Platform) -> None:
    keyless = dataclasses.replace(platform, secret_box=None)
    before = _state(keyless)
    with pytest.raises(BadInputError, match="SIGNALFACTORY_DELIVERY_KEY"):
        endpoints.create_endpoint(keyless, 1, name="x", kind="webhook",
                                  target="https://example.com/")
    assert _state(keyless) == before


def test_duplicate_name_conflicts(platform: Platform) -> None:
    endpoints.create_endpoint(platform, 1, name="x", kind="email", target="a@example.com")
    before = _state(platform)
    with pytest.raises(ConflictError):
        endpoints.create_endpoint(platform, 1, name="x", kind="email", target="b@example.com")
    assert _state(platform) == before


def test_rotation_keeps_the_previous_secret_for_a_day(platform: Platform) -> None:
    clock = platform.clock
    if not isinstance(clock, FixedClock):
        raise TypeError("fixed clock expected")
    created = endpoints.create_endpoint(platform, 1, name="h", kind="webhook",
                                        target="https://example.com/h")
    clock.advance(hours=1)
    rotated = endpoints.rotate_secret(platform, 1, created.endpoint.id)
    assert rotated.secret not in (None, created.secret)
    assert open_endpoint(platform, rotated.endpoint, clock.now())[1] == [rotated.secret,
                                                                          created.secret]
    box = platform.secret_box
    assert box is not None and rotated.endpoint.secrets_sealed is not None
    stored = decode_secrets(box.open(rotated.endpoint.secrets_sealed))
    assert stored[1].expires_at == clock.now() + timedelta(hours=24)
    later = clock.now() + timedelta(hours=24, seconds=1)
    assert open_endpoint(platform, rotated.endpoint, later)[1] == [rotated.secret]
    # only webhooks sign
    mail = endpoints.create_endpoint(platform, 1, name="m", kind="email",
                                     target="a@example.com")
    with pytest.raises(BadInputError, match="only webhooks"):
        endpoints.rotate_secret(platform, 1, mail.endpoint.id)


def test_other_tenants_endpoints_are_not_found(platform: Platform) -> None:
    other = _tenant(platform)
    theirs = endpoints.create_endpoint(platform, other, name="h", kind="webhook",
                                       target="https://example.com/h").endpoint.id
    before = _state(platform)
    for action in (lambda: endpoints.rotate_secret(platform, 1, theirs),
                   lambda: endpoints.set_endpoint_enabled(platform, 1, theirs, False),
                   lambda: endpoints.delete_endpoint(platform, 1, theirs),
                   lambda: endpoints.send_test(platform, 1, theirs)):
        with pytest.raises(NotFoundError):
            action()
    with platform.database.read() as uow, pytest.raises(NotFoundError):
        endpoints.get_endpoint(uow, 1, theirs)
    assert _state(platform) == before


def test_enable_disable_delete(platform: Platform) -> None:
    ep = endpoints.create_endpoint(platform, 1, name="h", kind="webhook",
                                   target="https://example.com/h").endpoint
    off = endpoints.set_endpoint_enabled(platform, 1, ep.id, False)
    assert not off.enabled and off.disabled_reason
    with pytest.raises(ConflictError, match="disabled"):
        endpoints.send_test(platform, 1, ep.id)
    on = endpoints.set_endpoint_enabled(platform, 1, ep.id, True)
    assert on.enabled and on.disabled_reason is None
    endpoints.delete_endpoint(platform, 1, ep.id)
    with pytest.raises(NotFoundError):
        endpoints.delete_endpoint(platform, 1, ep.id)


def test_controls_round_trip_and_tenancy(platform: Platform) -> None:
    other = _tenant(platform)
    sub = _subscription(platform)
    theirs_sub = _subscription(platform, other)
    mine = endpoints.create_endpoint(platform, 1, name="h", kind="webhook",
                                     target="https://example.com/h").endpoint.id
    theirs = endpoints.create_endpoint(platform, other, name="h", kind="webhook",
                                       target="https://example.com/h").endpoint.id
    wanted = DeliveryControls(endpoint_ids=(mine,), timezone="America/New_York",
                              quiet_start=22 * 60, quiet_end=6 * 60, max_per_hour=5,
                              digest_minutes=30, template="{{ signal.symbol }}")
    assert controls.set_controls(platform, 1, sub, wanted) == wanted
    with platform.database.read() as uow:
        assert controls.get_controls(uow, 1, sub) == wanted
        with pytest.raises(NotFoundError):
            controls.get_controls(uow, 1, theirs_sub)
    before = _state(platform)
    with pytest.raises(NotFoundError, match=f"no endpoint {theirs}"):
        controls.set_controls(platform, 1, sub, DeliveryControls(endpoint_ids=(theirs,)))
    with pytest.raises(NotFoundError):
        controls.set_controls(platform, 1, theirs_sub, DeliveryControls())
    assert _state(platform) == before


@pytest.mark.parametrize(("bad", "message"), [
    (DeliveryControls(timezone="Mars/Olympus"), "not a known time zone"),
    (DeliveryControls(timezone="../../etc/passwd"), "not a known time zone"),
    (DeliveryControls(quiet_start=60), "both"),
    (DeliveryControls(quiet_start=60, quiet_end=1440), "between 0 and 1439"),
    (DeliveryControls(quiet_start=-1, quiet_end=10), "between 0 and 1439"),
    (DeliveryControls(quiet_start=60, quiet_end=60), "differ"),
    (DeliveryControls(max_per_hour=0), "max_per_hour"),
    (DeliveryControls(digest_minutes=0), "digest_minutes"),
    (DeliveryControls(template="x" * 20_001), "template"),
])
def test_bad_controls_store_nothing(platform: Platform, bad: DeliveryControls,
                                    message: str) -> None:
    sub = _subscription(platform)
    before = _state(platform)
    with pytest.raises(BadInputError, match=message):
        controls.set_controls(platform, 1, sub, bad)
    assert _state(platform) == before


def test_campaign_requests(platform: Platform) -> None:
    other = _tenant(platform)
    sub = _subscription(platform)
    theirs = _subscription(platform, other)
    with platform.database.write() as uow:
        made = campaign_records.create_campaign(uow, 1, " News ", "Body", [sub, sub])
    assert (made.subject, made.subscription_ids, made.status) == ("News", (sub,), "pending")
    before = _state(platform)
    for subject, body, subs, error in (("", "b", [], BadInputError),
                                       ("s", "x" * 20_001, [], BadInputError),
                                       ("s" * 201, "b", [], BadInputError),
                                       ("s", "b", [theirs], NotFoundError)):
        with platform.database.write() as uow, pytest.raises(error):
            campaign_records.create_campaign(uow, 1, subject, body, subs)
    assert _state(platform) == before
    with platform.database.read() as uow:
        assert campaign_records.get_campaign(uow, 1, made.id) == made
        assert campaign_records.list_campaigns(uow, other) == []
        with pytest.raises(NotFoundError):
            campaign_records.get_campaign(uow, other, made.id)


def test_sealed_secret_envelope_is_json(platform: Platform) -> None:
    created = endpoints.create_endpoint(platform, 1, name="h", kind="webhook",
                                        target="https://example.com/h")
    box = platform.secret_box
    assert box is not None and created.endpoint.secrets_sealed is not None
    assert json.loads(box.open(created.endpoint.secrets_sealed)) == [
        {"secret": created.secret, "expires_at": None}]
