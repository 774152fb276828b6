"""Bad input and faults: each refused with a message saying what is wrong, and the target
database left exactly as it was (store fingerprint before == after)."""

from __future__ import annotations

import errno
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from signalfactory.ops.backup import chunks as chunks_mod
from signalfactory.ops.backup import fetch as fetch_mod
from signalfactory.ops.backup import pgtools
from signalfactory.ops.backup.chunks import CHUNKS, chunk_object
from signalfactory.services.platform import Platform
from tests.helpers import cli, fingerprint
from tests.integration.backup_fixtures import (  # noqa: F401 - fixtures by name
    OTHER_KEY_HEX,
    backup_env_fixture,
    fill,
    parse_json,
    seed,
    tiny_disk,
)

# Refusals happen before any database is touched, the same code on both backends: most run on
# SQLite only, and PostgreSQL keeps one of each kind plus its own transactional rollback.
SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"])


@pytest.fixture
def backed_up(backup_env: dict[str, str], platform: Platform,
              tmp_path: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """A seeded database, one backup of it, and the live database changed afterwards, so a
    restore that went through would be visible in the fingerprint."""
    seed(platform)
    dest = tmp_path / "backups"
    created = cli("backup", "create", "--to", str(dest), "--json")
    assert created.exit_code == 0, created.output
    seed(platform, symbols=2, seed_=99)
    platform.close()
    yield dest, parse_json(created.stdout)


def _part(dest: Path, info: dict[str, Any], kind: str, index: int = 0) -> Path:
    """The stored object of a part; for an incremental backup, its chunk number ``index``."""
    manifest = json.loads((dest / info["id"] / "manifest.json").read_text())
    part = next(p for p in manifest["parts"] if p["kind"] == kind)
    if part.get("chunks"):
        return dest / CHUNKS / chunk_object(part["chunks"][index])
    return dest / info["id"] / part["object"]


def _database_part(dest: Path, info: dict[str, Any], index: int = 0) -> Path:
    return _part(dest, info, "sqlite" if info["backend"] == "sqlite" else "pg_dump", index)


def _refused(dest: Path, *words: str, code: int = 1, extra: tuple[str, ...] = ()) -> str:
    before = fingerprint()
    result = cli("backup", "restore", "--from", str(dest), "--force", *extra)
    assert result.exit_code == code, result.output
    for word in words:
        assert word in result.stderr, result.stderr
    assert fingerprint() == before, "a refused restore changed the target database"
    return str(result.stderr)


@SQLITE_ONLY
def test_wrong_key(backed_up: tuple[Path, dict[str, Any]],
                   monkeypatch: pytest.MonkeyPatch) -> None:
    dest, _info = backed_up
    monkeypatch.setenv("SIGNALFACTORY_BACKUP_KEY", OTHER_KEY_HEX)
    _refused(dest, "different backup key", "SIGNALFACTORY_BACKUP_KEY")
    verify = cli("backup", "verify", "--from", str(dest))
    assert verify.exit_code == 1 and "different backup key" in verify.stderr


@SQLITE_ONLY
def test_key_of_the_wrong_size_is_refused(backed_up: tuple[Path, dict[str, Any]],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    dest, _info = backed_up
    monkeypatch.setenv("SIGNALFACTORY_BACKUP_KEY", "c2hvcnQ=")  # base64 of b"short"
    _refused(dest, "5 bytes", "32 bytes", code=2)


@SQLITE_ONLY
def test_truncated_part(backed_up: tuple[Path, dict[str, Any]]) -> None:
    dest, info = backed_up
    part = _database_part(dest, info)
    data = part.read_bytes()
    part.write_bytes(data[: len(data) // 2])
    _refused(dest, "truncated", part.name)


def test_tampered_part(backed_up: tuple[Path, dict[str, Any]]) -> None:
    dest, info = backed_up
    part = _database_part(dest, info)
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0x01
    part.write_bytes(bytes(data))
    _refused(dest, "failed authentication", part.name)


@SQLITE_ONLY
def test_chunk_swapped_for_another_chunk(backed_up: tuple[Path, dict[str, Any]]) -> None:
    """Each chunk is authentic on its own; its keyed content address catches the swap."""
    dest, info = backed_up
    first, last = _database_part(dest, info), _database_part(dest, info, index=-1)
    assert first != last
    shutil.copyfile(last, first)
    _refused(dest, "content its name promises", first.name, extra=("--backup", info["id"]))


@SQLITE_ONLY
def test_tampered_manifest(backed_up: tuple[Path, dict[str, Any]]) -> None:
    dest, info = backed_up
    path = dest / info["id"] / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["tables"]["instruments"]["rows"] += 1
    path.write_text(json.dumps(manifest))
    _refused(dest, "manifest", "edited")


def test_missing_part(backed_up: tuple[Path, dict[str, Any]]) -> None:
    dest, info = backed_up
    kind = "bar_segment" if info["backend"] == "sqlite" else "pg_dump"
    part = _part(dest, info, kind)
    part.unlink()
    _refused(dest, "missing its", part.name)


@SQLITE_ONLY
def test_schema_mismatch(backed_up: tuple[Path, dict[str, Any]],
                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A release whose migrations went further than the backup's refuses it without --force."""
    dest, _info = backed_up
    from signalfactory.adapters.storage import migrate

    monkeypatch.setattr(migrate, "head_revision", lambda: "9999_newer")
    before = fingerprint()
    result = cli("backup", "restore", "--from", str(dest))
    assert result.exit_code == 1
    assert "schema revision" in result.stderr and "9999_newer" in result.stderr
    assert "--force" in result.stderr and "unchanged" in result.stderr
    assert fingerprint() == before


@SQLITE_ONLY
def test_version_mismatch_refused_unless_forced(backed_up: tuple[Path, dict[str, Any]],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import signalfactory

    dest, _info = backed_up
    monkeypatch.setattr(signalfactory, "__version__", "99.0.0")
    before = fingerprint()
    result = cli("backup", "restore", "--from", str(dest))
    assert result.exit_code == 1 and "made by Signal Factory 0." in result.stderr
    assert fingerprint() == before
    forced = cli("backup", "restore", "--from", str(dest), "--force")
    assert forced.exit_code == 0, forced.output
    assert fingerprint() != before


@SQLITE_ONLY
def test_disk_full_while_unpacking(backed_up: tuple[Path, dict[str, Any]],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC raised by the write of the first decrypted block (works on every backend)."""
    dest, _info = backed_up
    real = fetch_mod.decrypt_stream

    def filling(*args: Any, **kwargs: Any) -> Iterator[bytes]:
        for block in real(*args, **kwargs):
            yield block
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fetch_mod, "decrypt_stream", filling)
    monkeypatch.setattr(chunks_mod, "decrypt_stream", filling)
    _refused(dest, "no space left")


@SQLITE_ONLY
def test_disk_full_on_a_real_tiny_filesystem(backup_env: dict[str, str], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The database lives on a 2 MiB tmpfs that is nearly full: restore runs out of space."""
    from signalfactory.bootstrap import build_platform

    with tiny_disk(tmp_path / "disk", "2m") as disk:
        monkeypatch.setenv("SIGNALFACTORY_HOME", str(disk / "home"))
        monkeypatch.setenv("SIGNALFACTORY_DATABASE_URL", f"sqlite:///{disk / 'sf.db'}")
        platform = build_platform(migrate_db=True)
        seed(platform)
        dest = tmp_path / "backups"
        assert cli("backup", "create", "--to", str(dest)).exit_code == 0
        seed(platform, symbols=2, seed_=99)
        platform.close()
        fill(disk, leave=64 << 10)
        _refused(dest, "no space left")
        assert not list(disk.glob(".restore-*")), "staging was not cleaned up"


@SQLITE_ONLY
def test_disk_full_at_the_destination(backup_env: dict[str, str], platform: Platform,
                                      tmp_path: Path) -> None:
    seed(platform)
    with tiny_disk(tmp_path / "dest", "1m") as disk:
        fill(disk, leave=0)
        result = cli("backup", "create", "--to", str(disk / "backups"))
        assert result.exit_code == 1 and "no space left" in result.stderr
        listed = cli("backup", "list", "--from", str(disk / "backups"), "--json")
        assert parse_json(listed.stdout) == []


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
def test_postgres_restore_failing_midway_rolls_back(
        backed_up: tuple[Path, dict[str, Any]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """pg_restore's SQL runs in one transaction: an error after the old schema was dropped and
    half the data loaded still leaves the target as it was."""
    dest, _info = backed_up
    real = pgtools._tool("pg_restore")
    wrapper = tmp_path / "pg_restore"
    wrapper.write_text(f'#!/bin/sh\n"{real}" "$@"\necho "SELECT 1/0;"\n')
    wrapper.chmod(0o755)
    real_tool = pgtools._tool
    monkeypatch.setattr(pgtools, "_tool",
                        lambda name: str(wrapper) if name == "pg_restore" else real_tool(name))
    stderr = _refused(dest, "rolled back", "division by zero")
    assert "unchanged" in stderr
