"""Shared fixtures: a fresh database per test on SQLite and on the real PostgreSQL.

PostgreSQL tests skip with a visible reason when the server is unreachable, except under
CI=true, where an unreachable server fails the run: CI must prove both backends.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

PG_ADMIN_URL = os.environ.get("SIGNALFACTORY_TEST_PG_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"


def _pg_reachable() -> str | None:
    try:
        engine = sa.create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


_PG_PROBLEM: str | bool | None = False


def require_postgres() -> None:
    global _PG_PROBLEM
    if _PG_PROBLEM is False:
        _PG_PROBLEM = _pg_reachable()
    if _PG_PROBLEM:
        message = f"PostgreSQL at {PG_ADMIN_URL} is unreachable ({_PG_PROBLEM})"
        if IN_CI:
            pytest.fail(message + "; CI=true requires it")
        pytest.skip(message)


def create_pg_database() -> str:
    """A new empty database on the test server; returns its URL."""
    require_postgres()
    name = f"sf_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_pg_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'sf.db'}"
        return
    url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


@pytest.fixture
def sf_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment for a platform on the parametrised backend, home in tmp_path."""
    env = {"SIGNALFACTORY_HOME": str(tmp_path / "home"),
           "SIGNALFACTORY_DATABASE_URL": database_url}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def platform(sf_env: dict[str, str]) -> Iterator[object]:
    from signalfactory.bootstrap import build_platform

    p = build_platform(migrate_db=True)
    try:
        yield p
    finally:
        p.close()


_JOB_THREAD_PREFIXES = ("job-runner-", "job-scheduler", "job-heartbeat-", "delivery-",
                        "trading-watchdog", "sources-run")
_IDLE_POOLS = ("delivery-send",)  # idle sender pools hold no work and log nothing
_LEAK_REPORT = os.environ.get("SF_TEST_THREAD_LEAKS")
_ALL = os.environ.get("SF_TEST_THREAD_LEAKS_ALL") == "1"  # every thread, not only job threads


@pytest.fixture(autouse=True)
def _report_leaked_job_threads(request: pytest.FixtureRequest) -> Iterator[None]:
    """With SF_TEST_THREAD_LEAKS=<file>, name the tests that leave a job thread running.

    A job thread left behind by one test logs into the captured stdout of a later test in the
    same worker (logs follow ``sys.stdout``), which breaks tests that parse a command's output.
    """
    if not _LEAK_REPORT:
        yield
        return
    import threading
    import time

    before = {t.ident for t in threading.enumerate()}
    yield
    deadline = time.monotonic() + float(os.environ.get("SF_TEST_THREAD_LEAKS_WAIT", "2"))
    while True:
        leaked = [t.name for t in threading.enumerate() if t.ident not in before
                  and t.is_alive() and (t.name.startswith(_JOB_THREAD_PREFIXES) or _ALL)
                  and not t.name.startswith(_IDLE_POOLS)]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if leaked:
        with Path(_LEAK_REPORT).open("a", encoding="utf-8") as report:
            report.write(f"{request.node.nodeid}: {', '.join(sorted(leaked))}\n")
