"""Port of the audit log."""

from __future__ import annotations

from typing import Protocol

from signalfactory.domain.audit import AuditEntry, AuditHead


class AuditRepository(Protocol):
    """Append-only entries in ``seq`` order. Appends are serialised: ``lock_head`` takes the
    append lock (held until the transaction ends) and only then reads the newest entry, so
    two transactions never chain onto the same predecessor."""

    def lock_head(self) -> AuditHead | None:
        """Take the append lock, then return the newest entry's place (None: empty log)."""
        ...

    def append(self, entry: AuditEntry) -> None:
        """Store an entry made by ``domain.audit.chain`` on the head ``lock_head`` gave."""
        ...

    def head(self) -> AuditHead | None:
        """The newest entry's place, without locking (reads, backups)."""
        ...

    def page(self, *, after_seq: int = 0, limit: int = 1000, tenant_id: int | None = None,
             action: str | None = None) -> list[AuditEntry]:
        """Entries with ``seq > after_seq`` in ``seq`` order, at most ``limit``; only the
        tenant's when ``tenant_id`` is given, only actions starting with ``action``."""
        ...
