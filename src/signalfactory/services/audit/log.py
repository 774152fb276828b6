"""Record audit entries inside the caller's transaction; verify the chain; export it.

``record`` appends to the log in the unit of work of the action it records, so the entry
commits with the action or not at all. It takes the append lock, which is held until that
transaction ends: call it as the LAST write of the transaction, so a transaction never waits
for a row lock while holding the audit lock (on PostgreSQL that order could deadlock with a
transaction that holds the row and waits to append).

Who may read which entries (``GET /api/v1/audit``): admins of the default tenant (the
platform's operators: it owns the built-ins and the CLI's work) read every entry, global
ones (``tenant_id`` null: the global kill switch) included; admins of any other tenant read
their own tenant's entries only. Non-admins read none.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime

import rfc8785

from signalfactory.domain.audit import (
    AuditEntry,
    AuditHead,
    ChainReport,
    ChainWalk,
    NewAuditEntry,
    chain,
    plain_details,
)
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.tenants import DEFAULT_TENANT_ID
from signalfactory.observability.logging import get_logger
from signalfactory.services.platform import Platform
from signalfactory.services.ports import UnitOfWork

log = get_logger("signalfactory.audit")

#: how many entries a verify or an export reads per query
PAGE = 1000
MAX_LIST = 1000
_ACTION = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")

# The actions recorded by this code base (others may add their own of the same shape).
API_KEY_CREATED = "api_key.created"
API_KEY_REVOKED = "api_key.revoked"
TENANT_TIER_CHANGED = "tenant.tier_changed"
STRATEGY_VERSION_CREATED = "strategy.version_created"


def _text(value: str, what: str, most: int) -> str:
    value = value.strip()
    if not value or len(value) > most:
        raise BadInputError(f"an audit {what} must have 1 to {most} characters",
                            rule=f"audit_{what}")
    return value


def record(uow: UnitOfWork, actor: str, action: str, subject: str,
           details: Mapping[str, object] | None = None, tenant_id: int | None = None, *,
           at: datetime | None = None) -> AuditEntry:
    """Append one entry in ``uow``'s transaction (see the module note: call it last).

    ``actor``: who did it (``cli:<user>``, ``key:<id>``, ``system``, ``bot:<id>``);
    ``action``: dotted lower-case (``api_key.created``); ``subject``: what it was done to
    (``api_key:12``); ``details``: plain JSON, never a secret; ``tenant_id``: the tenant it
    concerns (None: the whole platform); ``at``: when (default: now, UTC).
    """
    if not _ACTION.match(action) or len(action) > 100:
        raise BadInputError(f"audit action {action!r} must be dotted lower-case words such "
                            "as 'api_key.created'", rule="audit_action")
    new = NewAuditEntry(at=(at or datetime.now(UTC)).astimezone(UTC),
                        actor=_text(actor, "actor", 200), action=action,
                        subject=_text(subject, "subject", 200),
                        details=plain_details(details), tenant_id=tenant_id)
    repo = uow.audit
    entry = chain(new, repo.lock_head())
    repo.append(entry)
    log.debug("audit entry recorded", seq=entry.seq, action=action, subject=entry.subject,
             actor=entry.actor, audit_tenant=tenant_id)
    return entry


def visible_tenant(tenant_id: int) -> int | None:
    """The tenant filter for an admin of ``tenant_id``: None (everything) for the default
    tenant's admins, their own tenant for everyone else."""
    return None if tenant_id == DEFAULT_TENANT_ID else tenant_id


def list_entries(uow: UnitOfWork, *, after_seq: int = 0, limit: int = 100,
                 tenant_id: int | None = None, action: str | None = None) -> list[AuditEntry]:
    if after_seq < 0:
        raise BadInputError("after must be 0 or a seq from an earlier page", rule="after")
    if not 1 <= limit <= MAX_LIST + 1:  # one more than a page: whether another page follows
        raise BadInputError(f"limit must be 1 to {MAX_LIST}", rule="limit")
    return uow.audit.page(after_seq=after_seq, limit=limit, tenant_id=tenant_id,
                          action=action or None)


def head(platform: Platform) -> AuditHead | None:
    with platform.database.read(primary=True) as uow:
        return uow.audit.head()


def _pages(platform: Platform, *, tenant_id: int | None = None,
           after_seq: int = 0) -> Iterator[list[AuditEntry]]:
    """Every entry in pages, read in one unit of work (one snapshot on SQLite)."""
    with platform.database.read(primary=True) as uow:
        while True:
            page = uow.audit.page(after_seq=after_seq, limit=PAGE, tenant_id=tenant_id)
            if not page:
                return
            yield page
            after_seq = page[-1].seq


def verify(platform: Platform, *, anchor: AuditHead | None = None,
           progress: Callable[[int], None] | None = None) -> ChainReport:
    """Walk the whole chain from its first entry; the report names the first broken entry
    (its seq and what is wrong). ``anchor``: a head recorded elsewhere (a backup manifest)
    that the chain must still contain."""
    walk = ChainWalk(anchor)
    for page in _pages(platform):
        intact = walk.feed(page)
        if progress is not None:
            progress(len(page))
        if not intact:
            break
    report = walk.report()
    if report.ok:
        log.info("audit chain verified", entries=report.entries,
                 head_seq=report.head.seq if report.head else 0)
    else:
        log.error("audit chain broken", broken_seq=report.broken.seq if report.broken else 0,
                  problem=report.broken.problem if report.broken else "")
    return report


def export(platform: Platform, write: Callable[[str], object], *,
           tenant_id: int | None = None, after_seq: int = 0) -> int:
    """Write entries as JSON lines (RFC 8785 canonical: each line is the hashed fields plus
    the hash); returns how many. A whole export verifies offline with ``verify_lines``."""
    count = 0
    for page in _pages(platform, tenant_id=tenant_id, after_seq=after_seq):
        for entry in page:
            write(rfc8785.dumps(entry.as_json()).decode() + "\n")
        count += len(page)
    return count


def _entry_from_line(number: int, line: str) -> AuditEntry:
    try:
        raw = json.loads(line)
        return AuditEntry(seq=int(raw["seq"]), at=datetime.fromisoformat(raw["at"]),
                          tenant_id=raw["tenant_id"], actor=raw["actor"],
                          action=raw["action"], subject=raw["subject"],
                          details=raw["details"], prev_hash=raw["prev_hash"],
                          hash=raw["hash"])
    except (ValueError, KeyError, TypeError) as exc:
        raise BadInputError(f"line {number} is not an audit entry ({exc}); give a file "
                            "written by `signalfactory audit export`",
                            rule="audit_export") from None


def verify_lines(lines: Iterable[str], *, anchor: AuditHead | None = None) -> ChainReport:
    """Verify a whole export (from seq 1) without the database."""
    walk = ChainWalk(anchor)
    for number, line in enumerate(lines, start=1):
        if line.strip() and not walk.feed([_entry_from_line(number, line)]):
            break
    return walk.report()


def parse_anchor(text: str) -> AuditHead:
    """``SEQ:HASH`` (as a backup manifest's ``audit_head`` shows it)."""
    seq, _, digest = text.partition(":")
    if not seq.isdigit() or int(seq) < 1 or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise BadInputError(f"anchor {text!r} must be SEQ:HASH, e.g. 42:<64 hex digits>",
                            rule="anchor")
    return AuditHead(int(seq), digest)
