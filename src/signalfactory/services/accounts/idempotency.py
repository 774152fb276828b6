"""Idempotency keys: claim a key for a request, then store its response or release the claim.

A key belongs to a tenant. Its first request runs; a replay of the same request within
``RETENTION`` gets the stored response; the same key with another request is a mismatch; a
key whose request is still running is in flight, unless its claim is older than
``STALE_CLAIM`` (its process died), when a retry takes it over.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from signalfactory.domain.accounts import Claim, StoredResponse
from signalfactory.services.platform import Platform
from signalfactory.services.ports import UnitOfWork

RETENTION = timedelta(hours=24)
# An in-flight claim older than this belongs to a process that died mid-request; a retry may
# take it over. Mutating POSTs are short (long work runs as jobs), so this is generous.
STALE_CLAIM = timedelta(minutes=5)
_ATTEMPTS = 3


def claim_in(uow: UnitOfWork, tenant_id: int, key: str, method: str, path: str,
             request_hash: str, now: datetime) -> Claim:
    """Claim ``key`` for this request, or say what became of an earlier one."""
    store = uow.idempotency
    for _ in range(_ATTEMPTS):
        record = store.find(tenant_id, key)
        if record is not None:
            if record.created_at < now - RETENTION:
                store.release(record.id)  # expired: the key is free again
            elif record.request_hash != request_hash:
                return Claim("mismatch", record.id)
            elif record.state == "complete":
                return Claim("replay", record.id, StoredResponse(
                    record.status_code or 200, record.headers, record.body or b""))
            else:
                if (record.locked_at or record.created_at) >= now - STALE_CLAIM:
                    return Claim("in_flight", record.id)
                taken = store.take_over(record.id, record.locked_at, now)
                return Claim("new" if taken else "in_flight", record.id)
        record_id = store.claim(tenant_id, key, method, path, request_hash, now)
        if record_id is not None:
            return Claim("new", record_id)
        # Another request claimed it between our read and insert: look again.
    return Claim("in_flight")


def claim(platform: Platform, tenant_id: int, key: str, method: str, path: str,
          request_hash: str) -> Claim:
    with platform.database.write() as uow:
        return claim_in(uow, tenant_id, key, method, path, request_hash,
                        platform.clock.now())


def complete(platform: Platform, record_id: int, status_code: int,
             headers: Sequence[tuple[str, str]], body: bytes) -> None:
    """Store the response of a claimed request, for replays."""
    with platform.database.write() as uow:
        uow.idempotency.complete(record_id, StoredResponse(status_code, tuple(headers), body),
                                 platform.clock.now())


def release(platform: Platform, record_id: int) -> None:
    """Forget a claim whose request did nothing (auth, validation, server errors)."""
    with platform.database.write() as uow:
        uow.idempotency.release(record_id)


def purge_expired(platform: Platform, now: datetime | None = None) -> int:
    """Delete records older than ``RETENTION``; how many."""
    cutoff = (now or platform.clock.now()) - RETENTION
    with platform.database.write() as uow:
        return uow.idempotency.purge(cutoff)
