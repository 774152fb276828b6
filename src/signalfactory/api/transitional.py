"""TRANSITIONAL: calls into API modules not yet moved behind repositories.

Deleted when the accounts area's ``enforce_quota`` takes a unit of work (then routers call
it with their ``uow``).
"""

from __future__ import annotations

from signalfactory.api.auth import Principal
from signalfactory.api.quotas import enforce_quota
from signalfactory.services.ports import UnitOfWork


def enforce_quota_in(uow: UnitOfWork, principal: Principal, kind: str) -> None:
    """``enforce_quota`` inside ``uow``'s transaction (a daily quota is consumed with it)."""
    enforce_quota(uow.connection, principal, kind)  # type: ignore[attr-defined]
