"""The tamper-evident audit log, pure: entries, their hashes and the walk that checks a chain.

Each entry's ``hash`` is the SHA-256 of the RFC 8785 canonical JSON of the entry's fields,
``prev_hash`` (the previous entry's ``hash``) included. Changing any stored field of any entry
changes its hash, and changing a hash breaks the next entry's ``prev_hash``: a walk from the
first entry finds the first place where the stored rows stop being the rows that were written.
``seq`` counts 1, 2, 3... without gaps, so a deleted row in the middle shows as a gap; rows cut
off the end are caught by comparing with a head recorded elsewhere (every backup manifest).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import rfc8785

from signalfactory.domain.errors import BadInputError

#: ``prev_hash`` of the first entry
GENESIS_HASH = "0" * 64

JsonValue = str | int | float | bool | None | list["JsonValue"] | dict[str, "JsonValue"]


def canonical_time(at: datetime) -> str:
    """The form ``at`` is hashed in: UTC, microseconds, ``Z`` (what both databases keep)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def plain_details(details: Mapping[str, object] | None) -> dict[str, JsonValue]:
    """``details`` as the JSON the database will give back (tuples become lists), refused
    when it cannot be canonicalised: NaN or infinity, integers beyond 2**53, non-JSON values."""
    try:
        plain = json.loads(json.dumps(dict(details or {}), allow_nan=False))
        rfc8785.dumps(plain)
    except (TypeError, ValueError) as exc:  # rfc8785's errors are ValueErrors
        raise BadInputError(f"audit details must be plain JSON ({exc})",
                            rule="audit_details") from None
    if not isinstance(plain, dict):  # pragma: no cover - dict in, dict out
        raise BadInputError("audit details must be a JSON object", rule="audit_details")
    return plain


@dataclass(frozen=True)
class NewAuditEntry:
    """What a caller records; the log gives it its place (seq, prev_hash) and its hash."""

    at: datetime
    actor: str
    action: str
    subject: str
    details: dict[str, JsonValue]
    tenant_id: int | None = None


@dataclass(frozen=True)
class AuditHead:
    """The newest entry's place and hash: what a backup manifest records."""

    seq: int
    hash: str


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: datetime
    tenant_id: int | None
    actor: str
    action: str
    subject: str
    details: dict[str, JsonValue]
    prev_hash: str
    hash: str

    def hashed_fields(self) -> dict[str, JsonValue]:
        return {"seq": self.seq, "at": canonical_time(self.at), "tenant_id": self.tenant_id,
                "actor": self.actor, "action": self.action, "subject": self.subject,
                "details": self.details, "prev_hash": self.prev_hash}

    def computed_hash(self) -> str:
        """The hash these fields have now (equal to ``hash`` unless something was changed)."""
        return hashlib.sha256(rfc8785.dumps(self.hashed_fields())).hexdigest()

    def as_json(self) -> dict[str, JsonValue]:
        """One line of ``audit export``: every hashed field and the hash, so anyone can
        recompute the chain from the export alone."""
        return {**self.hashed_fields(), "hash": self.hash}


def chain(new: NewAuditEntry, head: AuditHead | None) -> AuditEntry:
    """``new`` placed after ``head`` (None: the first entry), with its hash."""
    unsealed = AuditEntry(seq=1 if head is None else head.seq + 1, at=new.at,
                          tenant_id=new.tenant_id, actor=new.actor, action=new.action,
                          subject=new.subject, details=new.details,
                          prev_hash=GENESIS_HASH if head is None else head.hash, hash="")
    return replace(unsealed, hash=unsealed.computed_hash())


@dataclass(frozen=True)
class ChainBreak:
    """The first entry at which the stored chain is not the written one."""

    seq: int
    problem: str

    def __str__(self) -> str:
        return f"entry {self.seq}: {self.problem}"


@dataclass(frozen=True)
class ChainReport:
    entries: int
    head: AuditHead | None
    broken: ChainBreak | None = None

    @property
    def ok(self) -> bool:
        return self.broken is None


class ChainWalk:
    """Checks entries fed in ``seq`` order, page by page; stops at the first break.

    ``anchor`` is a head recorded elsewhere (a backup manifest): the entry at its ``seq``
    must still carry its hash, and the chain must reach at least that far.
    """

    def __init__(self, anchor: AuditHead | None = None) -> None:
        self.anchor = anchor
        self.entries = 0
        self.head: AuditHead | None = None
        self.broken: ChainBreak | None = None

    def feed(self, entries: Iterable[AuditEntry]) -> bool:
        """Check the next entries; False once a break was found (feed no more)."""
        for entry in entries:
            problem = self._problem(entry)
            if problem is not None:
                self.broken = ChainBreak(entry.seq, problem)
                return False
            self.entries += 1
            self.head = AuditHead(entry.seq, entry.hash)
        return True

    def _problem(self, entry: AuditEntry) -> str | None:
        expected_seq = 1 if self.head is None else self.head.seq + 1
        if entry.seq != expected_seq:
            missing = (f"{expected_seq}" if entry.seq == expected_seq + 1
                       else f"{expected_seq}..{entry.seq - 1}")
            return (f"entries {missing} are missing (deleted): expected seq {expected_seq} "
                    f"next, found {entry.seq}")
        expected_prev = GENESIS_HASH if self.head is None else self.head.hash
        if entry.prev_hash != expected_prev:
            return (f"prev_hash {entry.prev_hash[:16]}... does not match the hash of entry "
                    f"{expected_seq - 1} ({expected_prev[:16]}...): an entry was replaced "
                    "or re-hashed")
        recomputed = entry.computed_hash()
        if entry.hash != recomputed:
            return (f"stored hash {entry.hash[:16]}... is not the hash of the entry's fields "
                    f"({recomputed[:16]}...): a field of this entry was changed after it was "
                    "written")
        if (self.anchor is not None and entry.seq == self.anchor.seq
                and entry.hash != self.anchor.hash):
            return (f"hash {entry.hash[:16]}... differs from the anchor "
                    f"{self.anchor.hash[:16]}... recorded for this entry: the chain was "
                    "rewritten from here on")
        return None

    def report(self) -> ChainReport:
        broken = self.broken
        if broken is None and self.anchor is not None and (
                self.head is None or self.head.seq < self.anchor.seq):
            have = 0 if self.head is None else self.head.seq
            broken = ChainBreak(have + 1, f"the chain ends at entry {have} but the anchor "
                                          f"records entry {self.anchor.seq}: entries were "
                                          "deleted from the end")
        return ChainReport(entries=self.entries, head=self.head, broken=broken)
