"""Read-only mode as the API and the CLI see it: status, and the operator's switch.

The mode itself is enforced by the database adapter (``Database.write()`` refuses with
``ReadOnlyError``; see adapters/storage/read_only.py). Switching it is audited when the
database takes the entry; while the primary is down it cannot, and the log records it.
"""

from __future__ import annotations

from dataclasses import dataclass

from signalfactory.domain.errors import BadInputError, TemporaryError
from signalfactory.observability.logging import get_logger
from signalfactory.services.audit import log as audit
from signalfactory.services.platform import Platform

log = get_logger("signalfactory.read_only")

MAX_REASON = 500


@dataclass(frozen=True)
class ReadOnlyStatus:
    read_only: bool
    reason: str | None


def status(platform: Platform) -> ReadOnlyStatus:
    reason = platform.database.read_only()
    return ReadOnlyStatus(reason is not None, reason)


def switch(platform: Platform, on: bool, reason: str = "", *,
           actor: str = "cli") -> ReadOnlyStatus:
    """Switch the operator's read-only mode on (with why) or off, for every process."""
    reason = reason.strip()
    if len(reason) > MAX_REASON:
        raise BadInputError(f"the reason is longer than {MAX_REASON} characters; shorten it",
                            rule="reason")
    if on and not reason:
        raise BadInputError("say why the platform goes read-only (--reason 'failover to the "
                            "new primary')", rule="reason")
    if not on:
        # Switch off first: the audit entry below is a write.
        platform.database.set_read_only(None)
    try:
        with platform.database.write() as uow:
            audit.record(uow, actor, "ops.read_only_" + ("on" if on else "off"), "platform",
                         {"reason": reason})
    except TemporaryError as exc:  # the primary is down: the switch still works
        log.warning("read-only switch not audited: the database takes no writes",
                    on=on, reason=reason, error=str(exc))
    if on:
        platform.database.set_read_only(reason)
    return status(platform)
