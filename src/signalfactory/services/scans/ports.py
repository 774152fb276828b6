"""Ports of scans."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from signalfactory.domain.scans import NewScan, ScanResult, StoredScan


class ScanRepository(Protocol):
    """Stored scans and their ranked results."""

    def add(self, scan: NewScan, results: Sequence[ScanResult] = ()) -> int:
        """Store a scan and its ranking; returns the scan id."""
        ...

    def get(self, tenant_id: int, scan_id: int) -> StoredScan | None:
        """The tenant's scan with its results in rank order; None for another tenant's."""
        ...

    def recent(self, tenant_id: int, limit: int) -> list[StoredScan]:
        """The tenant's newest scans first, without their results."""
        ...
