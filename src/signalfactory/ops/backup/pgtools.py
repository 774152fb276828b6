"""PostgreSQL client tools: pg_dump out, pg_restore + psql in, scratch databases.

The password never goes on a command line (other users can read those): it is passed in
``PGPASSWORD`` to the child process only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from signalfactory.adapters.storage.db import create_db_engine, normalise_url
from signalfactory.domain.errors import BadInputError, OperationalError

PIPE_CHUNK = 1 << 20


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise OperationalError(f"`{name}` is not installed; PostgreSQL backups need the "
                               "PostgreSQL client tools (Debian: apt-get install "
                               "postgresql-client)")
    return path


def libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq connection URI without the password, and an environment carrying it."""
    parsed = make_url(normalise_url(url))
    env = dict(os.environ)
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    plain = URL.create("postgresql", username=parsed.username, host=parsed.host,
                       port=parsed.port, database=parsed.database, query=parsed.query)
    return plain.render_as_string(hide_password=False), env


def _stderr_collector(stream: IO[bytes]) -> tuple[threading.Thread, deque[bytes]]:
    # The last lines: the error that stopped a tool comes after whatever it said before.
    lines: deque[bytes] = deque(maxlen=50)

    def _drain() -> None:
        for line in stream:
            lines.append(line)

    thread = threading.Thread(target=_drain, daemon=True)
    thread.start()
    return thread, lines


@contextmanager
def pg_dump_stream(url: str, snapshot: str | None) -> Iterator[IO[bytes]]:
    """``pg_dump --format=custom`` to a pipe. Uncompressed: the backup stream compresses."""
    dsn, env = libpq(url)
    args = [_tool("pg_dump"), "--format=custom", "--compress=0", "--no-owner",
            f"--dbname={dsn}"]
    if snapshot:
        args.append(f"--snapshot={snapshot}")
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)  # noqa: S603
    if proc.stdout is None or proc.stderr is None:  # both are PIPE: cannot happen
        raise OperationalError("pg_dump started without its output pipes")
    thread, errors = _stderr_collector(proc.stderr)
    try:
        yield proc.stdout
    except BaseException:
        proc.kill()
        raise
    finally:
        proc.stdout.close()
        code = proc.wait()
        thread.join()
    if code != 0:
        raise OperationalError(f"pg_dump failed (exit {code}): "
                               f"{b''.join(errors).decode(errors='replace').strip()}")


def restore_dump(url: str, dump: Path, *, replace: bool) -> None:
    """Load a custom-format dump into ``url`` in ONE transaction: all of it or nothing.

    pg_restore turns the archive into SQL and psql runs it inside BEGIN ... COMMIT; COMMIT is
    sent only once pg_restore has finished cleanly, so any failure leaves the database as it
    was. With ``replace`` the public schema is dropped and re-created first, in that same
    transaction, so nothing of the old content survives next to the restored one.
    """
    dsn, env = libpq(url)
    restore = subprocess.Popen(  # noqa: S603
        [_tool("pg_restore"), "--no-owner", "--exit-on-error", "--file=-", str(dump)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    psql = subprocess.Popen(  # noqa: S603
        [_tool("psql"), "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1", f"--dbname={dsn}"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    if not (restore.stdout and restore.stderr and psql.stdin and psql.stderr):
        raise OperationalError("pg_restore or psql started without their pipes")  # all PIPE
    r_thread, r_errors = _stderr_collector(restore.stderr)
    p_thread, p_errors = _stderr_collector(psql.stderr)
    try:
        # More memory for the index builds at the end of the load (the PRIMARY KEY of ten
        # million bars sorts in memory instead of on disk); this session only.
        # Notices (a DROP ... CASCADE lists every object) would bury the error.
        psql.stdin.write(b"SET maintenance_work_mem = '512MB';\n"
                         b"SET client_min_messages = warning;\nBEGIN;\n")
        if replace:
            psql.stdin.write(b"DROP SCHEMA IF EXISTS public CASCADE;\nCREATE SCHEMA public;\n")
        while chunk := restore.stdout.read(PIPE_CHUNK):
            psql.stdin.write(chunk)
        restore_code = restore.wait()
        r_thread.join()
        if restore_code == 0:
            psql.stdin.write(b"\nCOMMIT;\n")
        psql.stdin.close()
    except BrokenPipeError:
        # psql stopped at an error (ON_ERROR_STOP): the transaction was never committed.
        restore.kill()
        restore.wait()
    finally:
        psql_code = psql.wait()
        p_thread.join()
        r_thread.join()
    if restore.returncode != 0 or psql_code != 0:
        detail = b"".join(p_errors or r_errors).decode(errors="replace").strip()
        raise OperationalError(f"restoring into {make_url(url).database} failed and was rolled "
                               f"back, the database is unchanged: {detail}")


def load_dump_parallel(url: str, dump: Path, jobs: int | None = None) -> None:
    """Load a dump into a database nobody else uses yet with ``pg_restore -j``: tables load
    and indexes build side by side. Not one transaction: the caller drops the database if
    this fails (a scratch database, or one the restore itself just created)."""
    dsn, env = libpq(url)
    jobs = jobs or max(2, min(4, os.cpu_count() or 2))
    env["PGOPTIONS"] = "-c maintenance_work_mem=256MB"
    done = subprocess.run(  # noqa: S603
        [_tool("pg_restore"), "--no-owner", "--exit-on-error", f"--jobs={jobs}",
         f"--dbname={dsn}", str(dump)], env=env, capture_output=True, check=False)
    if done.returncode != 0:
        raise OperationalError(f"pg_restore into {make_url(url).database} failed: "
                               f"{done.stderr.decode(errors='replace').strip()[-2000:]}")


def admin_url(url: str) -> str:
    """The same server, maintenance database: where CREATE/DROP DATABASE are issued."""
    return make_url(normalise_url(url)).set(database="postgres").render_as_string(
        hide_password=False)


def database_exists(url: str) -> bool:
    engine = create_db_engine(url)
    try:
        with engine.connect():
            return True
    except sa.exc.OperationalError as exc:
        if "does not exist" in str(exc.orig):
            return False
        raise OperationalError(f"cannot reach {make_url(url).database}: {exc.orig}") from exc
    finally:
        engine.dispose()


def _database_name(url: str) -> str:
    name = make_url(normalise_url(url)).database
    if not name or '"' in name:
        raise BadInputError(f"cannot create or drop a database named {name!r}")
    return name


def create_database(url: str, via: str | None = None) -> None:
    """CREATE DATABASE for ``url``, issued over ``via`` (default: the maintenance database)."""
    name = _database_name(url)
    engine = sa.create_engine(normalise_url(via or admin_url(url)), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.DBAPIError as exc:
        raise OperationalError(f"cannot create database {name}: {exc.orig}; create it, or "
                               "grant CREATEDB to the role") from exc
    finally:
        engine.dispose()


def drop_database(url: str, via: str | None = None) -> None:
    name = _database_name(url)
    engine = sa.create_engine(normalise_url(via or admin_url(url)), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        engine.dispose()


@contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """A new empty database on the server of ``server_url``, dropped afterwards."""
    url = make_url(normalise_url(server_url)).set(
        database=f"sf_scratch_{uuid.uuid4().hex[:12]}").render_as_string(hide_password=False)
    create_database(url, via=server_url)
    try:
        yield url
    finally:
        drop_database(url, via=server_url)
