"""`signalfactory tenants ...` and `signalfactory keys ...` on both backends."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from signalfactory.adapters.storage.tables import api_keys
from signalfactory.api import create_app
from signalfactory.bootstrap import build_platform
from signalfactory.domain.api_keys import digest, is_well_formed
from tests.helpers import cli, engine_of


def test_tenants_and_keys_lifecycle(sf_env: dict[str, str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNALFACTORY_BAR_STORE", "columnar")  # bars play no part here
    created = cli("tenants", "create", "acme", "--tier", "premium", "--json")
    assert created.exit_code == 0, created.output
    assert json.loads(created.stdout)["tier"] == "premium"
    assert cli("tenants", "create", "acme").exit_code == 2
    bad_tier = cli("tenants", "create", "other", "--tier", "gold")
    assert bad_tier.exit_code == 2 and "free, premium, enterprise" in bad_tier.stderr
    tenants = json.loads(cli("tenants", "list", "--json").stdout)
    assert [(t["name"], t["tier"]) for t in tenants] == [("default", "enterprise"),
                                                         ("acme", "premium")]

    made = cli("keys", "create", "--tenant", "acme", "--role", "admin", "--name", "ci")
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip()
    assert is_well_formed(secret) and "not shown again" in made.stderr
    assert cli("keys", "create", "--tenant", "nobody", "--role", "admin").exit_code == 2
    assert cli("keys", "create", "--tenant", "acme", "--role", "root").exit_code == 2
    second = json.loads(cli("keys", "create", "--tenant", "acme", "--role", "viewer",
                            "--json").stdout)
    assert is_well_formed(second["key"]) and second["prefix"] == second["key"][:16]

    # Only the digest is stored; the key itself appears nowhere in the database.
    platform = build_platform()
    with engine_of(platform).connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(api_keys))]
    assert {r["digest"] for r in rows} == {digest(secret), digest(second["key"])}
    assert not any(secret in str(v) for r in rows for v in r.values())

    listing = cli("keys", "list", "--tenant", "acme")
    assert listing.exit_code == 0 and secret[:16] in listing.stdout
    assert secret not in listing.stdout and secret[16:26] not in listing.stdout
    listed = json.loads(cli("keys", "list", "--json").stdout)
    assert [(k["prefix"], k["role"], k["status"]) for k in listed] == [
        (secret[:16], "admin", "active"), (second["prefix"], "viewer", "active")]

    with TestClient(create_app(platform=platform)) as client:
        headers = {"Authorization": f"Bearer {secret}"}
        assert client.get("/api/v1/instruments", headers=headers).status_code == 200
        revoked = cli("keys", "revoke", secret[:16])
        assert revoked.exit_code == 0 and "revoked" in revoked.stdout
        assert client.get("/api/v1/instruments", headers=headers).status_code == 401
    again = json.loads(cli("keys", "revoke", secret[:16], "--json").stdout)
    assert again["already_revoked"] is True
    assert cli("keys", "revoke", str(second["id"])).exit_code == 0
    assert cli("keys", "revoke", "999").exit_code == 2
    assert cli("keys", "revoke", "nonsense").exit_code == 2
    statuses = {k["status"] for k in json.loads(cli("keys", "list", "--json").stdout)}
    assert statuses == {"revoked"}
    assert json.loads(cli("tenants", "list", "--json").stdout)[1]["active_keys"] == 0
    assert cli("tenants", "set-tier", "acme", "free").exit_code == 0
    assert json.loads(cli("tenants", "list", "--json").stdout)[1]["tier"] == "free"
    platform.close()
