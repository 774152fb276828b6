"""Incremental SQLite backups: a backup a minute later writes only the chunks that changed,
the chunks are reused only while young, prune collects only old unreferenced chunks, and
`backup restore --to-time` picks the newest backup at or before the time (refusing a time
outside the window with the target unchanged)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from signalfactory.ops.backup.chunks import CHUNKS, GRACE, REUSE_WINDOW, ChunkWriter
from signalfactory.ops.backup.create import create_backup
from signalfactory.ops.backup.fetch import backup_key
from signalfactory.ops.backup.prune import Policy, prune_backups
from signalfactory.ops.backup.targets import open_target
from signalfactory.services.platform import Platform
from tests.helpers import cli, engine_of, fingerprint
from tests.integration.backup_fixtures import (  # noqa: F401 - fixtures by name
    add_signals,
    backup_env_fixture,
    parse_json,
    s3_dest_fixture,
    s3_endpoint_fixture,
    seed,
    wipe,
)

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])


def _bulk(platform: Platform, count: int = 2500) -> None:
    """A database of a few MiB (many chunks) in few rows, so checksums stay quick."""
    start = datetime(2020, 1, 1, tzinfo=UTC)
    add_signals(platform, [start + timedelta(hours=i) for i in range(count)])
    with engine_of(platform).begin() as conn:
        conn.execute(sa.text("UPDATE signals SET \"values\" = "
                             "json_object('pad', hex(randomblob(800)))"))


def _dest_bytes(dest: Path) -> int:
    return sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())


@pytest.fixture
def seeded(backup_env: dict[str, str], platform: Platform) -> Iterator[Platform]:
    seed(platform)
    yield platform


@pytest.fixture
def big(seeded: Platform) -> Platform:
    _bulk(seeded)
    return seeded


def test_a_backup_a_minute_later_writes_only_the_changed_chunks(
        big: Platform, tmp_path: Path, sf_env: dict[str, str]) -> None:
    dest = tmp_path / "b"
    first = create_backup(big, str(dest))
    after_first = _dest_bytes(dest)
    add_signals(big, [datetime(2026, 1, 1, tzinfo=UTC)])  # a minute of new work
    second = create_backup(big, str(dest))
    written = _dest_bytes(dest) - after_first
    print(f"\nfirst backup wrote {first.new_bytes} B ({after_first} B on disk), "
          f"the one after wrote {second.new_bytes} B ({written} B on disk)")
    assert first.new_bytes == first.size
    assert second.size >= first.size  # both list their whole content...
    assert written < after_first / 10  # ...but the second stored only what changed
    assert second.new_bytes is not None and 0 < second.new_bytes <= written
    listed = parse_json(cli("backup", "list", "--from", str(dest), "--json").stdout)
    assert [b["new_bytes"] for b in listed] == [first.new_bytes, second.new_bytes]
    # the second restores to exactly the live data, reassembled from shared chunks
    live = fingerprint()
    big.close()
    wipe(sf_env["SIGNALFACTORY_DATABASE_URL"], Path(sf_env["SIGNALFACTORY_HOME"]))
    restored = cli("backup", "restore", "--from", str(dest))
    assert restored.exit_code == 0, restored.output
    assert fingerprint() == live
    checked = cli("backup", "verify", "--from", str(dest), "--backup", first.id)
    assert checked.exit_code == 0, checked.output


def test_incremental_backups_on_s3(big: Platform, s3_dest: str) -> None:
    first = create_backup(big, s3_dest)
    add_signals(big, [datetime(2026, 1, 1, tzinfo=UTC)])
    second = create_backup(big, s3_dest)
    assert second.new_bytes is not None and first.new_bytes is not None
    assert second.new_bytes < first.new_bytes / 10
    verified = cli("backup", "verify", "--from", s3_dest, "--json")
    assert verified.exit_code == 0, verified.output
    assert parse_json(verified.stdout)["backup_id"] == second.id


def test_chunks_past_the_reuse_window_are_written_again(seeded: Platform,
                                                        tmp_path: Path) -> None:
    """A chunk older than 12 hours is sealed anew rather than trusted: prune may collect
    chunks a day old, and a backup must never list one it did not see young."""
    dest = tmp_path / "b"
    first = create_backup(seeded, str(dest))
    old = time.time() - (REUSE_WINDOW + timedelta(hours=1)).total_seconds()
    chunks = [p for p in (dest / CHUNKS).rglob("*.sfbk")]
    for path in chunks:
        os.utime(path, (old, old))
    second = create_backup(seeded, str(dest))
    assert second.new_bytes == first.new_bytes  # everything written again
    assert all(p.stat().st_mtime > old + 3600 for p in chunks)


def test_a_backup_that_outlived_the_reuse_window_is_refused(
        seeded: Platform, tmp_path: Path) -> None:
    target = open_target(str(tmp_path / "b"))
    writer = ChunkWriter(target, backup_key(seeded.settings), "zlib")
    writer.check_still_safe()  # reused nothing: safe
    writer.oldest_reused = datetime.now(UTC) - GRACE + timedelta(minutes=30)
    from signalfactory.domain.errors import OperationalError

    with pytest.raises(OperationalError, match="run it again"):
        writer.check_still_safe()


def test_prune_collects_only_chunks_no_kept_manifest_lists(seeded: Platform,
                                                           tmp_path: Path) -> None:
    dest = tmp_path / "b"
    first = create_backup(seeded, str(dest))
    add_signals(seeded, [datetime(2026, 1, 1, tzinfo=UTC)])
    second = create_backup(seeded, str(dest))
    only_first = {c for p in first.parts for c in p.chunks} - {
        c for p in second.parts for c in p.chunks}
    assert only_first
    policy = Policy(keep_last=1, daily=0, weekly=0, monthly=0)
    young = prune_backups(str(dest), policy)  # the first goes; its chunks are still young
    assert young.delete == [first.id] and young.chunks_deleted == []
    assert young.chunks_unreferenced_young == len(only_first)
    dry = prune_backups(str(dest), policy, now=datetime.now(UTC) + 2 * GRACE, dry_run=True)
    assert len(dry.chunks_deleted) == len(only_first)
    later = prune_backups(str(dest), policy, now=datetime.now(UTC) + 2 * GRACE)
    assert sorted(later.chunks_deleted) == sorted(dry.chunks_deleted)
    left = {p.name.removesuffix(".sfbk") for p in (dest / CHUNKS).rglob("*.sfbk")}
    assert left == {c for p in second.parts for c in p.chunks}
    assert cli("backup", "verify", "--from", str(dest)).exit_code == 0


def test_prune_deletes_no_chunk_while_a_manifest_is_unreadable(seeded: Platform,
                                                               tmp_path: Path) -> None:
    dest = tmp_path / "b"
    first = create_backup(seeded, str(dest))
    (dest / "sf-20200101T000000Z-abcdef").mkdir()
    (dest / "sf-20200101T000000Z-abcdef" / "manifest.json").write_text("{not json")
    swept = prune_backups(str(dest), Policy(keep_last=5, daily=0, weekly=0, monthly=0),
                          now=datetime.now(UTC) + 2 * GRACE)
    assert swept.chunks_deleted == [] and first.id in swept.keep


# -- restore --to-time ----------------------------------------------------------------------


@pytest.fixture
def two_backups(seeded: Platform, tmp_path: Path) -> Iterator[tuple[Path, Any, Any]]:
    dest = tmp_path / "b"
    first = create_backup(seeded, str(dest))
    time.sleep(1.1)  # backup ids carry the second: keep them apart
    add_signals(seeded, [datetime(2026, 1, 1, tzinfo=UTC)])
    second = create_backup(seeded, str(dest))
    add_signals(seeded, [datetime(2026, 1, 2, tzinfo=UTC)])  # the live data moves on
    seeded.close()
    yield dest, first, second


def test_restore_to_time_takes_the_newest_backup_at_or_before_it(
        two_backups: tuple[Path, Any, Any]) -> None:
    dest, first, second = two_backups
    between = first.created + (second.created - first.created) / 2
    result = cli("backup", "restore", "--from", str(dest), "--force", "--json",
                 "--to-time", between.isoformat())
    assert result.exit_code == 0, result.output
    report = parse_json(result.stdout)
    assert report["backup_id"] == first.id
    assert report["gap_seconds"] == pytest.approx((between - first.created).total_seconds(),
                                                  abs=1e-3)
    at_second = cli("backup", "restore", "--from", str(dest), "--force", "--json",
                    "--to-time", second.created.isoformat())
    assert parse_json(at_second.stdout)["backup_id"] == second.id


def test_restore_to_a_time_outside_the_window_is_refused(
        two_backups: tuple[Path, Any, Any]) -> None:
    dest, first, _second = two_backups
    cases = {(datetime.now(UTC) + timedelta(minutes=5)).isoformat(): "in the future",
             (first.created - timedelta(seconds=2)).isoformat(): "before the restore window",
             "2026-01-01T00:00:00": "no time zone", "yesterday": "not an ISO 8601 time"}
    before = fingerprint()
    for text, words in cases.items():
        result = cli("backup", "restore", "--from", str(dest), "--force", "--to-time", text)
        assert result.exit_code == 2, result.output
        assert words in result.stderr, result.stderr
    assert fingerprint() == before, "a refused restore changed the target database"
    empty = cli("backup", "restore", "--from", str(dest / "none"), "--force", "--to-time",
                first.created.isoformat())
    assert empty.exit_code == 2 and "no complete backup" in empty.stderr
    assert fingerprint() == before


def test_to_time_and_backup_together_are_refused(two_backups: tuple[Path, Any, Any]) -> None:
    dest, first, _second = two_backups
    before = fingerprint()
    result = cli("backup", "restore", "--from", str(dest), "--force", "--backup", first.id,
                 "--to-time", first.created.isoformat())
    assert result.exit_code == 2 and "not both" in result.stderr
    assert fingerprint() == before
    assert json.loads((dest / first.id / "manifest.json").read_text())["id"] == first.id
