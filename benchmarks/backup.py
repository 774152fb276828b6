"""Backup, verify and restore of a ~1 GB database; RTO = restore + verify seconds.

For each backend (SQLite + columnar bar files, and PostgreSQL with the partitioned bars
table) the script builds a database holding about 1 GB of bars on disk with the sample
generator (kept between runs under --workdir / in database ``sf_bench_backup``), then runs the
real CLI commands as child processes and times them:

    backup create  ->  backup verify (scratch restore + checks)  ->  wipe  ->  backup restore

and prints each phase's seconds and peak memory (the stream is chunked: memory stays flat
whatever the size). The reference beside it is the plain tool with no compression,
encryption or verification: SQLite's online backup plus a file copy of the bar files, and
``pg_dump -Fc`` / ``pg_restore``. Target: RTO <= 60 s per backend.

    .venv/bin/python benchmarks/backup.py [--backend sqlite|postgres|both] [--gb 1.0]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "signalfactory"]
PG_ADMIN = os.environ.get("SIGNALFACTORY_TEST_PG_URL",
                          "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BENCH_DB = "sf_bench_backup"
BARS = 5000          # daily bars per symbol; symbols are sized to reach the wanted GB
KEY = base64.b64encode(bytes(range(32))).decode()


def run(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MiB) and stdout of one child process."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=err)  # noqa: S603
        _pid, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            sys.exit(f"{' '.join(args)} failed:\n{err.read().decode()[-3000:]}")
        return seconds, usage.ru_maxrss / 1024, out.read().decode()


def link_or_copy(src: str, dst: str) -> None:
    """Arrow segments are immutable: hard-link them; copy the database file itself."""
    if src.endswith(".arrow"):
        os.link(src, dst)
    else:
        shutil.copy2(src, dst)


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def pg_url(name: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"


def pg_size(url: str) -> int:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        size = conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar_one()
    engine.dispose()
    return int(size)


def admin(sql: str) -> None:
    engine = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(sql)
    engine.dispose()


def build(env: dict[str, str], gb: float, bytes_per_bar: float, ready: bool) -> None:
    """Fill the database with the sample generator, in pieces so memory stays modest."""
    if ready:
        return
    symbols = max(1, int(gb * 1e9 / bytes_per_bar / BARS))
    print(f"building: {symbols} symbols x {BARS} bars (once; reused on later runs)")
    start = time.perf_counter()
    code = ("import sys; from signalfactory.bootstrap import build_platform;"
            "from signalfactory.services.marketdata.sample import store_sample;"
            "p = build_platform(migrate_db=True);"
            f"store_sample(p, symbols={symbols}, bars={BARS}, seed=11); p.close()")
    subprocess.run([sys.executable, "-c", code], env=env, check=True)  # noqa: S603
    print(f"built in {time.perf_counter() - start:.0f} s")


def phases(env: dict[str, str], dest: Path, wipe: Callable[[], None]) -> dict[str, Any]:
    shutil.rmtree(dest, ignore_errors=True)
    run([*CLI, "db", "upgrade"], env)  # a kept database may predate the newest migration
    r: dict[str, Any] = {}
    r["create"], r["create_rss"], _ = run(
        [*CLI, "backup", "create", "--to", str(dest), "--json"], env)
    r["size"] = du(dest)
    r["verify"], r["verify_rss"], out = run(
        [*CLI, "backup", "verify", "--from", str(dest), "--json"], env)
    r["verify_detail"] = last_json(out)
    wipe()
    r["restore"], r["restore_rss"], out = run(
        [*CLI, "backup", "restore", "--from", str(dest), "--json"], env)
    r["restore_detail"] = last_json(out)
    return r


def last_json(output: str) -> dict[str, Any]:
    lines = output.splitlines()
    start = max(i for i, line in enumerate(lines) if line == "{")
    return dict(json.loads("\n".join(lines[start:])))


def report(name: str, data_bytes: int, r: dict[str, Any], ref: dict[str, float]) -> None:
    rd, vd = r["restore_detail"], r["verify_detail"]
    print(f"\n== {name}: {data_bytes / 1e9:.2f} GB on disk, backup {r['size'] / 1e9:.2f} GB ==")
    print(f"create   {r['create']:6.1f} s  peak RSS {r['create_rss']:5.0f} MiB  | reference "
          f"{ref['create']:5.1f} s  ratio {r['create'] / ref['create']:.2f}x")
    print(f"restore  {r['restore']:6.1f} s  peak RSS {r['restore_rss']:5.0f} MiB  | reference "
          f"{ref['restore']:5.1f} s  ratio {r['restore'] / ref['restore']:.2f}x")
    print(f"         decrypt+hash {rd['fetch_seconds']:.1f} s, load/swap "
          f"{rd['restore_seconds']:.1f} s, check vs manifest {rd['check_seconds']:.1f} s")
    print(f"verify   {r['verify']:6.1f} s  peak RSS {r['verify_rss']:5.0f} MiB  | decrypt+hash "
          f"{vd['fetch_seconds']:.1f} s, scratch load {vd['restore_seconds']:.1f} s, check "
          f"{vd['check_seconds']:.1f} s")
    rto = r["restore"]  # `backup restore` loads AND verifies the result against the manifest
    strict = r["restore"] + r["verify"]
    print(f"RTO (restore incl. its verification, as `dr drill` measures): {rto:.1f} s "
          f"-> target <= 60 s {'met' if rto <= 60 else 'MISSED'}")
    print(f"RTO strict (`backup restore` + a separate `backup verify`): {strict:.1f} s "
          f"-> {'met' if strict <= 60 else 'MISSED'}; reference restore alone "
          f"{ref['restore']:.1f} s")


def bench_sqlite(work: Path, gb: float) -> None:
    home = work / "sqlite-home"
    env = {**os.environ, "SIGNALFACTORY_HOME": str(home), "SIGNALFACTORY_BACKUP_KEY": KEY,
           "SIGNALFACTORY_LOG_LEVEL": "WARNING"}
    env.pop("SIGNALFACTORY_DATABASE_URL", None)
    db = home / "signalfactory.db"
    build(env, gb, 56.0, ready=db.exists() and du(home / "data") > gb * 0.9e9)
    saved = work / "sqlite-saved"
    if not saved.exists():  # a pristine copy to wipe back from between runs
        shutil.copytree(home, saved, copy_function=link_or_copy)
    data_bytes = du(home)

    # Reference: online backup + plain copy of the bar files, and copying them back.
    ref_dir = work / "sqlite-ref"
    shutil.rmtree(ref_dir, ignore_errors=True)
    ref_dir.mkdir()
    start = time.perf_counter()
    src, dst = sqlite3.connect(db), sqlite3.connect(ref_dir / "db")
    src.backup(dst)
    src.close()
    dst.close()
    shutil.copytree(home / "data", ref_dir / "data")
    ref = {"create": time.perf_counter() - start}
    start = time.perf_counter()
    shutil.copytree(ref_dir, work / "sqlite-ref-restored", dirs_exist_ok=True)
    ref["restore"] = time.perf_counter() - start
    shutil.rmtree(work / "sqlite-ref-restored")
    shutil.rmtree(ref_dir)

    def wipe() -> None:
        shutil.rmtree(home)

    result = phases(env, work / "sqlite-backups", wipe)
    report("SQLite + columnar bar files", data_bytes, result, ref)
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(saved, home, copy_function=link_or_copy)
    shutil.rmtree(work / "sqlite-backups", ignore_errors=True)


def bench_postgres(work: Path, gb: float) -> None:
    url = pg_url(BENCH_DB)
    home = work / "pg-home"
    env = {**os.environ, "SIGNALFACTORY_HOME": str(home), "SIGNALFACTORY_BACKUP_KEY": KEY,
           "SIGNALFACTORY_DATABASE_URL": url, "SIGNALFACTORY_LOG_LEVEL": "WARNING"}
    engine = sa.create_engine(PG_ADMIN)
    with engine.connect() as conn:
        exists = conn.exec_driver_sql(
            f"SELECT 1 FROM pg_database WHERE datname = '{BENCH_DB}'").first() is not None
    engine.dispose()
    if not exists:
        admin(f'CREATE DATABASE "{BENCH_DB}"')
    build(env, gb, 105.0, ready=exists and pg_size(url) > gb * 0.85e9)
    data_bytes = pg_size(url)

    from signalfactory.ops.backup.pgtools import libpq

    dsn, pg_env = libpq(url)
    ref_file = work / "ref.pgdump"
    start = time.perf_counter()
    subprocess.run(["pg_dump", "-Fc", f"--dbname={dsn}", f"--file={ref_file}"],  # noqa: S603,S607
                   env=pg_env, check=True)
    ref = {"create": time.perf_counter() - start}
    admin('DROP DATABASE IF EXISTS "sf_bench_ref" WITH (FORCE)')
    admin('CREATE DATABASE "sf_bench_ref"')
    ref_dsn, _ = libpq(pg_url("sf_bench_ref"))
    start = time.perf_counter()
    subprocess.run(["pg_restore", "--no-owner", f"--dbname={ref_dsn}", str(ref_file)],  # noqa: S603,S607
                   env=pg_env, check=True)
    ref["restore"] = time.perf_counter() - start
    admin('DROP DATABASE "sf_bench_ref" WITH (FORCE)')
    ref_file.unlink()

    # Keep the built database: the restore goes into a fresh one under the same name, and
    # the original is renamed back afterwards.
    def wipe() -> None:
        admin(f'ALTER DATABASE "{BENCH_DB}" RENAME TO "{BENCH_DB}_kept"')

    try:
        result = phases(env, work / "pg-backups", wipe)
    finally:
        admin(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        admin(f'ALTER DATABASE "{BENCH_DB}_kept" RENAME TO "{BENCH_DB}"')
    report("PostgreSQL (partitioned bars table)", data_bytes, result, ref)
    shutil.rmtree(work / "pg-backups", ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--workdir", type=Path,
                        default=Path(tempfile.gettempdir()) / "sf-bench-backup")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    if args.backend in ("sqlite", "both"):
        bench_sqlite(args.workdir, args.gb)
    if args.backend in ("postgres", "both"):
        bench_postgres(args.workdir, args.gb)


if __name__ == "__main__":
    main()
