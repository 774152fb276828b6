"""Ports of scans."""

from __future__ import annotations

from typing import Protocol


class ScanRepository(Protocol):
    """Stored scans and their ranked results."""
