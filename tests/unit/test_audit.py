"""The audit chain in the pure core and the audit service on the in-memory platform."""

from __future__ import annotations

import dataclasses
import hashlib
import io
from datetime import UTC, datetime, timedelta, timezone

import pytest
import rfc8785

from signalfactory.domain.audit import (
    GENESIS_HASH,
    AuditEntry,
    AuditHead,
    ChainWalk,
    NewAuditEntry,
    canonical_time,
    chain,
)
from signalfactory.domain.errors import BadInputError
from signalfactory.services.accounts import tenants as accounts
from signalfactory.services.audit import log as audit
from signalfactory.services.strategies.catalog import add_strategy, ensure_builtins
from signalfactory.testing import memory_platform
from signalfactory.testing.audit import audit_store

T0 = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def _entries(n: int) -> list[AuditEntry]:
    made: list[AuditEntry] = []
    for i in range(n):
        new = NewAuditEntry(at=T0 + timedelta(seconds=i), actor="cli:ops", action="bot.started",
                            subject=f"bot:{i}", details={"n": i, "x": [1.5, None]},
                            tenant_id=None if i % 2 else 3)
        made.append(chain(new, AuditHead(made[-1].seq, made[-1].hash) if made else None))
    return made


def test_hash_is_sha256_of_the_rfc8785_canonical_entry_including_prev_hash() -> None:
    first, second = _entries(2)
    assert first.seq == 1 and first.prev_hash == GENESIS_HASH
    assert second.seq == 2 and second.prev_hash == first.hash
    body = {"seq": 2, "at": "2026-12-01T09:30:01.000000Z", "tenant_id": None,
            "actor": "cli:ops", "action": "bot.started", "subject": "bot:1",
            "details": {"x": [1.5, None], "n": 1}, "prev_hash": first.hash}
    assert second.hash == hashlib.sha256(rfc8785.dumps(body)).hexdigest()


def test_canonical_time_is_utc_with_microseconds() -> None:
    plus_two = datetime(2026, 12, 1, 11, 30, 0, 5, tzinfo=timezone(timedelta(hours=2)))
    assert canonical_time(plus_two) == "2026-12-01T09:30:00.000005Z"
    assert canonical_time(datetime(2026, 12, 1, 9, 30)) == "2026-12-01T09:30:00.000000Z"


def _walk(entries: list[AuditEntry], anchor: AuditHead | None = None) -> ChainWalk:
    walk = ChainWalk(anchor)
    walk.feed(entries)
    return walk


def test_an_intact_chain_verifies() -> None:
    report = _walk(_entries(5)).report()
    assert report.ok and report.entries == 5 and report.head is not None
    assert report.head.seq == 5


@pytest.mark.parametrize(("change", "words"), [
    ({"actor": "cli:intruder"}, "a field of this entry was changed"),
    ({"details": {"n": 2, "x": [1.5, None], "extra": 1}}, "a field of this entry was changed"),
    ({"at": T0 + timedelta(hours=1)}, "a field of this entry was changed"),
    ({"tenant_id": 4}, "a field of this entry was changed"),
])
def test_a_changed_field_is_named_at_its_entry(change: dict[str, object], words: str) -> None:
    entries = _entries(5)
    entries[2] = dataclasses.replace(entries[2], **change)  # type: ignore[arg-type]
    report = _walk(entries).report()
    assert report.broken is not None and report.broken.seq == 3
    assert words in report.broken.problem
    assert report.entries == 2  # the entries before it are intact


def test_a_rehashed_entry_breaks_the_link_of_the_next_one() -> None:
    entries = _entries(5)
    forged = dataclasses.replace(entries[2], actor="cli:intruder")
    entries[2] = dataclasses.replace(forged, hash=forged.computed_hash())
    report = _walk(entries).report()
    assert report.broken is not None and report.broken.seq == 4
    assert "does not match the hash of entry 3" in report.broken.problem


def test_a_deleted_entry_shows_as_a_gap() -> None:
    entries = _entries(6)
    del entries[2:4]
    report = _walk(entries).report()
    assert report.broken is not None and report.broken.seq == 5
    assert "entries 3..4 are missing" in report.broken.problem


def test_an_anchor_catches_entries_cut_off_the_end_and_a_rewritten_tail() -> None:
    entries = _entries(6)
    anchor = AuditHead(entries[5].seq, entries[5].hash)
    assert _walk(entries, anchor).report().ok
    cut = _walk(entries[:4], anchor).report()
    assert cut.broken is not None and cut.broken.seq == 5
    assert "deleted from the end" in cut.broken.problem
    replacement = chain(NewAuditEntry(at=T0, actor="x", action="a.b", subject="s", details={}),
                        AuditHead(entries[4].seq, entries[4].hash))
    rewritten = [*entries[:5], replacement]
    report = _walk(rewritten, anchor).report()
    assert report.broken is not None and report.broken.seq == 6
    assert "differs from the anchor" in report.broken.problem


def test_record_chains_entries_and_export_verifies_offline() -> None:
    platform = memory_platform()
    with platform.database.write() as uow:
        first = audit.record(uow, "cli:ops", "bot.started", "bot:1", {"symbols": ("BTC",)},
                             tenant_id=2, at=T0)
        second = audit.record(uow, "system", "kill_switch.engaged", "global:0", None)
    assert second.prev_hash == first.hash and first.details == {"symbols": ["BTC"]}
    report = audit.verify(platform)
    assert report.ok and report.entries == 2
    out = io.StringIO()
    assert audit.export(platform, out.write) == 2
    lines = out.getvalue().splitlines()
    assert audit.verify_lines(lines).ok
    assert audit.verify_lines(lines, anchor=AuditHead(2, second.hash)).ok
    tampered = [lines[0].replace('"bot:1"', '"bot:9"'), lines[1]]
    broken = audit.verify_lines(tampered).broken
    assert broken is not None and broken.seq == 1
    with pytest.raises(BadInputError, match="line 1 is not an audit entry"):
        audit.verify_lines(["{not json"])


def test_an_entry_rolls_back_with_its_transaction() -> None:
    platform = memory_platform()
    with pytest.raises(RuntimeError), platform.database.write() as uow:
        audit.record(uow, "system", "bot.started", "bot:1")
        raise RuntimeError("the action failed after recording")
    assert audit.head(platform) is None


@pytest.mark.parametrize(("args", "rule"), [
    (("cli", "Bot Started", "bot:1", {}), "audit_action"),
    (("cli", "bot", "bot:1", {}), "audit_action"),
    (("", "bot.started", "bot:1", {}), "audit_actor"),
    (("cli", "bot.started", "x" * 201, {}), "audit_subject"),
    (("cli", "bot.started", "bot:1", {"pnl": float("nan")}), "audit_details"),
    (("cli", "bot.started", "bot:1", {"id": 2**60}), "audit_details"),
    (("cli", "bot.started", "bot:1", {"when": object()}), "audit_details"),
])
def test_bad_entries_are_refused_and_nothing_is_stored(
        args: tuple[str, str, str, dict[str, object]], rule: str) -> None:
    platform = memory_platform()
    with pytest.raises(BadInputError) as caught, platform.database.write() as uow:
        audit.record(uow, *args)
    assert caught.value.rule == rule
    assert audit.head(platform) is None


def test_account_and_strategy_changes_are_audited() -> None:
    platform = memory_platform()
    now = platform.clock.now()
    with platform.database.write() as uow:
        tenant = accounts.create_tenant(uow, "acme")
        new, key_id = accounts.create_key(uow, tenant.id, "trader", "ci", now=now,
                                          actor="cli:ops")
        assert accounts.revoke_key(uow, key_id, now=now, actor="key:1:sf_live_x")
        assert not accounts.revoke_key(uow, key_id, now=now)  # once is audited, not twice
        accounts.set_tier(uow, "acme", "premium", actor="cli:ops")
        accounts.set_tier(uow, "acme", "premium", actor="cli:ops")  # no change, no entry
        add_strategy(uow, tenant.id, "mine", rule_text="entry: close > 0", created_by="cli")
        add_strategy(uow, tenant.id, "mine", rule_text="entry: close > 0")  # same: no version
        add_strategy(uow, tenant.id, "mine", rule_text="entry: close > 1")
    entries = audit_store(platform.database.state).entries  # type: ignore[attr-defined]
    assert [(e.action, e.subject, e.actor, e.tenant_id) for e in entries] == [
        ("api_key.created", f"api_key:{key_id}", "cli:ops", tenant.id),
        ("api_key.revoked", f"api_key:{key_id}", "key:1:sf_live_x", tenant.id),
        ("tenant.tier_changed", f"tenant:{tenant.id}", "cli:ops", tenant.id),
        ("strategy.version_created", entries[3].subject, "cli", tenant.id),
        ("strategy.version_created", entries[4].subject, "cli", tenant.id),
    ]
    assert entries[0].details == {"prefix": new.prefix, "role": "trader", "name": "ci"}
    assert new.secret not in repr(entries)  # the key itself never reaches the log
    assert entries[2].details == {"tenant": "acme", "from": "free", "to": "premium"}
    assert [e.details["version"] for e in entries[3:]] == [1, 2]
    assert audit.verify(platform).ok


def test_builtin_strategies_are_audited_once_as_the_system() -> None:
    platform = memory_platform()
    with platform.database.write() as uow:
        ensure_builtins(uow)
    with platform.database.write() as uow:
        ensure_builtins(uow)
    entries = audit_store(platform.database.state).entries  # type: ignore[attr-defined]
    assert entries and {e.actor for e in entries} == {"system"}
    assert len({e.subject for e in entries}) == len(entries)


def test_parse_anchor() -> None:
    assert audit.parse_anchor("7:" + "a" * 64) == AuditHead(7, "a" * 64)
    for bad in ("7", "0:" + "a" * 64, "x:" + "a" * 64, "7:" + "A" * 64, "7:abc"):
        with pytest.raises(BadInputError):
            audit.parse_anchor(bad)


def test_visible_tenant_default_admins_see_everything() -> None:
    assert audit.visible_tenant(1) is None
    assert audit.visible_tenant(5) == 5
