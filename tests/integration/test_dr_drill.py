"""`dr drill` measures RPO as the canary gap and RTO as restore + verify, on SQLite and
PostgreSQL (no PITR configured: the newest regular backup), and fails naming a missed target.

A canary written by the scheduled ``ops.canary`` job is simulated by writing one directly,
backdated where a test needs "the newest backup holds data N seconds old".
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from signalfactory.adapters.storage.canaries import write_canary
from signalfactory.adapters.storage.tables import ops_canaries
from signalfactory.ops.backup.create import create_backup
from signalfactory.services.jobs.registry import ensure_tasks_loaded, get_task
from signalfactory.services.platform import Platform
from tests.helpers import cli, engine_of
from tests.integration.backup_fixtures import (  # noqa: F401 - fixtures by name
    backup_env_fixture,
    parse_json,
    seed,
)


def _canary(platform: Platform, age_seconds: float = 0.0) -> datetime:
    with engine_of(platform).begin() as conn:
        return write_canary(conn, "schedule",
                            datetime.now(UTC) - timedelta(seconds=age_seconds))


def _drill(dest: Path) -> tuple[int, dict[str, Any], str]:
    result = cli("dr", "drill", "--from", str(dest), "--json")
    return result.exit_code, parse_json(result.stdout), str(result.stderr)


def test_a_drill_right_after_a_backup_meets_its_targets(
        backup_env: dict[str, str], platform: Platform, tmp_path: Path) -> None:
    seed(platform)
    ensure_tasks_loaded(platform.settings.task_module_names)
    task = get_task("ops.canary")
    assert task is not None
    scheduled = task.fn(_Ctx(platform), {})  # type: ignore[arg-type]  # the 60 s job's work
    written = datetime.fromisoformat(str(scheduled["written_at"]))
    dest = tmp_path / "b"
    backup = create_backup(platform, str(dest))
    code, drill, stderr = _drill(dest)
    assert code == 0, stderr
    assert drill["ok"] is True and drill["missed"] == []
    assert drill["provider"] == "backup" and drill["restore_point"] == f"backup {backup.id}"
    assert datetime.fromisoformat(drill["newest_restored_canary"]) == written
    gap = (datetime.fromisoformat(drill["last_committed_canary"]) - written).total_seconds()
    assert drill["rpo_seconds"] == pytest.approx(gap, abs=1e-3)
    assert 0 < drill["rpo_seconds"] < drill["rpo_target_seconds"] == 300
    assert drill["rto_seconds"] == pytest.approx(drill["restore_seconds"]
                                                 + drill["verify_seconds"], abs=0.01)
    assert 0 < drill["rto_seconds"] < drill["rto_target_seconds"] == 900
    assert drill["rows"] > 100
    # no backup was taken by the drill; its canary is committed in the live database
    assert [p.name for p in dest.iterdir() if p.name.startswith("sf-")] == [backup.id]
    with engine_of(platform).connect() as conn:
        sources = conn.execute(sa.select(ops_canaries.c.source)
                               .order_by(ops_canaries.c.id)).scalars().all()
    assert sources == ["schedule", "drill"]


def test_rpo_is_the_canary_gap_not_the_backup_age(
        backup_env: dict[str, str], platform: Platform, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The newest backup is seconds old, but the newest data it holds is 400 s old (writes
    stopped reaching it): the drill reports 400 s, and fails its 300 s target naming it."""
    seed(platform)
    stale = _canary(platform, age_seconds=400)
    dest = tmp_path / "b"
    backup = create_backup(platform, str(dest))
    code, drill, stderr = _drill(dest)
    assert code == 1
    assert drill["ok"] is False
    gap = (datetime.fromisoformat(drill["last_committed_canary"]) - stale).total_seconds()
    assert drill["rpo_seconds"] == pytest.approx(gap, abs=1e-3)
    assert drill["rpo_seconds"] >= 400
    age = (datetime.fromisoformat(drill["last_committed_canary"]) - backup.created)
    assert age.total_seconds() < 300  # the backup itself was young
    assert "RPO" in stderr and "target 300 s" in stderr and "RTO" not in stderr
    # a looser target makes the same drill pass
    monkeypatch.setenv("SIGNALFACTORY_DR_RPO_TARGET_SECONDS", "3600")
    assert _drill(dest)[0] == 0


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_missed_rto_target_is_named(backup_env: dict[str, str], platform: Platform,
                                      tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    seed(platform)
    _canary(platform)
    dest = tmp_path / "b"
    create_backup(platform, str(dest))
    monkeypatch.setenv("SIGNALFACTORY_DR_RTO_TARGET_SECONDS", "0.000001")
    code, drill, stderr = _drill(dest)
    assert code == 1 and drill["missed"] and drill["missed"][0].startswith("RTO")
    assert "RTO" in stderr and "RPO" not in stderr


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_backup_without_a_canary_cannot_meet_the_rpo(
        backup_env: dict[str, str], platform: Platform, tmp_path: Path) -> None:
    seed(platform)
    dest = tmp_path / "b"
    create_backup(platform, str(dest))
    code, drill, stderr = _drill(dest)
    assert code == 1 and drill["rpo_seconds"] is None
    assert "holds no canary" in stderr


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_drill_without_backups_says_where_it_looked(
        backup_env: dict[str, str], platform: Platform, tmp_path: Path) -> None:
    result = cli("dr", "drill", "--from", str(tmp_path / "none"))
    assert result.exit_code != 0 and "no complete backup" in result.stderr
    unset = cli("dr", "drill")
    assert unset.exit_code == 2 and "SIGNALFACTORY_BACKUP_DEST" in unset.stderr


class _Ctx:
    """The part of a task context the canary task uses."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
