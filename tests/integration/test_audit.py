"""The audit log on SQLite and PostgreSQL: append-only, serialised appends, tamper detection
by `signalfactory audit verify`, export, the newest hash in backup manifests, the API."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import sqlalchemy.exc

from signalfactory.domain.tenants import DEFAULT_TENANT_ID
from signalfactory.services.accounts import tenants as accounts
from signalfactory.services.audit import log as audit
from signalfactory.services.platform import Platform
from tests.api_harness import ApiHarness
from tests.helpers import cli, engine_of, fingerprint
from tests.integration.backup_fixtures import (  # noqa: F401 - fixtures by name
    backup_env_fixture,
    parse_json,
)


def _some_entries(platform: Platform) -> int:
    """Audited actions through the services: a tenant's key made and revoked, a tier change."""
    now = platform.clock.now()
    with platform.database.write() as uow:
        tenant = accounts.create_tenant(uow, "acme")
        _, key_id = accounts.create_key(uow, tenant.id, "trader", now=now, actor="cli:ops")
    with platform.database.write() as uow:
        accounts.revoke_key(uow, key_id, now=now, actor="cli:ops")
    with platform.database.write() as uow:
        accounts.set_tier(uow, "acme", "premium", actor="cli:ops")
    return tenant.id


def _disable_guard(conn: sa.Connection) -> None:
    """What someone with the database owner's rights can do: switch the append-only
    triggers off (the chain is what still catches them)."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("DROP TRIGGER audit_log_no_update")
        conn.exec_driver_sql("DROP TRIGGER audit_log_no_delete")
    else:
        conn.exec_driver_sql("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change")


def test_a_tampered_row_is_named_by_audit_verify(platform: Platform) -> None:
    _some_entries(platform)
    verified = cli("audit", "verify", "--json")
    assert verified.exit_code == 0, verified.output
    assert parse_json(verified.stdout)["entries"] == 3

    engine = engine_of(platform)
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), engine.begin() as conn:
        conn.exec_driver_sql("UPDATE audit_log SET actor = 'cli:intruder' WHERE seq = 2")
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM audit_log WHERE seq = 3")
    assert cli("audit", "verify").exit_code == 0  # both refused: nothing changed

    with engine.begin() as conn:
        _disable_guard(conn)
        conn.exec_driver_sql("UPDATE audit_log SET actor = 'cli:intruder' WHERE seq = 2")
    broken = cli("audit", "verify")
    assert broken.exit_code == 1
    assert "audit chain broken at entry 2:" in broken.stderr
    assert "a field of this entry was changed" in broken.stderr
    report = parse_json(cli("audit", "verify", "--json").stdout)
    assert (report["ok"], report["broken_seq"], report["entries"]) == (False, 2, 1)


def test_a_deleted_row_is_named_too(platform: Platform) -> None:
    _some_entries(platform)
    with engine_of(platform).begin() as conn:
        _disable_guard(conn)
        conn.exec_driver_sql("DELETE FROM audit_log WHERE seq = 2")
    broken = cli("audit", "verify")
    assert broken.exit_code == 1 and "entry 3: entries 2 are missing" in broken.stderr


def test_concurrent_appends_never_fork_the_chain(platform: Platform) -> None:
    threads, each = 4, 6
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def append(worker: int) -> None:
        try:
            start.wait()
            for i in range(each):
                with platform.database.write() as uow:
                    audit.record(uow, f"bot:{worker}", "order.placed", f"order:{worker}-{i}",
                                 {"worker": worker, "i": i}, tenant_id=DEFAULT_TENANT_ID)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    workers = [threading.Thread(target=append, args=(w,)) for w in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert not errors, errors
    report = audit.verify(platform)
    assert report.ok and report.entries == threads * each
    with engine_of(platform).connect() as conn:
        seqs = [r[0] for r in conn.exec_driver_sql("SELECT seq FROM audit_log ORDER BY seq")]
    assert seqs == list(range(1, threads * each + 1))


def test_an_entry_commits_with_its_action_or_not_at_all(platform: Platform) -> None:
    with pytest.raises(RuntimeError), platform.database.write() as uow:
        accounts.create_tenant(uow, "rolled-back")
        audit.record(uow, "cli:ops", "tenant.created", "tenant:x")
        raise RuntimeError("the action failed")
    assert audit.head(platform) is None


def test_export_verifies_offline_and_a_tampered_export_is_named(platform: Platform,
                                                               tmp_path: Path) -> None:
    tenant_id = _some_entries(platform)
    dest = tmp_path / "audit.jsonl"
    exported = cli("audit", "export", "--to", str(dest))
    assert exported.exit_code == 0, exported.output
    assert "3 audit entries exported" in exported.stderr
    lines = dest.read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3]
    assert all(json.loads(line)["tenant_id"] == tenant_id for line in lines)
    assert cli("audit", "verify", "--file", str(dest)).exit_code == 0
    dest.write_text("\n".join([lines[0], lines[1].replace("trader", "admin"), lines[2]]))
    broken = cli("audit", "verify", "--file", str(dest))
    assert broken.exit_code == 1 and "entry 2:" in broken.stderr
    only_default = cli("audit", "export", "--tenant", "default")
    assert only_default.exit_code == 0 and only_default.stdout == ""


def test_bad_input_exits_2_and_stores_nothing(platform: Platform) -> None:
    _some_entries(platform)
    before = fingerprint()
    for args in (("audit", "verify", "--anchor", "12"),
                 ("audit", "verify", "--anchor", "0:" + "a" * 64),
                 ("audit", "export", "--tenant", "nobody"),
                 ("audit", "export", "--after", "-1"),
                 ("audit", "verify", "--file", "/nonexistent/audit.jsonl")):
        result = cli(*args)
        assert result.exit_code == 2, (args, result.output)
    assert fingerprint() == before


def test_every_backup_manifest_records_the_newest_hash(backup_env: dict[str, str],
                                                       platform: Platform,
                                                       tmp_path: Path) -> None:
    _some_entries(platform)
    newest = audit.head(platform)
    assert newest is not None
    dest = str(tmp_path / "backups")
    created = cli("backup", "create", "--to", dest, "--json")
    assert created.exit_code == 0, created.output
    anchor = f"{newest.seq}:{newest.hash}"
    assert parse_json(created.stdout)["audit_head"] == anchor
    assert parse_json(cli("backup", "list", "--from", dest, "--json").stdout)[0][
        "audit_head"] == anchor
    assert cli("backup", "verify", "--from", dest).exit_code == 0  # the MAC covers it

    with platform.database.write() as uow:  # the log goes on after the backup
        audit.record(uow, "cli:ops", "bot.started", "bot:1")
    assert cli("audit", "verify", "--anchor", anchor).exit_code == 0
    with engine_of(platform).begin() as conn:  # the tail is cut off past the backup's head
        _disable_guard(conn)
        conn.exec_driver_sql(f"DELETE FROM audit_log WHERE seq >= {newest.seq}")
    assert cli("audit", "verify").exit_code == 0  # the chain alone cannot see a cut tail
    cut = cli("audit", "verify", "--anchor", anchor)
    assert cut.exit_code == 1 and "deleted from the end" in cut.stderr


def _entries(api: ApiHarness, key: str, **params: Any) -> list[dict[str, Any]]:
    response = api.client.get("/api/v1/audit", headers=api.auth(key), params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_audit_api_shows_operators_everything_and_tenants_their_own(platform: Platform
                                                                      ) -> None:
    with ApiHarness(platform) as api:
        acme, other = api.tenant("acme"), api.tenant("other")
        operator = api.key(DEFAULT_TENANT_ID, "admin")
        acme_admin, acme_trader = api.key(acme, "admin"), api.key(acme, "trader")
        api.key(other, "admin")
        with platform.database.write() as uow:
            audit.record(uow, "system", "kill_switch.engaged", "global:0", {"reason": "t"})
        everything = _entries(api, operator, limit=1000)
        assert {e["tenant_id"] for e in everything} >= {None, acme, other, DEFAULT_TENANT_ID}
        mine = _entries(api, acme_admin, limit=1000)
        assert mine and {e["tenant_id"] for e in mine} == {acme}
        assert len(mine) == 2 and {e["action"] for e in mine} == {"api_key.created"}

        first = api.client.get("/api/v1/audit", headers=api.auth(operator),
                               params={"limit": 2}).json()
        assert len(first["items"]) == 2 and first["next_after"] == first["items"][-1]["seq"]
        rest = _entries(api, operator, after=first["next_after"], limit=1000)
        assert [e["seq"] for e in first["items"] + rest] == [e["seq"] for e in everything]
        assert [e["action"] for e in _entries(api, operator, action="kill_switch.")] == [
            "kill_switch.engaged"]
        assert everything[1]["prev_hash"] == everything[0]["hash"]

        refused = api.client.get("/api/v1/audit", headers=api.auth(acme_trader))
        assert refused.status_code == 403
        assert refused.headers["content-type"] == "application/problem+json"
        for params in ({"limit": 0}, {"after": -1}, {"action": "DROP TABLE"}):
            bad = api.client.get("/api/v1/audit", headers=api.auth(operator), params=params)
            assert bad.status_code == 422, params
            assert bad.headers["content-type"] == "application/problem+json"
