"""The create -> wipe -> restore -> compare cycle on SQLite and PostgreSQL, to a local
directory and to a local S3 server (moto on loopback), and a restore into a named database."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from signalfactory.services.platform import Platform
from tests.conftest import create_pg_database, drop_pg_database
from tests.helpers import cli, fingerprint
from tests.integration.backup_fixtures import (  # noqa: F401 - fixtures by name
    add_signals,
    backup_env_fixture,
    day,
    parse_json,
    s3_dest_fixture,
    s3_endpoint_fixture,
    seed,
    wipe,
)


def _round_trip(platform: Platform, dest: str, env: dict[str, str]) -> None:
    seed(platform)
    add_signals(platform, [day("2024-01-02"), day("2024-01-03")])
    before = fingerprint()
    created = cli("backup", "create", "--to", dest, "--json")
    assert created.exit_code == 0, created.output
    info = parse_json(created.stdout)
    assert info["rows"] > 100 and info["size_bytes"] > 0

    listed = parse_json(cli("backup", "list", "--from", dest, "--json").stdout)
    assert [b["id"] for b in listed] == [info["id"]]

    platform.close()
    wipe(env["SIGNALFACTORY_DATABASE_URL"], Path(env["SIGNALFACTORY_HOME"]))
    assert fingerprint() != before  # the wipe really lost the data

    restored = cli("backup", "restore", "--from", dest, "--json")
    assert restored.exit_code == 0, restored.output
    assert parse_json(restored.stdout)["backup_id"] == info["id"]
    assert fingerprint() == before
    assert not (Path(env["SIGNALFACTORY_HOME"]) / "restore-in-progress").exists()

    verified = cli("backup", "verify", "--from", dest, "--json")
    assert verified.exit_code == 0, verified.output
    assert parse_json(verified.stdout)["ok"] is True


def test_round_trip_local(backup_env: dict[str, str], platform: Platform,
                          tmp_path: Path) -> None:
    _round_trip(platform, str(tmp_path / "backups"), backup_env)


def test_round_trip_s3(backup_env: dict[str, str], platform: Platform, s3_dest: str) -> None:
    _round_trip(platform, s3_dest, backup_env)


def test_restore_into_a_named_new_database(backup_env: dict[str, str], platform: Platform,
                                           tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    seed(platform)
    before = fingerprint()
    dest = str(tmp_path / "b")
    assert cli("backup", "create", "--to", dest).exit_code == 0
    if platform.settings.is_sqlite:
        other_url, other_home = f"sqlite:///{tmp_path / 'other' / 'copy.db'}", tmp_path / "o"
        refused = cli("backup", "restore", "--from", dest, "--database-url", other_url)
        assert refused.exit_code == 2 and "--home" in refused.stderr  # live files are safe
        extra = ["--home", str(other_home)]
    else:
        other_url = create_pg_database()
        drop_pg_database(other_url)  # named, and it does not exist yet: restore creates it
        other_home, extra = tmp_path / "o", []
    try:
        result = cli("backup", "restore", "--from", dest, "--database-url", other_url, *extra)
        assert result.exit_code == 0, result.output
        monkeypatch.setenv("SIGNALFACTORY_DATABASE_URL", other_url)
        monkeypatch.setenv("SIGNALFACTORY_HOME", str(other_home))
        assert fingerprint() == before
    finally:
        if not platform.settings.is_sqlite:
            sa.create_engine(other_url).dispose()
            drop_pg_database(other_url)
