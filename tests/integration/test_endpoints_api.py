"""Delivery endpoints, subscription delivery controls and campaigns over HTTP, on SQLite and
PostgreSQL: the lifecycle, roles, bad input (a 4xx problem and nothing stored) and secrets
that never appear in listings, logs or the database in clear."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from signalfactory.adapters.storage.checksums import store_fingerprint
from signalfactory.adapters.storage.unit_of_work import sql_database
from signalfactory.services.streaming.subscriptions import create_subscription
from tests.api_harness import BACKENDS, ApiHarness, module_platform

shared_platform = pytest.fixture(scope="module", params=BACKENDS)(module_platform)

HOOK = "https://93.184.215.14/in/T0KEN-abc123?sig=QUERYSECRET"


@pytest.fixture
def api(shared_platform: Any) -> Iterator[ApiHarness]:
    with ApiHarness(shared_platform) as harness:
        yield harness


#: written by every authenticated request (key last use, usage counters), not by the call
_PER_REQUEST = ("api_keys", "usage_counters", "idempotency_keys")


def _fingerprint(api: ApiHarness) -> Any:
    database = sql_database(api.platform.database)
    with database.engine.connect() as conn:
        found = store_fingerprint(conn, database.bar_store)
    tables = {k: v for k, v in found["tables"].items() if k not in _PER_REQUEST}
    assert "endpoints" in tables and "campaigns" in tables and "subscriptions" in tables
    return {"tables": tables, "bars": found["bars"]}


def _setup(api: ApiHarness) -> tuple[int, dict[str, str], dict[str, str]]:
    tenant = api.tenant()
    return (tenant, api.auth(api.key(tenant, "trader")),
            api.auth(api.key(tenant, "viewer")))


def test_endpoint_lifecycle(api: ApiHarness) -> None:
    _tenant, trader, viewer = _setup(api)
    made = api.client.post("/api/v1/endpoints", headers=trader,
                           json={"name": "desk", "kind": "webhook", "target": HOOK})
    assert made.status_code == 201, made.text
    assert made.headers["cache-control"] == "no-store"
    body = made.json()
    secret = body["secret"]
    assert secret.startswith("whsec_") and body["enabled"] is True
    assert body["target_hint"] == "https://93.184.215.14/…"
    endpoint_id = body["id"]

    listing = api.client.get("/api/v1/endpoints", headers=viewer)
    assert listing.status_code == 200
    assert [e["id"] for e in listing.json()["items"]] == [endpoint_id]
    one = api.client.get(f"/api/v1/endpoints/{endpoint_id}", headers=viewer)
    assert one.status_code == 200 and "secret" not in one.json()
    for text in (listing.text, one.text):
        assert secret not in text and "T0KEN" not in text and "QUERYSECRET" not in text

    # viewers read, never write
    refused = api.client.post(f"/api/v1/endpoints/{endpoint_id}/disable", headers=viewer)
    assert refused.status_code == 403

    rotated = api.client.post(f"/api/v1/endpoints/{endpoint_id}/rotate-secret",
                              headers=trader)
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["secret"] not in (None, secret)

    off = api.client.post(f"/api/v1/endpoints/{endpoint_id}/disable", headers=trader)
    assert off.status_code == 200 and off.json()["enabled"] is False
    assert off.json()["disabled_reason"]
    on = api.client.patch(f"/api/v1/endpoints/{endpoint_id}", headers=trader,
                          json={"enabled": True})
    assert on.status_code == 200 and on.json() | {"enabled": True} == on.json()
    assert on.json()["disabled_reason"] is None

    apprise = api.client.post("/api/v1/endpoints", headers=trader,
                              json={"name": "tg", "kind": "apprise",
                                    "target": "tgram://123456:BOTTOKEN/987"})
    assert apprise.status_code == 201, apprise.text
    assert apprise.json()["secret"] is None
    assert apprise.json()["target_hint"] == "tgram://…"
    not_webhook = api.client.post(f"/api/v1/endpoints/{apprise.json()['id']}/rotate-secret",
                                  headers=trader)
    assert not_webhook.status_code == 422
    assert not_webhook.headers["content-type"] == "application/problem+json"

    duplicate = api.client.post("/api/v1/endpoints", headers=trader,
                                json={"name": "desk", "kind": "email",
                                      "target": "smtp://mail.example.com?from=x@example.com"
                                                "&to=a@example.com"})
    assert duplicate.status_code == 409

    gone = api.client.delete(f"/api/v1/endpoints/{endpoint_id}", headers=trader)
    assert gone.status_code == 204
    assert api.client.get(f"/api/v1/endpoints/{endpoint_id}",
                          headers=viewer).status_code == 404
    assert api.client.delete(f"/api/v1/endpoints/{endpoint_id}",
                             headers=trader).status_code == 404


def test_idempotent_creation_replays_the_secret_without_storing_it_in_clear(
        api: ApiHarness) -> None:
    _tenant, trader, _viewer = _setup(api)
    headers = {**trader, "Idempotency-Key": "create-desk-1"}
    body = {"name": "idem", "kind": "webhook", "target": HOOK}
    first = api.client.post("/api/v1/endpoints", headers=headers, json=body)
    again = api.client.post("/api/v1/endpoints", headers=headers, json=body)
    assert first.status_code == again.status_code == 201
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json() == first.json()
    assert "x-signalfactory-stored-sealed" not in again.headers
    _assert_not_in_database(api, first.json()["secret"])


def _assert_not_in_database(api: ApiHarness, secret: str) -> None:
    url = api.platform.settings.database_url
    if not url.startswith("sqlite:///"):
        return  # the SQLite file is what can be grepped; PostgreSQL is checked by rows
    path = Path(url.removeprefix("sqlite:///"))
    data = b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())
    assert len(data) > 10_000  # the file really was read
    for needle in (secret, secret.removeprefix("whsec_"), "T0KEN-abc123", "QUERYSECRET",
                   "BOTTOKEN"):
        assert needle.encode() not in data, needle


def test_secrets_never_in_clear_in_the_database_or_logs(
        api: ApiHarness, caplog: pytest.LogCaptureFixture) -> None:
    _tenant, trader, viewer = _setup(api)
    caplog.set_level(logging.DEBUG)
    made = api.client.post("/api/v1/endpoints", headers=trader,
                           json={"name": "grep", "kind": "webhook", "target": HOOK})
    secret = made.json()["secret"]
    rotated = api.client.post(f"/api/v1/endpoints/{made.json()['id']}/rotate-secret",
                              headers=trader).json()["secret"]
    api.client.post("/api/v1/endpoints", headers=trader,
                    json={"name": "tg", "kind": "apprise",
                          "target": "tgram://123456:BOTTOKEN/987"})
    api.client.get("/api/v1/endpoints", headers=viewer)
    api.platform.close()  # flush SQLite's WAL into the file being grepped
    _assert_not_in_database(api, secret)
    _assert_not_in_database(api, rotated)
    for record in caplog.records:
        text = record.getMessage() + repr(record.__dict__)
        assert secret not in text and rotated not in text and "T0KEN" not in text


@pytest.mark.parametrize("body", [
    {"name": "x", "kind": "webhook", "target": "not a url"},
    {"name": "x", "kind": "webhook", "target": "ftp://example.com/file"},
    {"name": "x", "kind": "webhook", "target": "http://127.0.0.1:8080/hook"},
    {"name": "x", "kind": "webhook", "target": "http://192.168.1.10/hook"},
    {"name": "x", "kind": "webhook", "target": "https://example.com/" + "a" * 3000},
    {"name": "x", "kind": "apprise", "target": "no-scheme-here"},
    {"name": "x", "kind": "email", "target": "nobody"},
    {"name": "x", "kind": "sms", "target": "+15550100"},
    {"name": "", "kind": "webhook", "target": "https://example.com/"},
    {"name": "x", "kind": "webhook", "target": "https://example.com/", "extra": 1},
])
def test_bad_endpoints_are_refused_and_nothing_is_stored(api: ApiHarness,
                                                         body: dict[str, Any]) -> None:
    _tenant, trader, _viewer = _setup(api)
    before = _fingerprint(api)
    refused = api.client.post("/api/v1/endpoints", headers=trader, json=body)
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["detail"]
    assert _fingerprint(api) == before


def test_unknown_apprise_scheme_refused_by_the_channel(api: ApiHarness) -> None:
    assert "apprise" in api.platform.channels, "bootstrap builds the Apprise channel"
    _tenant, trader, _viewer = _setup(api)
    before = _fingerprint(api)
    refused = api.client.post("/api/v1/endpoints", headers=trader,
                              json={"name": "x", "kind": "apprise", "target": "nosuch://x"})
    assert refused.status_code == 422, refused.text
    assert _fingerprint(api) == before


def test_subscription_delivery_controls(api: ApiHarness) -> None:
    tenant, trader, viewer = _setup(api)
    other = api.tenant()
    sub = create_subscription(api.platform, tenant, "alerts").id
    hook = api.client.post("/api/v1/endpoints", headers=trader,
                           json={"name": "h", "kind": "webhook", "target": HOOK}).json()["id"]
    other_hook = api.client.post("/api/v1/endpoints", headers=api.auth(api.key(other)),
                                 json={"name": "h", "kind": "webhook",
                                       "target": HOOK}).json()["id"]
    path = f"/api/v1/subscriptions/{sub}/delivery"
    defaults = api.client.get(path, headers=viewer)
    assert defaults.status_code == 200
    assert defaults.json() == {"endpoint_ids": [], "timezone": "UTC", "quiet_start": None,
                               "quiet_end": None, "max_per_hour": None,
                               "digest_minutes": None, "template": None}
    wanted = {"endpoint_ids": [hook], "timezone": "Europe/Paris", "quiet_start": 1320,
              "quiet_end": 420, "max_per_hour": 20, "digest_minutes": None,
              "template": "{{ signal.symbol }} {{ signal.side }}"}
    put = api.client.put(path, headers=trader, json=wanted)
    assert put.status_code == 200, put.text
    assert put.json() == wanted
    assert api.client.get(path, headers=viewer).json() == wanted
    with api.platform.database.read() as uow:
        assert uow.endpoints.routes([tenant]) == {tenant: [(sub, hook)]}

    before = _fingerprint(api)
    for bad, status in (({"timezone": "Mars/Olympus"}, 422),
                        ({"timezone": "UTC", "quiet_start": 1440, "quiet_end": 10}, 422),
                        ({"quiet_start": 60}, 422),
                        ({"template": "x" * 20_001}, 422),
                        ({"max_per_hour": 0}, 422),
                        ({"endpoint_ids": [other_hook]}, 404)):
        refused = api.client.put(path, headers=trader, json=bad)
        assert refused.status_code == status, (bad, refused.text)
        assert refused.headers["content-type"] == "application/problem+json"
    assert api.client.put(path, headers=viewer, json=wanted).status_code == 403
    assert _fingerprint(api) == before


def test_campaigns_need_the_admin_role_and_check_their_input(api: ApiHarness) -> None:
    tenant = api.tenant()
    admin = api.auth(api.key(tenant, "admin"))
    trader = api.auth(api.key(tenant, "trader"))
    sub = create_subscription(api.platform, tenant, "c").id
    foreign_sub = create_subscription(api.platform, api.tenant(), "c").id
    assert api.client.get("/api/v1/campaigns", headers=trader).status_code == 403
    made = api.client.post("/api/v1/campaigns", headers=admin,
                           json={"subject": "Daily", "body": "Report", "subscription_ids":
                                 [sub]})
    assert made.status_code == 202, made.text
    assert made.json()["subscription_ids"] == [sub]
    assert 0 <= made.json()["progress"] <= 1
    one = api.client.get(f"/api/v1/campaigns/{made.json()['id']}", headers=admin)
    assert one.status_code == 200 and one.json()["subject"] == "Daily"
    listing = api.client.get("/api/v1/campaigns", headers=admin).json()["items"]
    assert [c["id"] for c in listing] == [made.json()["id"]]
    before = _fingerprint(api)
    for bad, status in (({"subject": "", "body": "b"}, 422),
                        ({"subject": "s", "body": "x" * 20_001}, 422),
                        ({"subject": "s", "body": "b", "subscription_ids": [foreign_sub]},
                         404)):
        refused = api.client.post("/api/v1/campaigns", headers=admin, json=bad)
        assert refused.status_code == status, (bad, refused.text)
    assert _fingerprint(api) == before


def test_openapi_publishes_the_webhook_payload(api: ApiHarness) -> None:
    schema = api.client.get("/openapi.json").json()
    assert set(schema["webhooks"]) == {"signal.created", "signal.digest", "signal.summary",
                                       "campaign.message", "endpoint.test"}
    payload = schema["components"]["schemas"]["WebhookSignalPayload"]
    assert set(payload["properties"]) >= {"type", "id", "symbol", "side", "price", "score"}
    for path in ("/api/v1/endpoints", "/api/v1/endpoints/{endpoint_id}/rotate-secret",
                 "/api/v1/deliveries", "/api/v1/deliveries/dlq",
                 "/api/v1/deliveries/dlq/replay", "/api/v1/campaigns",
                 "/api/v1/subscriptions/{subscription_id}/delivery"):
        assert path in schema["paths"], path


def test_test_send_deliveries_and_dead_letter_replay(api: ApiHarness) -> None:
    from signalfactory.domain.delivery import DEAD, NewDelivery
    from signalfactory.domain.message_ids import new_message_id

    tenant, trader, viewer = _setup(api)
    hook = api.client.post("/api/v1/endpoints", headers=trader,
                           json={"name": "h", "kind": "webhook", "target": HOOK}).json()["id"]
    sent = api.client.post(f"/api/v1/endpoints/{hook}/test", headers=trader)
    assert sent.status_code == 202, sent.text
    test_id = sent.json()["delivery_id"]
    one = api.client.get(f"/api/v1/deliveries/{test_id}", headers=viewer)
    assert one.status_code == 200, one.text
    assert one.json()["payload"]["type"] == "endpoint.test"
    assert one.json()["priority"] == 0 and one.json()["endpoint_id"] == hook
    assert isinstance(one.json()["attempt_log"], list)

    dead = [NewDelivery(id=new_message_id(), tenant_id=tenant, endpoint_id=hook,
                        payload={"type": "endpoint.test"}, status=DEAD) for _ in range(3)]
    with api.platform.database.write() as uow:
        uow.deliveries.enqueue(dead)
    listing = api.client.get("/api/v1/deliveries", headers=viewer,
                             params={"endpoint": hook, "limit": 2})
    assert listing.status_code == 200
    page = listing.json()
    assert len(page["items"]) == 2 and page["next_after"] == page["items"][-1]["id"]
    rest = api.client.get("/api/v1/deliveries", headers=viewer,
                          params={"endpoint": hook, "after": page["next_after"]}).json()
    ids = [d["id"] for d in page["items"] + rest["items"]]
    assert sorted(ids) == sorted([test_id, *(d.id for d in dead)]) and rest["next_after"] is None
    by_channel = {kind: api.client.get("/api/v1/deliveries", headers=viewer,
                                       params={"channel": kind}).json()["items"]
                  for kind in ("webhook", "email")}
    assert len(by_channel["webhook"]) == 4 and by_channel["email"] == []
    dlq = api.client.get("/api/v1/deliveries/dlq", headers=viewer).json()["items"]
    assert {d["id"] for d in dlq} == {d.id for d in dead}

    before = _fingerprint(api)
    for bad, status in (({}, 422), ({"ids": [dead[0].id], "all": True}, 422),
                        ({"ids": [test_id]}, 422),  # not dead
                        ({"ids": ["msg_nosuch"]}, 404), ({"endpoint_id": 999_999}, 404)):
        refused = api.client.post("/api/v1/deliveries/dlq/replay", headers=trader, json=bad)
        assert refused.status_code == status, (bad, refused.text)
    assert api.client.post("/api/v1/deliveries/dlq/replay", headers=viewer,
                           json={"all": True}).status_code == 403
    assert _fingerprint(api) == before

    one_back = api.client.post("/api/v1/deliveries/dlq/replay", headers=trader,
                               json={"ids": [dead[0].id]})
    assert one_back.json() == {"replayed": 1}
    rest_back = api.client.post("/api/v1/deliveries/dlq/replay", headers=trader,
                                json={"endpoint_id": hook})
    assert rest_back.json() == {"replayed": 2}
    assert api.client.get("/api/v1/deliveries/dlq", headers=viewer).json()["items"] == []
    assert api.client.get(f"/api/v1/deliveries/{dead[0].id}",
                          headers=viewer).json()["status"] == "pending"
