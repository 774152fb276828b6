"""Backups beyond the round trip: the manifest's content, refusing a non-empty target,
readiness during a restore, interrupted backups, prune on local and S3 and the exported gauges
(the DR drill: test_dr_drill.py; incremental chunks: test_backup_incremental.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from signalfactory.bootstrap import build_platform
from signalfactory.ops.backup import create as create_mod
from signalfactory.ops.backup import restore as restore_mod
from signalfactory.ops.backup import targets as targets_mod
from signalfactory.ops.backup.chunks import CHUNKS, chunk_object
from signalfactory.ops.backup.create import run_scheduled_backup
from signalfactory.ops.backup.fetch import list_backups
from signalfactory.ops.backup.manifest import MANIFEST_NAME
from signalfactory.ops.backup.prune import Policy, prune_backups
from signalfactory.services.platform import Platform
from tests.helpers import cli, engine_of, fingerprint
from tests.integration.backup_fixtures import (  # noqa: F401 - fixtures by name
    backup_env_fixture,
    parse_json,
    s3_dest_fixture,
    s3_endpoint_fixture,
    seed,
)

SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"])


def test_manifest_records_versions_hashes_and_checksums(
        backup_env: dict[str, str], platform: Platform, tmp_path: Path) -> None:
    from signalfactory import __version__
    from signalfactory.adapters.storage import migrate

    seed(platform)
    dest = tmp_path / "b"
    info = parse_json(cli("backup", "create", "--to", str(dest), "--json").stdout)
    manifest = json.loads((dest / info["id"] / MANIFEST_NAME).read_bytes())
    assert manifest["app_version"] == __version__
    assert manifest["schema_revision"] == migrate.head_revision()
    assert datetime.fromisoformat(manifest["created_at"]) <= datetime.now(UTC)
    assert manifest["tables"]["instruments"]["rows"] == 3
    bar_rows = (sum(t["rows"] for t in manifest["bars"].values())
                if manifest["bars"] else manifest["tables"]["bars"]["rows"])
    assert bar_rows == 3 * 40
    for part in manifest["parts"]:
        # SQLite backups are incremental: each part is a list of shared chunks
        stored = ([dest / CHUNKS / chunk_object(c) for c in part["chunks"]]
                  if platform.settings.is_sqlite else [dest / info["id"] / part["object"]])
        assert sum(f.stat().st_size for f in stored) == part["size"]
        assert len(part["sha256"]) == 64 and part["plain_sha256"] != part["sha256"]
        for f in stored:
            assert b"SYNTH" not in f.read_bytes()  # encrypted: no plaintext venue names
    if platform.settings.is_sqlite:  # the columnar store's Arrow files are parts of their own
        assert any(p["kind"] == "bar_segment" for p in manifest["parts"])


def test_restore_refuses_a_non_empty_target_unless_forced(
        backup_env: dict[str, str], platform: Platform, tmp_path: Path) -> None:
    seed(platform)
    dest = str(tmp_path / "b")
    assert cli("backup", "create", "--to", dest).exit_code == 0
    seed(platform, symbols=5, seed_=8)  # changes after the backup
    changed = fingerprint()
    refused = cli("backup", "restore", "--from", dest)
    assert refused.exit_code == 2
    assert "not empty" in refused.stderr and "--force" in refused.stderr
    assert fingerprint() == changed
    platform.close()
    forced = cli("backup", "restore", "--from", dest, "--force", "--json")
    assert forced.exit_code == 0, forced.output
    assert parse_json(forced.stdout)["replaced_existing"] is True
    fresh = build_platform()
    with engine_of(fresh).connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM instruments").scalar() == 3
    fresh.close()


@SQLITE_ONLY
def test_readiness_reports_the_restore_while_it_runs(
        backup_env: dict[str, str], platform: Platform, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from signalfactory.api.routers.health import readiness_checks

    seed(platform)
    dest = str(tmp_path / "b")
    cli("backup", "create", "--to", dest)
    seen: list[dict[str, str]] = []
    real_fetch = restore_mod.fetch_parts

    def watching_fetch(*args: object, **kwargs: object) -> object:
        seen.append(readiness_checks(platform))
        return real_fetch(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(restore_mod, "fetch_parts", watching_fetch)
    assert cli("backup", "restore", "--from", dest, "--force").exit_code == 0
    assert seen and "in progress" in seen[0]["restore"]
    assert "restore" not in readiness_checks(platform)


@SQLITE_ONLY
def test_an_interrupted_backup_is_never_listed(
        backup_env: dict[str, str], platform: Platform, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    seed(platform)
    dest = tmp_path / "b"

    def killed(*_args: object) -> None:
        raise KeyboardInterrupt  # the process dies between the last part and the manifest

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(targets_mod.LocalTarget, "write_manifest", killed)
        patch.setattr(create_mod, "_discard", lambda *_a: None)  # no cleanup after a kill
        create_mod.create_backup(platform, str(dest))
    # an incremental backup's content is all in the chunk store; its folder gets only the
    # manifest, which was never written
    written = sorted((dest / CHUNKS).rglob("*.sfbk"))
    assert written and [p.name for p in dest.iterdir()] == [CHUNKS]
    assert list_backups(str(dest)) == []
    assert parse_json(cli("backup", "list", "--from", str(dest), "--json").stdout) == []
    missing = cli("backup", "restore", "--from", str(dest), "--force")
    assert missing.exit_code == 2 and "no complete backup" in missing.stderr
    # prune removes the chunks once clearly abandoned (older than a day), not before: a
    # backup still being written references them without a manifest yet
    policy = Policy(keep_last=1, daily=0, weekly=0, monthly=0)
    now = prune_backups(str(dest), policy)
    assert now.chunks_deleted == [] and now.chunks_unreferenced_young == len(written)
    assert all(p.exists() for p in written)
    later = prune_backups(str(dest), policy, now=datetime.now(UTC) + timedelta(days=2))
    assert len(later.chunks_deleted) == len(written)
    assert not any(p.exists() for p in written)


@SQLITE_ONLY
def test_verify_names_a_damaged_part(backup_env: dict[str, str], platform: Platform,
                                     tmp_path: Path) -> None:
    seed(platform)
    dest = tmp_path / "b"
    info = parse_json(cli("backup", "create", "--to", str(dest), "--json").stdout)
    manifest = json.loads((dest / info["id"] / MANIFEST_NAME).read_bytes())
    part = next(p for p in manifest["parts"] if p["kind"] == "bar_segment")
    segment = dest / CHUNKS / chunk_object(part["chunks"][0])
    data = segment.read_bytes()
    segment.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # changed whatever it held
    result = cli("backup", "verify", "--from", str(dest))
    assert result.exit_code == 1
    assert segment.name in result.stderr and "authentication" in result.stderr


def _fake_backups(target: targets_mod.Target, ids: list[str]) -> None:
    for backup_id in ids:
        target.write_object(backup_id, "database.sqlite.sfbk", [b"x" * 10])
        target.write_manifest(backup_id, b"{}")


def test_prune_is_the_same_on_local_and_s3(tmp_path: Path, s3_dest: str) -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    # One backup every 2 days, 2024-01-01 .. 2024-03-19 (40 backups).
    ids = [f"sf-{(start + timedelta(days=2 * i)):%Y%m%dT%H%M%SZ}-{i:06x}" for i in range(40)]
    local = targets_mod.open_target(str(tmp_path / "local"))
    remote = targets_mod.open_target(s3_dest)
    for target in (local, remote):
        _fake_backups(target, ids)
    policy = Policy(keep_last=2, daily=5, weekly=3, monthly=2)
    dry = prune_backups(local, policy, dry_run=True)
    assert local.list_ids() == sorted(ids)  # a dry run deletes nothing
    results = [prune_backups(t, policy) for t in (local, remote)]
    assert results[0].to_dict() == results[1].to_dict() == dry.to_dict()
    kept_days = sorted(k[3:11] for k in results[0].keep)
    # last 2: 03-19, 03-17; daily 5: 03-19..03-11; weekly 3 (ISO weeks 12, 11, 10): 03-19,
    # 03-17, 03-09; monthly 2: 03-19 and February's newest, 02-28.
    assert kept_days == ["20240228", "20240309", "20240311", "20240313", "20240315",
                         "20240317", "20240319"]
    assert local.list_ids() == remote.list_ids() == sorted(results[0].keep)
    assert results[0].keep[ids[-1]] == ["last", "daily", "weekly", "monthly"]


@SQLITE_ONLY
def test_scheduled_backup_exports_the_gauges(backup_env: dict[str, str], platform: Platform,
                                             tmp_path: Path) -> None:
    seed(platform)
    manifest = run_scheduled_backup(platform, str(tmp_path / "b"), rpo_seconds=300)
    assert REGISTRY.get_sample_value("backup_last_success_timestamp_seconds") == \
        pytest.approx(manifest.created.timestamp())
    assert REGISTRY.get_sample_value("signalfactory_backup_size_bytes") == manifest.size
    assert REGISTRY.get_sample_value("signalfactory_backup_rpo_seconds") == 300


def test_s3_multipart_upload_and_abort(s3_dest: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Parts bigger than one piece go up as a multipart upload; a stream that fails midway
    leaves no object behind (the upload is aborted)."""
    monkeypatch.setattr(targets_mod.S3Target, "PIECE", 5 << 20)  # S3's smallest piece
    target = targets_mod.open_target(s3_dest)
    payload = bytes(range(256)) * (11 * 4096)  # 11 MiB: three pieces
    written = target.write_object("sf-20240101T000000Z-000001", "big.sfbk",
                                  (payload[i:i + 65536] for i in range(0, len(payload), 65536)))
    assert written == len(payload)
    with target.open_object("sf-20240101T000000Z-000001", "big.sfbk") as body:
        assert body.read() == payload

    def failing() -> object:
        yield payload[: 6 << 20]
        raise OSError("source went away")

    with pytest.raises(OSError, match="source went away"):
        target.write_object("sf-20240101T000000Z-000002", "big.sfbk", failing())  # type: ignore[arg-type]
    with pytest.raises(targets_mod.MissingPartError), \
            target.open_object("sf-20240101T000000Z-000002", "big.sfbk"):
        pass
    uploads = target.client.list_multipart_uploads(Bucket=target.bucket)  # type: ignore[attr-defined]
    assert not uploads.get("Uploads")


@SQLITE_ONLY
def test_a_backup_job_run_by_another_process_is_exported_by_the_api(
        backup_env: dict[str, str], platform: Platform, tmp_path: Path) -> None:
    """Scheduled backups run in workers Prometheus does not scrape: the API exports the newest
    succeeded backup job's snapshot time and size, and the configured RPO."""
    import os
    import subprocess
    import sys

    from prometheus_client.parser import text_string_to_metric_families

    from signalfactory.services.jobs.registry import submit
    from tests.api_harness import ApiHarness

    seed(platform)
    dest = tmp_path / "b"
    submit(platform, "backup", {"dest": str(dest)})
    worker = subprocess.run(
        [sys.executable, "-c",
         "from signalfactory.workers.runner import EmbeddedRunner\n"
         "from signalfactory.bootstrap import build_platform\n"
         "from signalfactory.services.jobs.registry import ensure_tasks_loaded\n"
         "worker = build_platform()\n"
         "ensure_tasks_loaded(worker.settings.task_module_names)\n"
         "outcome = EmbeddedRunner(worker).run_next()\n"
         "assert outcome is not None and outcome.status == 'succeeded', outcome\n"],
        env={**os.environ, **backup_env}, capture_output=True, text=True, timeout=120)
    assert worker.returncode == 0, worker.stdout + worker.stderr
    (listed,) = list_backups(str(dest))
    made = listed.to_dict()

    import dataclasses

    serving = dataclasses.replace(platform, settings=platform.settings.model_copy(
        update={"backup_dest": str(dest), "backup_rpo_seconds": 600}))
    with ApiHarness(serving) as api:
        text = api.client.get("/metrics").text
    samples = {s.name: s.value for family in text_string_to_metric_families(text)
               for s in family.samples}
    assert samples["backup_last_success_timestamp_seconds"] == \
        pytest.approx(datetime.fromisoformat(str(made["created_at"])).timestamp(), abs=1e-3)
    assert samples["signalfactory_backup_size_bytes"] == made["size_bytes"]
    assert samples["signalfactory_backup_rpo_seconds"] == 600
