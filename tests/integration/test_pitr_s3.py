"""Point-in-time recovery into an S3 repository: pgBackRest against moto's S3 over HTTPS.

pgBackRest's S3 driver speaks TLS only, so moto is served here with a throwaway self-signed
certificate, which reaches pgBackRest as ``AWS_CA_BUNDLE`` -> ``repo1-storage-ca-file`` (TLS
stays verified). A private PostgreSQL 15 cluster archives its WAL into the bucket; a restore
to a moment between two rows holds the first only, and the marker in the bucket refuses
another deployment.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from signalfactory.domain.errors import BadInputError
from signalfactory.settings import Settings
from tests.conftest import IN_CI
from tests.integration.backup_fixtures import KEY_B64
from tests.integration.test_pitr import (
    BIN,
    _as_postgres,
    _free_port,
    _missing,
    _wait_archived,
    _write_row,
    labels_in,
)

pytestmark = [pytest.mark.xdist_group("pitr")]

_AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret",
        "AWS_DEFAULT_REGION": "us-east-1"}


def _aws_env(monkeypatch: pytest.MonkeyPatch, endpoint: str, ca: Path | None) -> None:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SHARED_CREDENTIALS_FILE",
                 "AWS_CONFIG_FILE", "AWS_ENDPOINT_URL_S3", "AWS_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in _AWS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    if ca is not None:
        monkeypatch.setenv("AWS_CA_BUNDLE", str(ca))


def _pg_settings(**more: object) -> Settings:
    return Settings(database_url="postgresql+psycopg://postgres@127.0.0.1:5999/postgres",
                    backup_key=KEY_B64, pitr_pg_data=Path("/tmp/sf-no-data"),
                    trading_report_cron="", anomaly_scan_cron="", retention_cron="", **more)


def test_s3_repository_options_come_from_the_backup_s3_conventions(
        monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("boto3", reason="boto3 is needed for s3:// repositories")
    from signalfactory.ops.backup.pitr_config import config_text, pitr_config

    _aws_env(monkeypatch, "https://s3.example.test:9443", Path("/etc/ssl/private-ca.pem"))
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token")
    cfg = pitr_config(_pg_settings(pitr_repo="s3://sf-bucket/pitr/prod/"))
    assert cfg.repo == "s3://sf-bucket/pitr/prod" and cfg.repo_dir is None
    assert cfg.marker_where == "s3://sf-bucket/pitr/prod/signalfactory-pitr.json"
    lines = set(config_text(cfg).splitlines())
    assert {"repo1-type=s3", "repo1-path=/pitr/prod", "repo1-s3-bucket=sf-bucket",
            "repo1-s3-region=us-east-1", "repo1-s3-endpoint=s3.example.test",
            "repo1-storage-port=9443", "repo1-s3-key=testing",
            "repo1-s3-key-secret=testing-secret", "repo1-s3-token=session-token",
            "repo1-s3-uri-style=path", "repo1-storage-ca-file=/etc/ssl/private-ca.pem",
            "repo1-cipher-type=aes-256-cbc"} <= lines
    assert not any(line.startswith("repo1-path=/tmp") for line in lines)
    # On AWS itself: the regional endpoint, virtual-host style, the system's CAs.
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.delenv("AWS_CA_BUNDLE")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    lines = set(config_text(pitr_config(_pg_settings(pitr_repo="s3://b"))).splitlines())
    assert {"repo1-path=/", "repo1-s3-region=eu-west-1", "repo1-s3-uri-style=host",
            "repo1-s3-endpoint=s3.eu-west-1.amazonaws.com"} <= lines
    assert not any(line.startswith(("repo1-storage-ca-file", "repo1-storage-port"))
                   for line in lines)
    # pgBackRest speaks TLS only; other URLs are refused with what to set.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    with pytest.raises(BadInputError, match="AWS_ENDPOINT_URL to an https://"):
        pitr_config(_pg_settings(pitr_repo="s3://b/p"))
    for bad in ("s3:///p", "gs://b/p"):
        with pytest.raises(BadInputError, match="SIGNALFACTORY_PITR_REPO"):
            pitr_config(_pg_settings(pitr_repo=bad))


def _self_signed(into: Path) -> tuple[Path, Path]:
    """A throwaway certificate for localhost / 127.0.0.1 (also its own CA)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=2))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = into / "moto-cert.pem", into / "moto-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    cert_path.chmod(0o644)  # pgBackRest reads it as postgres
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


@pytest.fixture
def tls_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """moto's S3 over HTTPS on loopback; yields (bucket, the temporary base directory)."""
    # dev dependencies (moto[server] brings boto3): missing means a broken install, not a skip
    from moto.moto_server import werkzeug_app
    from werkzeug.serving import make_server

    base = Path(tempfile.mkdtemp(prefix="sf-pitr-s3-", dir="/tmp"))
    base.chmod(0o711)
    cert, key = _self_signed(base)
    port = _free_port()

    class CloseNotify(werkzeug_app.MotoRequestHandler):  # type: ignore[misc,name-defined]
        def finish(self) -> None:
            super().finish()
            # werkzeug closes every connection; without TLS close_notify first, pgBackRest's
            # OpenSSL reports "unexpected eof while reading" and retries until it gives up.
            with contextlib.suppress(OSError, ValueError):
                self.connection.settimeout(2)
                self.connection.unwrap()

    server = make_server("127.0.0.1", port,
                         werkzeug_app.DomainDispatcherApplication(
                             werkzeug_app.create_backend_app),
                         threaded=True, request_handler=CloseNotify,
                         ssl_context=(str(cert), str(key)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        _aws_env(monkeypatch, f"https://localhost:{port}", cert)
        import boto3

        bucket = f"sf-pitr-{uuid.uuid4().hex[:8]}"
        boto3.client("s3").create_bucket(Bucket=bucket)
        yield bucket, base
    finally:
        server.shutdown()
        thread.join(timeout=10)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.postgres
@pytest.mark.timeout(90)
def test_wal_archived_into_s3_restores_to_a_time_and_the_marker_refuses_others(
        tls_s3: tuple[str, Path]) -> None:
    problem = _missing()
    if problem:
        if IN_CI:
            pytest.fail(problem + "; CI=true requires it")
        pytest.skip(problem)
    import boto3

    from signalfactory.ops.backup.pitr import read_stanza, run_base_backup, setup_pitr
    from signalfactory.ops.backup.pitr_config import (
        RepositoryOwnerError,
        pitr_config,
        postgresql_conf_lines,
        write_marker,
    )
    from signalfactory.ops.backup.pitr_restore import restore_to_time

    bucket, base = tls_s3
    data, port = base / "data", _free_port()
    for sub in ("home", "sock"):
        (base / sub).mkdir(mode=0o711)
    data.mkdir(mode=0o700)
    for owned in (base / "sock", data):
        shutil.chown(owned, "postgres")
    settings = Settings(home=base / "home",
                        database_url=f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres",
                        backup_key=KEY_B64, pitr_repo=f"s3://{bucket}/pitr", pitr_pg_data=data,
                        pitr_pg_socket_dir=base / "sock", pitr_os_user="postgres",
                        pitr_pg_bin_dir=BIN, trading_report_cron="", anomaly_scan_cron="",
                        retention_cron="")
    engine: sa.Engine | None = None
    try:
        _as_postgres(str(BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                     "--no-sync")
        conf = [line for line in postgresql_conf_lines(pitr_config(settings))
                if not line.startswith("archive_timeout")]
        conf += [f"port = {port}", "listen_addresses = '127.0.0.1'",
                 f"unix_socket_directories = '{base / 'sock'}'", "archive_timeout = 1",
                 "fsync = off"]
        with (data / "postgresql.conf").open("a") as fh:
            fh.write("\n".join(conf) + "\n")
        _as_postgres(str(BIN / "pg_ctl"), "-D", str(data), "-l", str(base / "sock" / "pg.log"),
                     "-w", "start")
        started = time.monotonic()
        report = setup_pitr(settings)
        assert report.repo == f"s3://{bucket}/pitr"
        keys = {o["Key"] for o in boto3.client("s3").list_objects_v2(
            Bucket=bucket, Prefix="pitr/").get("Contents", [])}
        assert "pitr/signalfactory-pitr.json" in keys
        assert any(k.startswith("pitr/backup/signalfactory/backup.info") for k in keys)
        engine = sa.create_engine(settings.resolved_database_url)
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE pitr_rows (label text PRIMARY KEY)")
        run_base_backup(settings, "full")
        time.sleep(1.1)  # the window starts the second after the backup's (whole-second) end
        t1 = _write_row(engine, "t1")
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT pg_switch_wal()")
        time.sleep(0.6)
        between = t1 + timedelta(seconds=0.3)
        _write_row(engine, "t2")
        with engine.connect() as conn:
            last = conn.exec_driver_sql("SELECT pg_walfile_name(pg_current_wal_lsn())"
                                        ).scalar_one()
        _wait_archived(engine, last)
        archived = [k for k in (o["Key"] for o in boto3.client("s3").list_objects_v2(
            Bucket=bucket, Prefix="pitr/archive/").get("Contents", [])) if last in k]
        assert archived, "the newest segment is not in the bucket"
        # Nothing readable in the bucket without the key: pgBackRest encrypted it.
        body = boto3.client("s3").get_object(Bucket=bucket, Key=archived[0])["Body"].read()
        assert not body.startswith((b"\x28\xb5\x2f\xfd", b"\x1f\x8b"))  # not plain zstd/gzip

        target = base / "restored"
        restored = restore_to_time(settings, between, target)
        assert restored.recovery == "time"
        assert labels_in(base, target) == ["t1"]
        print(f"\nS3 PITR: setup to restored in {time.monotonic() - started:.1f} s "
              f"(restore {restored.total_seconds} s)")

        # The marker in the bucket refuses another deployment, before pgBackRest runs.
        other = base / "other"
        with pytest.raises(RepositoryOwnerError, match="belongs to deployment 'signalfactory'"):
            restore_to_time(settings.model_copy(update={"pitr_deployment": "staging"}),
                            between, other)
        with pytest.raises(RepositoryOwnerError, match="belongs to deployment"):
            setup_pitr(settings.model_copy(update={"pitr_deployment": "staging"}))
        assert not other.exists()
        cfg = pitr_config(settings)
        write_marker(cfg, 12345)  # as if another database system had set it up
        with pytest.raises(RepositoryOwnerError, match="set up for system 12345"):
            read_stanza(cfg)
    finally:
        if engine is not None:
            engine.dispose()
        if (data / "postmaster.pid").exists():
            _as_postgres(str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        if (base / "restored" / "postmaster.pid").exists():
            _as_postgres(str(BIN / "pg_ctl"), "-D", str(base / "restored"), "-m", "immediate",
                         "-w", "stop")


def test_an_s3_repository_is_not_mistaken_for_a_directory() -> None:
    on = _pg_settings(pitr_repo="s3://bucket/prefix")
    assert on.pitr_repo == "s3://bucket/prefix"  # not collapsed to a path "s3:/bucket/prefix"
    assert {e.name for e in on.schedules} >= {"pitr-full", "pitr-incr"}
    assert isinstance(_pg_settings(pitr_repo=Path("/srv/pitr")).pitr_repo, Path)
