"""`backup prune`: keep the last N, one per day for D days, per week for W weeks, per month
for M months; delete the rest. The plan is computed from the listing alone, so it is the same
on a local directory and on S3.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from signalfactory.domain.errors import BadInputError
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

    def to_dict(self) -> dict[str, object]:
        return {"keep": [{"id": k, "reasons": v} for k, v in sorted(self.keep.items())],
                "delete": sorted(self.delete), "incomplete": sorted(self.incomplete)}


def created_at(backup_id: str) -> datetime:
    """The snapshot time encoded in a backup id (``sf-YYYYmmddTHHMMSSZ-xxxxxx``)."""
    try:
        return datetime.strptime(backup_id.split("-")[1], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except (IndexError, ValueError) as exc:
        raise BadInputError(f"{backup_id!r} is not a backup id") from exc


def plan(ids: list[str], policy: Policy) -> PrunePlan:
    policy.validate()
    newest_first = sorted(ids, key=created_at, reverse=True)
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
    return result
