"""``signalfactory endpoints|deliveries|campaigns`` on SQLite and PostgreSQL: the lifecycle,
tenancy, and bad input (exit 2, a clear message, nothing stored)."""

from __future__ import annotations

import json

import pytest

from tests.api_harness import DELIVERY_TEST_KEY
from tests.helpers import cli, fingerprint

HOOK = "https://93.184.215.14/in/T0KEN-cli"
MAIL = "smtp://mail.example.com?from=alerts@example.com&to={}@example.com"


@pytest.fixture
def env(sf_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("SIGNALFACTORY_DELIVERY_KEY", DELIVERY_TEST_KEY)
    return sf_env


def _json(*args: str) -> object:
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_endpoint_lifecycle(env: dict[str, str]) -> None:
    made = _json("endpoints", "add", "desk", "--kind", "webhook", "--target", HOOK)
    assert isinstance(made, dict)
    secret, endpoint_id = made["secret"], str(made["id"])
    assert secret.startswith("whsec_")
    listing = cli("endpoints", "list", "--json")
    assert listing.exit_code == 0
    assert secret not in listing.stdout and "T0KEN" not in listing.stdout
    assert [e["id"] for e in json.loads(listing.stdout)["items"]] == [made["id"]]
    human = cli("endpoints", "list")
    assert human.exit_code == 0 and "desk" in human.stdout and "T0KEN" not in human.stdout
    shown = _json("endpoints", "show", endpoint_id)
    assert isinstance(shown, dict) and "secret" not in shown
    rotated = _json("endpoints", "rotate", endpoint_id)
    assert isinstance(rotated, dict) and rotated["secret"] not in (None, secret)
    off = _json("endpoints", "disable", endpoint_id)
    assert isinstance(off, dict) and off["enabled"] is False
    on = _json("endpoints", "enable", endpoint_id)
    assert isinstance(on, dict) and on["enabled"] is True
    assert cli("endpoints", "remove", endpoint_id).exit_code == 0
    gone = cli("endpoints", "show", endpoint_id)
    assert gone.exit_code == 2 and "no endpoint" in gone.stderr


def test_tenancy(env: dict[str, str]) -> None:
    assert cli("tenants", "create", "acme").exit_code == 0
    mine = _json("endpoints", "add", "x", "--kind", "email", "--target", MAIL.format("a"))
    assert isinstance(mine, dict)
    theirs = _json("endpoints", "add", "x", "--kind", "email", "--target", MAIL.format("b"),
                   "--tenant", "acme")
    assert isinstance(theirs, dict)
    before = fingerprint()
    for args in (("endpoints", "show"), ("endpoints", "disable"), ("endpoints", "rotate"),
                 ("endpoints", "remove")):
        refused = cli(*args, str(theirs["id"]))
        assert refused.exit_code == 2, (args, refused.output)
        assert "no endpoint" in refused.stderr
    assert fingerprint() == before
    unknown = cli("endpoints", "list", "--tenant", "nosuch")
    assert unknown.exit_code == 2


@pytest.mark.parametrize("args", [
    ("endpoints", "add", "x", "--kind", "webhook", "--target", "not a url"),
    ("endpoints", "add", "x", "--kind", "webhook", "--target", "http://127.0.0.1:9/hook"),
    ("endpoints", "add", "x", "--kind", "apprise", "--target", "no-scheme"),
    ("endpoints", "add", "x", "--kind", "sms", "--target", "+15550100"),
    ("campaigns", "send", "--subject", "", "--body", "b"),
    ("campaigns", "send", "--subject", "s", "--body", "x" * 20_001),
    ("campaigns", "send", "--subject", "s", "--body", "b", "--subscription", "999"),
    ("deliveries", "dlq", "replay"),
])
def test_bad_input_exits_2_and_stores_nothing(env: dict[str, str],
                                              args: tuple[str, ...]) -> None:
    before = fingerprint()
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert "error:" in result.stderr
    assert fingerprint() == before


def test_no_delivery_key_is_a_clear_error(sf_env: dict[str, str]) -> None:
    before = fingerprint()
    result = cli("endpoints", "add", "x", "--kind", "webhook", "--target", HOOK)
    assert result.exit_code == 2
    assert "SIGNALFACTORY_DELIVERY_KEY" in result.stderr
    assert fingerprint() == before


def test_campaigns(env: dict[str, str]) -> None:
    sent = _json("campaigns", "send", "--subject", "Daily", "--body", "Report")
    assert isinstance(sent, dict) and sent["subject"] == "Daily"
    listing = _json("campaigns", "list")
    assert isinstance(listing, dict)
    assert [c["id"] for c in listing["items"]] == [sent["id"]]
    shown = _json("campaigns", "show", str(sent["id"]))
    assert isinstance(shown, dict) and shown["status"] == sent["status"]
    assert cli("campaigns", "show", "999").exit_code == 2


def test_deliveries_and_dead_letter_queue(env: dict[str, str]) -> None:
    from signalfactory.bootstrap import build_platform
    from signalfactory.domain.delivery import DEAD, NewDelivery
    from signalfactory.domain.message_ids import new_message_id

    hook = _json("endpoints", "add", "h", "--kind", "webhook", "--target", HOOK)
    mail = _json("endpoints", "add", "m", "--kind", "email", "--target", MAIL.format("a"))
    assert isinstance(hook, dict) and isinstance(mail, dict)
    tested = _json("endpoints", "test", str(hook["id"]))
    assert isinstance(tested, dict)
    dead = [NewDelivery(id=new_message_id(), tenant_id=1, endpoint_id=mail["id"],
                        payload={"type": "endpoint.test"}, status=DEAD) for _ in range(2)]
    platform = build_platform()
    try:
        with platform.database.write() as uow:
            uow.deliveries.enqueue(dead)
    finally:
        platform.close()
    webhooks = _json("deliveries", "list", "--channel", "webhook")
    assert isinstance(webhooks, dict)
    assert [d["id"] for d in webhooks["items"]] == [tested["delivery_id"]]
    everything = _json("deliveries", "list")
    assert isinstance(everything, dict) and len(everything["items"]) == 3
    shown = _json("deliveries", "show", tested["delivery_id"])
    assert isinstance(shown, dict) and shown["payload"]["type"] == "endpoint.test"
    attempts = _json("deliveries", "attempts", tested["delivery_id"])
    assert attempts == {"items": []}
    dlq = _json("deliveries", "dlq", "list")
    assert isinstance(dlq, dict) and {d["id"] for d in dlq["items"]} == {d.id for d in dead}
    before = fingerprint()
    bad = cli("deliveries", "list", "--channel", "pigeon")
    assert bad.exit_code == 2 and "channel must be one of" in bad.stderr
    not_dead = cli("deliveries", "dlq", "replay", tested["delivery_id"])
    assert not_dead.exit_code == 2 and "not dead" in not_dead.stderr
    assert fingerprint() == before
    assert _json("deliveries", "dlq", "replay", dead[0].id) == {"replayed": 1}
    assert _json("deliveries", "dlq", "replay", "--all") == {"replayed": 1}
    assert _json("deliveries", "dlq", "list") == {"items": [], "next_after": None}
