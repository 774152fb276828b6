"""`backup prune`: keep the last N, one per day for D days, per week for W weeks, per month
for M months; delete the rest. The plan is computed from the listing alone, so it is the same
on a local directory and on S3. Then the chunk store is swept: chunks no remaining manifest
lists, older than a day, are deleted (see :mod:`signalfactory.ops.backup.chunks` for why a
backup being written never loses one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from signalfactory.domain.errors import BadInputError
from signalfactory.ops.backup.chunks import sweep_chunks
from signalfactory.ops.backup.crypto import BackupPartError
from signalfactory.ops.backup.manifest import Manifest
from signalfactory.ops.backup.targets import Target, open_target

INCOMPLETE_GRACE = timedelta(hours=24)


@dataclass(frozen=True)
class Policy:
    keep_last: int = 3
    daily: int = 7
    weekly: int = 4
    monthly: int = 12

    def validate(self) -> None:
        values = (self.keep_last, self.daily, self.weekly, self.monthly)
        if any(v < 0 for v in values):
            raise BadInputError("retention counts must be 0 or more")
        if not any(values):
            raise BadInputError("this policy keeps no backup at all; give at least one of "
                                "--keep-last, --daily, --weekly, --monthly above 0")


@dataclass(frozen=True)
class PrunePlan:
    keep: dict[str, list[str]]  # id -> why
    delete: list[str]
    incomplete: list[str] = field(default_factory=list)
    #: chunk objects deleted (or, in a dry run, that would be) from the chunk store
    chunks_deleted: list[str] = field(default_factory=list)
    #: unreferenced chunks kept because they are younger than a day
    chunks_unreferenced_young: int = 0

    def to_dict(self) -> dict[str, object]:
        return {"keep": [{"id": k, "reasons": v} for k, v in sorted(self.keep.items())],
                "delete": sorted(self.delete), "incomplete": sorted(self.incomplete),
                "chunks_deleted": len(self.chunks_deleted),
                "chunks_unreferenced_young": self.chunks_unreferenced_young}


def created_at(backup_id: str) -> datetime:
    """The snapshot time encoded in a backup id (``sf-YYYYmmddTHHMMSSZ-xxxxxx``)."""
    try:
        return datetime.strptime(backup_id.split("-")[1], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except (IndexError, ValueError) as exc:
        raise BadInputError(f"{backup_id!r} is not a backup id") from exc


def plan(ids: list[str], policy: Policy) -> PrunePlan:
    policy.validate()
    # The id breaks ties within a second: its suffix starts with the millisecond.
    newest_first = sorted(ids, key=lambda i: (created_at(i), i), reverse=True)
    keep: dict[str, list[str]] = {}

    def keep_by(label: str, count: int, bucket: Callable[[datetime], object]) -> None:
        seen: list[object] = []
        for backup_id in newest_first:
            key = bucket(created_at(backup_id))
            if key in seen:
                continue
            if len(seen) >= count:
                break
            seen.append(key)
            keep.setdefault(backup_id, []).append(label)

    for backup_id in newest_first[:policy.keep_last]:
        keep.setdefault(backup_id, []).append("last")
    keep_by("daily", policy.daily, lambda t: t.date())
    keep_by("weekly", policy.weekly, lambda t: t.isocalendar()[:2])
    keep_by("monthly", policy.monthly, lambda t: (t.year, t.month))
    return PrunePlan(keep=keep, delete=[b for b in newest_first if b not in keep])


def prune_backups(dest: str | Target, policy: Policy, *, dry_run: bool = False,
                  now: datetime | None = None) -> PrunePlan:
    """Delete what the policy does not keep (nothing with ``dry_run``); returns the plan.

    Also removes backups left incomplete (no manifest) more than a day ago: interrupted runs.
    """
    target = open_target(dest) if isinstance(dest, str) else dest
    now = now or datetime.now(UTC)
    result = replace(plan(target.list_ids(), policy),
                     incomplete=[i.id for i in target.list_incomplete()
                                 if now - i.modified > INCOMPLETE_GRACE])
    if not dry_run:
        for backup_id in result.delete + result.incomplete:
            target.delete(backup_id)
    gone = set(result.delete + result.incomplete)

    def referenced() -> set[str] | None:
        names: set[str] = set()
        for backup_id in target.list_ids():
            if dry_run and backup_id in gone:
                continue
            try:
                manifest = Manifest.from_json(target.read_manifest(backup_id), backup_id)
            except (BackupPartError, BadInputError):
                return None  # an unreadable manifest might list any chunk: delete none
            for part in manifest.parts:
                names.update(part.chunks)
        return names

    swept = sweep_chunks(target, referenced, now, dry_run=dry_run)
    return replace(result, chunks_deleted=swept.deleted,
                   chunks_unreferenced_young=swept.unreferenced - len(swept.deleted))
