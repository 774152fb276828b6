"""`dr drill`: back up, restore into scratch, verify, and measure RTO and RPO.

RTO here is what a restore of this database costs, measured: decrypting and loading the
backup into a scratch database plus checking every table against the manifest. RPO is the age
of the newest good backup at the end of the drill: the data a failure now would lose.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from signalfactory.ops.backup.create import create_backup
from signalfactory.ops.backup.fetch import backup_key, load_manifest
from signalfactory.ops.backup.targets import open_target
from signalfactory.ops.backup.verify import verify_backup
from signalfactory.services.platform import Platform


@dataclass(frozen=True)
class DrillReport:
    """What `dr drill` measured (seconds rounded to the millisecond)."""

    ok: bool
    backup_id: str
    backend: str
    size_bytes: int
    rows: int
    backup_seconds: float
    restore_seconds: float
    verify_seconds: float
    rto_seconds: float
    rpo_seconds: float
    newest_backup_id: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def run_drill(platform: Platform, dest: str, *, scratch_url: str | None = None) -> DrillReport:
    started = time.monotonic()
    manifest = create_backup(platform, dest)
    backup_seconds = time.monotonic() - started
    report = verify_backup(platform.settings, dest, manifest.id, scratch_url=scratch_url)
    restore_seconds = report.fetch_seconds + report.restore_seconds
    verify_seconds = report.check_seconds
    target = open_target(dest)
    newest = load_manifest(target, backup_key(platform.settings))
    rpo = (datetime.now(UTC) - newest.created).total_seconds()
    return DrillReport(
        ok=report.ok,
        backup_id=manifest.id,
        backend=manifest.backend,
        size_bytes=manifest.size,
        rows=report.rows,
        backup_seconds=round(backup_seconds, 3),
        restore_seconds=round(restore_seconds, 3),
        verify_seconds=round(verify_seconds, 3),
        rto_seconds=round(restore_seconds + verify_seconds, 3),
        rpo_seconds=round(rpo, 3),
        newest_backup_id=newest.id,
    )
