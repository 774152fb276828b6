"""Shared pieces of the backup, retention and archive tests (imported by those files)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from signalfactory.adapters.storage.db import is_sqlite_url
from signalfactory.adapters.storage.tables import (
    instruments,
    signals,
    strategies,
    strategy_versions,
    tenants,
)
from signalfactory.services.marketdata.sample import store_sample
from signalfactory.services.platform import Platform
from tests.helpers import engine_of

KEY_B64 = base64.b64encode(bytes(range(32))).decode()
OTHER_KEY_HEX = bytes(range(100, 132)).hex()


def parse_json(output: str) -> Any:
    """The JSON document a --json command printed (log lines may come before it)."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line in ("{", "[", "[]", "{}"):
            return json.loads("\n".join(lines[i:]))
    raise AssertionError(f"no JSON document in output:\n{output}")


def seed(platform: Platform, *, symbols: int = 3, bars: int = 40, seed_: int = 7) -> None:
    store_sample(platform, symbols=symbols, bars=bars, seed=seed_)


def add_signals(platform: Platform, when: list[datetime], timeframe: str = "1d") -> None:
    """A strategy, a version and one signal per timestamp (first instrument)."""
    with engine_of(platform).begin() as conn:
        tenant = conn.execute(sa.select(tenants.c.id).order_by(tenants.c.id)).scalar()
        inst = conn.execute(sa.select(instruments.c.id).order_by(instruments.c.id)).scalar()
        strategy = conn.execute(strategies.insert().values(
            tenant_id=tenant, name=f"s-{uuid.uuid4().hex[:6]}", kind="rules")
            .returning(strategies.c.id)).scalar_one()
        version = conn.execute(strategy_versions.insert().values(
            strategy_id=strategy, version=1, rule_text="close > 0", parameters={},
            timeframe=timeframe, code_hash="0" * 64).returning(strategy_versions.c.id)
        ).scalar_one()
        conn.execute(signals.insert(), [
            {"strategy_version_id": version, "instrument_id": inst, "timeframe": timeframe,
             "bar_ts": ts, "side": "buy", "score": 1.5, "price": 100.0 + i,
             "values": {"rsi": 30 + i}} for i, ts in enumerate(when)])


def wipe(url: str, home: Path) -> None:
    """Lose the database and the bar files, as in a disaster."""
    if is_sqlite_url(url):
        db = Path(sa.engine.make_url(url).database or "")
        for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            path.unlink(missing_ok=True)
    else:  # every table, partition and sequence goes (dropping the database is slower)
        engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sa.text("DROP SCHEMA public CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA public"))
        engine.dispose()
    shutil.rmtree(home / "data", ignore_errors=True)


@pytest.fixture(name="backup_env")
def backup_env_fixture(sf_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("SIGNALFACTORY_BACKUP_KEY", KEY_B64)
    return {**sf_env, "SIGNALFACTORY_BACKUP_KEY": KEY_B64}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session", name="s3_endpoint")
def s3_endpoint_fixture() -> Iterator[str]:
    """A moto S3 server on loopback for the whole session."""
    pytest.importorskip("boto3", reason="boto3 is needed for s3:// backups")
    server_mod = pytest.importorskip("moto.server", reason="moto[server] runs the local S3")
    port = _free_port()
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(name="s3_dest")
def s3_dest_fixture(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    import boto3

    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    bucket = f"sf-{uuid.uuid4().hex[:10]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/backups"


@contextmanager
def tiny_disk(path: Path, size: str = "1m") -> Iterator[Path]:
    """A tmpfs of ``size`` at ``path`` (root only); skips the test where mounting is refused."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the ENOSPC variant of this test still runs")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); the ENOSPC variant "
                    "of this test still runs")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path, leave: int) -> None:
    """Fill the filesystem of ``path`` until about ``leave`` bytes are free."""
    free = shutil.disk_usage(path).free
    with (path / "filler").open("wb") as fh:
        fh.write(b"\0" * max(free - leave, 0))


def day(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)
