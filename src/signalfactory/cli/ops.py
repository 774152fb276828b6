"""Operations commands: backups, the DR drill, archive snapshots, data retention."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Column, Table

from signalfactory.cli.common import err, handle_errors, out, print_json, progress_bar
from signalfactory.domain.errors import BadInputError, OperationalError

if TYPE_CHECKING:
    # Commands import their operations when they run: `--help` stays fast.
    from signalfactory.ops.retention import PruneItem

backup_app = typer.Typer(help="Encrypted backups: create, list, verify, restore, prune.",
                         no_args_is_help=True)
dr_app = typer.Typer(help="Disaster recovery drills.", no_args_is_help=True)
archive_app = typer.Typer(help="Signed daily archive snapshots (Parquet).", no_args_is_help=True)
data_app = typer.Typer(help="Stored data housekeeping: retention.", no_args_is_help=True)

Dest = Annotated[str, typer.Option("--from", help="Local directory or s3://bucket/prefix")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON")]
BackupId = Annotated[str | None, typer.Option("--backup", help="Backup id (default: newest)")]
ScratchUrl = Annotated[str | None, typer.Option(
    help="PostgreSQL server for the scratch database (default: the configured database's)")]


def say(text: str) -> None:
    """One line of output, never wrapped (paths and ids stay greppable)."""
    out.print(text, soft_wrap=True, highlight=False)


def _mib(n: float) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


@backup_app.command("create")
@handle_errors
def backup_create(
    to: Annotated[str, typer.Option("--to", help="Local directory or s3://bucket/prefix")],
    as_json: AsJson = False,
) -> None:
    """Snapshot the database and bar files, compress, encrypt, store; manifest last."""
    from signalfactory.cli.common import build_platform
    from signalfactory.ops.backup import create_backup

    platform = build_platform()
    try:
        with progress_bar("backup (bytes)", None) as advance:
            manifest = create_backup(platform, to, progress=advance)
    finally:
        platform.close()
    if as_json:
        print_json({**manifest.summary().to_dict(), "destination": to})
    else:
        added = "" if manifest.new_bytes is None else f" ({_mib(manifest.new_bytes)} new)"
        say(f"backup {manifest.id}: {len(manifest.parts)} part(s), "
            f"{_mib(manifest.size)}{added} in {manifest.seconds:.1f} s -> {to}")


@backup_app.command("list")
@handle_errors
def backup_list(source: Dest, as_json: AsJson = False) -> None:
    """Complete backups (with a manifest), oldest first."""
    from signalfactory.ops.backup.fetch import list_backups
    from signalfactory.ops.backup.manifest import UnreadableBackup

    rows = list_backups(source)
    if as_json:
        print_json([r.to_dict() for r in rows])
        return
    table = Table(Column("id", no_wrap=True), "version", "schema", "backend",
                  Column("size", no_wrap=True), "rows")
    for r in rows:
        if isinstance(r, UnreadableBackup):
            table.add_row(r.id, f"[red]{r.error}[/]", "", "", "", "")
            continue
        table.add_row(r.id, r.app_version, str(r.schema_revision), r.backend,
                      _mib(float(r.size_bytes)), str(r.rows))
    out.print(table)


@backup_app.command("verify")
@handle_errors
def backup_verify(source: Dest, backup: BackupId = None, scratch_url: ScratchUrl = None,
                  as_json: AsJson = False) -> None:
    """Decrypt, check every hash, restore into a scratch database, compare with the manifest."""
    from signalfactory.ops.backup import verify_backup
    from signalfactory.settings import load_settings

    with progress_bar("verify (bytes)", None) as advance:
        report = verify_backup(load_settings(), source, backup, scratch_url=scratch_url,
                               progress=advance)
    if as_json:
        print_json(report.to_dict())
    else:
        say(f"backup {report.backup_id} verified: {report.parts} part(s), "
                  f"{report.tables} table(s), {report.rows} rows match the manifest "
                  f"({report.seconds:.1f} s)")


@backup_app.command("restore")
@handle_errors
def backup_restore(
    source: Annotated[str | None, typer.Option(
        "--from", help="Local directory or s3://bucket/prefix (not with --to-time)")] = None,
    backup: BackupId = None,
    database_url: Annotated[str | None, typer.Option(
        help="Restore into this database instead of the configured one")] = None,
    home: Annotated[Path | None, typer.Option(
        help="Home directory for the restored bar files (default: the configured home)")]
    = None,
    to_time: Annotated[str | None, typer.Option(
        help="Restore the state as of this moment (ISO 8601): with --from, the newest backup "
             "taken at or before it; alone, PostgreSQL point-in-time recovery from the "
             "pgBackRest repository (SIGNALFACTORY_PITR_REPO)")] = None,
    pg_data: Annotated[Path | None, typer.Option(
        help="With --to-time: data directory to restore into (default: "
             "SIGNALFACTORY_PITR_PG_DATA; its server must be stopped)")] = None,
    force: Annotated[bool, typer.Option(
        help="Restore despite a version or schema mismatch, or over a non-empty database "
             "(with --to-time: over a non-empty data directory)")]
    = False,
    as_json: AsJson = False,
) -> None:
    """Restore a backup into an empty (or, with --force, any) database; all or nothing.

    With --to-time and --from, restore the newest backup taken at or before that moment; with
    --to-time alone, restore PostgreSQL to that moment from the PITR repository into a data
    directory."""
    from signalfactory.settings import load_settings

    if to_time is not None and backup is not None:
        raise BadInputError("give --backup or --to-time, not both")
    if to_time is not None and source is None:
        given = [name for name, value in (("--database-url", database_url), ("--home", home))
                 if value is not None]
        if given:
            raise BadInputError(f"--to-time without --from restores from the PITR repository; "
                                f"drop {', '.join(given)}")
        _restore_to_time(to_time, pg_data, force, as_json)
        return
    if source is None:
        raise BadInputError("name the backups with --from (a directory or s3://bucket/prefix),"
                            " or restore PostgreSQL to a moment with --to-time alone (PITR)")
    if pg_data is not None:
        raise BadInputError("--pg-data goes with --to-time and no --from (PITR)")
    from signalfactory.ops.backup import restore_backup
    from signalfactory.ops.backup.to_time import parse_time, restore_to_time

    settings = load_settings()
    with progress_bar("restore (bytes)", None) as advance:
        if to_time is not None:
            timed = restore_to_time(settings, source, parse_time(to_time),
                                    database_url=database_url, home=home, force=force,
                                    progress=advance)
            report = timed.restore
        else:
            report = restore_backup(settings, source, backup, database_url=database_url,
                                    home=home, force=force, progress=advance)
    if as_json:
        print_json(timed.to_dict() if to_time is not None else report.to_dict())
    else:
        say(f"restored backup {report.backup_id} into {report.database}: {report.rows} "
                  f"rows checked against the manifest")
        if to_time is not None:
            say(f"that backup's snapshot is {timed.gap_seconds} s before {to_time}")


def _restore_to_time(to_time: str, pg_data: Path | None, force: bool, as_json: bool) -> None:
    from signalfactory.ops.backup.pitr_restore import parse_to_time, restore_to_time
    from signalfactory.settings import load_settings

    report = restore_to_time(load_settings(), parse_to_time(to_time), pg_data, force=force)
    if as_json:
        print_json(report.to_dict())
        return
    say(f"restored {report.target} to {report.to_time} from base backup {report.backup_set} "
        f"(newest transaction {report.last_transaction}) in {report.total_seconds} s; the "
        f"server is stopped: start it with pg_ctl -D {report.target} start")


@backup_app.command("prune")
@handle_errors
def backup_prune(
    source: Dest,
    keep_last: Annotated[int, typer.Option(help="Keep the newest N")] = 3,
    daily: Annotated[int, typer.Option(help="Keep the newest of each of the last D days")] = 7,
    weekly: Annotated[int, typer.Option(help="... of each of the last W weeks")] = 4,
    monthly: Annotated[int, typer.Option(help="... of each of the last M months")] = 12,
    dry_run: Annotated[bool, typer.Option(help="Show what would be deleted; delete nothing")]
    = False,
    as_json: AsJson = False,
) -> None:
    """Delete backups outside the retention policy (and stale incomplete ones)."""
    from signalfactory.ops.backup import Policy, prune_backups

    result = prune_backups(source, Policy(keep_last, daily, weekly, monthly), dry_run=dry_run)
    if as_json:
        print_json({**result.to_dict(), "dry_run": dry_run})
        return
    verb = "would delete" if dry_run else "deleted"
    say(f"kept {len(result.keep)}, {verb} {len(result.delete)} backup(s)"
              + (f" and {len(result.incomplete)} incomplete" if result.incomplete else ""))
    for backup_id in sorted(result.delete + result.incomplete):
        say(f"  {verb}: {backup_id}")


pitr_app = typer.Typer(help="PostgreSQL point-in-time recovery with pgBackRest: setup, "
                             "base backups, the restorable window.", no_args_is_help=True)
backup_app.add_typer(pitr_app, name="pitr")


@pitr_app.command("setup")
@handle_errors
def pitr_setup(as_json: AsJson = False) -> None:
    """Write pgbackrest.conf, create the stanza and marker; print postgresql.conf lines."""
    from signalfactory.ops.backup.pitr import setup_pitr
    from signalfactory.settings import load_settings

    report = setup_pitr(load_settings())
    if as_json:
        print_json(report.to_dict())
        return
    say(f"stanza {report.stanza} (database system {report.system_id}) in {report.repo}; "
        f"config {report.config_path}")
    say("put these in postgresql.conf, restart PostgreSQL, then run "
        "`signalfactory backup pitr check`:")
    for line in report.postgresql_conf:
        say(f"  {line}")


@pitr_app.command("check")
@handle_errors
def pitr_check() -> None:
    """Check that the server archives WAL into the repository now (pgbackrest check)."""
    from signalfactory.ops.backup.pitr import check_archiving
    from signalfactory.settings import load_settings

    check_archiving(load_settings())
    say("WAL archiving works: a segment was pushed and found in the repository")


@pitr_app.command("backup")
@handle_errors
def pitr_backup(
    backup_type: Annotated[str, typer.Option("--type", help="full, diff or incr")] = "incr",
    as_json: AsJson = False,
) -> None:
    """Take a base backup now, then expire what is past SIGNALFACTORY_PITR_RETENTION_DAYS."""
    from signalfactory.ops.backup.pitr import run_base_backup
    from signalfactory.settings import load_settings

    report = run_base_backup(load_settings(), backup_type)
    if as_json:
        print_json(report.to_dict())
    else:
        say(f"base backup {report.label} ({report.type}): {_mib(report.size)} of data, "
            f"{_mib(report.repo_size)} stored")


@pitr_app.command("status")
@handle_errors
def pitr_status(as_json: AsJson = False) -> None:
    """The restorable window and how fresh the WAL archive is."""
    from signalfactory.ops.backup.pitr import restorable_window
    from signalfactory.settings import load_settings

    window = restorable_window(load_settings()).to_dict()
    if as_json:
        print_json(window)
        return
    say(f"restorable from {window['start']} to {window['end']} "
        f"({window['backups']} base backup(s), oldest {window['oldest_backup']})")
    say(f"newest archived WAL {window['newest_wal']}, pushed {window['newest_wal_pushed']} "
        f"({window['newest_wal_age_seconds']} s ago); newest archived commit "
        f"{window['newest_commit']}")


@dr_app.command("drill")
@handle_errors
def dr_drill(
    source: Annotated[str | None, typer.Option(
        "--from", "--to", help="Where the backups are (default: SIGNALFACTORY_BACKUP_DEST)")]
    = None,
    scratch_url: ScratchUrl = None,
    as_json: AsJson = False,
) -> None:
    """Write a canary, restore the newest restorable point into scratch (no new backup),
    measure RPO (canary gap) and RTO; exit 1 naming each missed target."""
    from signalfactory.cli.common import build_platform
    from signalfactory.ops.backup import run_drill

    platform = build_platform()
    try:
        # PostgreSQL with PITR configured restores from the WAL archive; otherwise the
        # backups are needed (run_drill says so when there are none).
        result = run_drill(platform, source or platform.settings.backup_dest,
                           scratch_url=scratch_url)
    finally:
        platform.close()
    if as_json:
        print_json(result.to_dict())
    else:
        rpo = "unknown" if result.rpo_seconds is None else f"{result.rpo_seconds} s"
        say(f"drill {'ok' if result.ok else 'FAILED'}: restored {result.restore_point} "
            f"({result.provider}); RPO {rpo} (target {result.rpo_target_seconds:g} s), "
            f"RTO {result.rto_seconds} s = restore {result.restore_seconds} s + verify "
            f"{result.verify_seconds} s (target {result.rto_target_seconds:g} s)")
    if result.missed:
        raise OperationalError("dr drill missed its target: " + "; ".join(result.missed))


@archive_app.command("snapshot")
@handle_errors
def archive_snapshot(
    day: Annotated[str, typer.Option("--date", help="UTC day, YYYY-MM-DD")],
    to: Annotated[Path | None, typer.Option(
        "--to", help="Archive directory (default: <home>/archive)")] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing snapshot of that day")]
    = False,
    as_json: AsJson = False,
) -> None:
    """Write the day's bars and signals as Parquet with a signed SHA-256 manifest."""
    from signalfactory.cli.common import build_platform
    from signalfactory.ops.archive import parse_day, snapshot

    when = parse_day(day)
    platform = build_platform()
    try:
        report = snapshot(platform, when, to, force=force)
    finally:
        platform.close()
    if as_json:
        print_json(report.to_dict())
    else:
        rows = sum(f.rows for f in report.files)
        say(f"archived {report.date}: {len(report.files)} file(s), {rows} rows, signed "
                  f"by key {report.key_id} -> {report.path}")


@archive_app.command("verify")
@handle_errors
def archive_verify(
    path: Annotated[Path, typer.Argument(help="Snapshot folder (or its manifest.json)")],
    public_key: Annotated[str | None, typer.Option(
        help="Ed25519 public key to pin (PEM file, or base64)")] = None,
    as_json: AsJson = False,
) -> None:
    """Check the signature and every file's SHA-256; name each file that fails."""
    from signalfactory.ops.archive import verify
    from signalfactory.settings import load_settings

    result = verify(load_settings(), path, public_key)
    if as_json:
        print_json(result.to_dict())
    elif result.ok:
        pin = "" if result.pinned else " (key taken from the manifest: pin it with --public-key)"
        say(f"archive {result.path} verified: signature ok by key {result.key}{pin}, "
                  f"{len(result.checked)} file(s) match")
    if not result.ok:
        names = ", ".join(f"{k} ({v})" for k, v in sorted(result.failures.items()))
        raise OperationalError(f"archive {result.path} failed verification: {names}")
    if result.unlisted and not as_json:
        err.print(f"note: files not in the manifest: {', '.join(result.unlisted)}")


@data_app.command("prune")
@handle_errors
def data_prune(
    dry_run: Annotated[bool, typer.Option(help="Only show what would be deleted")] = False,
    as_json: AsJson = False,
) -> None:
    """Delete bars and signals past their retention (SIGNALFACTORY_RETENTION)."""
    from signalfactory.cli.common import build_platform
    from signalfactory.ops.retention import apply_retention, retention_config

    platform = build_platform()
    try:
        config = retention_config(platform.settings)
        planned = apply_retention(platform, dry_run=True, config=config)
        if not as_json:
            _print_retention(planned.items, "would delete" if dry_run else "deleting")
        done = planned if dry_run else apply_retention(platform, config=config)
    finally:
        platform.close()
    if as_json:
        print_json({**done.to_dict(), "planned": planned.to_dict()["items"]})
    elif not dry_run:
        say(f"deleted {done.rows} row(s)")


def _print_retention(items: Sequence[PruneItem], verb: str) -> None:
    if not items:
        say("nothing is past its retention")
        return
    table = Table("table", "timeframe", "keep days", "older than", "rows", "partitions",
                  title=f"{verb}:")
    for i in items:
        extra = f" (+{i.kept_referenced} kept: still referenced)" if i.kept_referenced else ""
        table.add_row(i.table, i.timeframe, str(i.keep_days), i.cutoff[:19], f"{i.rows}{extra}",
                      ", ".join(i.partitions))
    out.print(table)
