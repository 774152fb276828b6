"""Archive snapshots: a day's bars and signals as Parquet, a signed manifest, and a verify
that names every file that fails."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from signalfactory.services.platform import Platform
from tests.helpers import cli, engine_of
from tests.integration.backup_fixtures import add_signals, day, parse_json, seed

SEED = bytes(range(1, 33))
RAW_KEY = base64.b64encode(SEED).decode()


@pytest.fixture
def signing_env(sf_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SIGNALFACTORY_ARCHIVE_SIGNING_KEY", RAW_KEY)
    return RAW_KEY


def _first_day(platform: Platform) -> str:
    with engine_of(platform).connect() as conn:
        if platform.settings.is_sqlite:
            from signalfactory.adapters.storage.tables import bar_segments

            ns = conn.execute(sa.select(sa.func.min(bar_segments.c.min_ts))).scalar_one()
            from datetime import UTC, datetime

            return datetime.fromtimestamp(ns / 1e9, UTC).date().isoformat()
        return str(conn.exec_driver_sql("SELECT min(ts AT TIME ZONE 'UTC')::date FROM bars")
                   .scalar_one())


def _snapshot(platform: Platform, tmp_path: Path) -> tuple[Path, str]:
    seed(platform, symbols=4, bars=30)
    when = _first_day(platform)
    add_signals(platform, [day(when + "T00:00:00"), day(when + "T00:00:00").replace(hour=5)])
    result = cli("archive", "snapshot", "--date", when, "--to", str(tmp_path / "arch"), "--json")
    assert result.exit_code == 0, result.output
    return Path(parse_json(result.stdout)["path"]), when


def test_snapshot_and_verify(signing_env: str, platform: Platform, tmp_path: Path) -> None:
    folder, when = _snapshot(platform, tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    names = {f["name"]: f for f in manifest["files"]}
    assert set(names) == {"bars_1d.parquet", "signals.parquet"}
    bars = pq.read_table(folder / "bars_1d.parquet")
    assert bars.num_rows == 4 == names["bars_1d.parquet"]["rows"]  # one bar per symbol that day
    assert {str(t.date()) for t in bars.column("ts").to_pylist()} == {when}
    signals = pq.read_table(folder / "signals.parquet")
    assert signals.num_rows == 2 and json.loads(signals.column("values")[0].as_py())["rsi"] == 30

    ok = cli("archive", "verify", str(folder), "--json")
    assert ok.exit_code == 0, ok.output
    report = parse_json(ok.stdout)
    assert report["ok"] and report["pinned_key"] and sorted(report["checked"]) == sorted(names)


def test_verify_names_each_failing_file(signing_env: str, platform: Platform,
                                        tmp_path: Path) -> None:
    folder, _when = _snapshot(platform, tmp_path)
    data = bytearray((folder / "bars_1d.parquet").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "bars_1d.parquet").write_bytes(bytes(data))          # tampered
    (folder / "signals.parquet").unlink()                          # missing
    result = cli("archive", "verify", str(folder), "--json")
    assert result.exit_code == 1
    report = parse_json(result.stdout)
    assert report["signature"] == "ok"
    assert report["failures"] == {"bars_1d.parquet": "SHA-256 differs from the manifest (modified)",
                                  "signals.parquet": "missing"}
    assert "bars_1d.parquet" in result.stderr and "signals.parquet" in result.stderr


def test_truncated_file_and_edited_manifest(signing_env: str, platform: Platform,
                                            tmp_path: Path) -> None:
    folder, _when = _snapshot(platform, tmp_path)
    path = folder / "bars_1d.parquet"
    path.write_bytes(path.read_bytes()[:100])
    truncated = cli("archive", "verify", str(folder))
    assert truncated.exit_code == 1 and "bars_1d.parquet (size 100 bytes" in truncated.stderr

    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"][0]["size"] = 100
    manifest["files"][0]["sha256"] = __import__("hashlib").sha256(path.read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    edited = cli("archive", "verify", str(folder))
    assert edited.exit_code == 1
    assert "manifest.json (signature does not verify" in edited.stderr


@pytest.mark.parametrize("backend", ["sqlite"])
def test_pem_key_from_file_and_pinned_public_key(platform: Platform, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    pem_path = tmp_path / "signing.pem"
    done = subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out",
                           str(pem_path)], capture_output=True, check=False)
    if done.returncode != 0:  # no openssl binary: write the same PEM form ourselves
        pem_path.write_bytes(Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
    monkeypatch.setenv("SIGNALFACTORY_ARCHIVE_SIGNING_KEY_FILE", str(pem_path))
    folder, _when = _snapshot(platform, tmp_path)
    private = serialization.load_pem_private_key(pem_path.read_bytes(), None)
    public_pem = private.public_key().public_bytes(  # type: ignore[union-attr]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "pub.pem").write_bytes(public_pem)
    monkeypatch.delenv("SIGNALFACTORY_ARCHIVE_SIGNING_KEY_FILE")
    pinned = cli("archive", "verify", str(folder), "--public-key", str(tmp_path / "pub.pem"))
    assert pinned.exit_code == 0, pinned.output
    other = base64.b64encode(Ed25519PrivateKey.from_private_bytes(SEED).public_key()
                             .public_bytes(serialization.Encoding.Raw,
                                           serialization.PublicFormat.Raw)).decode()
    wrong = cli("archive", "verify", str(folder), "--public-key", other)
    assert wrong.exit_code == 1 and "signed by another key" in wrong.stderr
    unpinned = cli("archive", "verify", str(folder))
    assert unpinned.exit_code == 0 and "pin it with --public-key" in unpinned.stdout


@pytest.mark.parametrize("backend", ["sqlite"])
def test_without_a_signals_table(signing_env: str, platform: Platform,
                                 tmp_path: Path) -> None:
    with engine_of(platform).begin() as conn:
        conn.exec_driver_sql("DROP TABLE signals")
    seed(platform, symbols=2, bars=5)
    when = _first_day(platform)
    result = cli("archive", "snapshot", "--date", when, "--to", str(tmp_path), "--json")
    assert result.exit_code == 0, result.output
    report = parse_json(result.stdout)
    assert report["signals"] == "no signals table"
    assert [f["name"] for f in report["files"]] == ["bars_1d.parquet"]
    assert cli("archive", "verify", report["path"]).exit_code == 0
    again = cli("archive", "snapshot", "--date", when, "--to", str(tmp_path))
    assert again.exit_code == 2 and "--force" in again.stderr


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("key, words", [
    (None, "no archive signing key"),
    ("c2hvcnQ=", "32 raw bytes"),
    ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----", "PEM"),
])
def test_bad_signing_keys(key: str | None, words: str, sf_env: dict[str, str],
                          monkeypatch: pytest.MonkeyPatch) -> None:
    if key is None:
        monkeypatch.delenv("SIGNALFACTORY_ARCHIVE_SIGNING_KEY", raising=False)
    else:
        monkeypatch.setenv("SIGNALFACTORY_ARCHIVE_SIGNING_KEY", key)
    result = cli("archive", "snapshot", "--date", "2024-01-02")
    assert result.exit_code == 2 and words in result.stderr
    bad_date = cli("archive", "snapshot", "--date", "2024-13-45")
    assert bad_date.exit_code == 2 and "YYYY-MM-DD" in bad_date.stderr
