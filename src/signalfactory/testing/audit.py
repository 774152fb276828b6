"""The audit log in memory (memory transactions are serialised already: no lock to take)."""

from __future__ import annotations

from dataclasses import dataclass, field

from signalfactory.domain.audit import AuditEntry, AuditHead
from signalfactory.domain.errors import ConflictError
from signalfactory.testing.memory import MemoryState


@dataclass
class AuditStore:
    entries: list[AuditEntry] = field(default_factory=list)


def audit_store(state: MemoryState) -> AuditStore:
    return state.store("audit", AuditStore)


class MemoryAuditRepository:
    def __init__(self, state: MemoryState) -> None:
        self.store = audit_store(state)

    def lock_head(self) -> AuditHead | None:
        return self.head()

    def append(self, entry: AuditEntry) -> None:
        # the database's primary key and unique prev_hash, as constraints
        if any(e.seq == entry.seq or e.prev_hash == entry.prev_hash
               for e in self.store.entries):
            raise ConflictError(f"audit entry {entry.seq} or its predecessor is taken")
        self.store.entries.append(entry)

    def head(self) -> AuditHead | None:
        if not self.store.entries:
            return None
        newest = self.store.entries[-1]
        return AuditHead(newest.seq, newest.hash)

    def page(self, *, after_seq: int = 0, limit: int = 1000, tenant_id: int | None = None,
             action: str | None = None) -> list[AuditEntry]:
        found = [e for e in self.store.entries
                 if e.seq > after_seq and (tenant_id is None or e.tenant_id == tenant_id)
                 and (action is None or e.action.startswith(action))]
        return found[:limit]
