"""Trading transitions, audited and logged in one place.

Every transition (an account or key added, a key revoked or promoted, a bot created, started
or stopped, an order placed or cancelled, a state change, a kill switch step, a reconciliation
mismatch) calls :func:`record` inside the unit of work that makes it, as that transaction's
last write, so the audit entry commits with the change or not at all. Details are plain JSON
and never carry a secret.
"""

from __future__ import annotations

from collections.abc import Mapping

from signalfactory.observability.logging import get_logger
from signalfactory.services.platform import Platform
from signalfactory.services.ports import UnitOfWork

log = get_logger("signalfactory.trading")

ACCOUNT_CREATED = "exchange_account.created"
CREDENTIAL_ADDED = "exchange_credential.added"
CREDENTIAL_REVOKED = "exchange_credential.revoked"
CREDENTIAL_PROMOTED = "exchange_credential.promoted"
BOT_CREATED = "bot.created"
BOT_STARTED = "bot.started"
BOT_STOPPED = "bot.stopped"
ORDER_PLACED = "order.placed"
ORDER_CANCELLED = "order.cancelled"
ORDER_REJECTED = "order.rejected"
STATE_CHANGED = "trading_state.changed"
DAILY_LOSS_WARNING = "trading_state.daily_loss_warning"
KILL_SWITCH_ENGAGED = "kill_switch.engaged"
KILL_SWITCH_REARMED = "kill_switch.rearmed"
KILL_SWITCH_RESUMED = "kill_switch.resumed"
RECONCILIATION_MISMATCH = "reconciliation.mismatch"

#: actions logged at warning level (a person should notice them)
_WARN = frozenset({KILL_SWITCH_ENGAGED, STATE_CHANGED, DAILY_LOSS_WARNING,
                   RECONCILIATION_MISMATCH, CREDENTIAL_REVOKED})


def record(platform: Platform, uow: UnitOfWork, *, actor: str, action: str, subject: str,
           details: Mapping[str, object] | None = None, tenant_id: int | None = None) -> None:
    """Audit (when the platform has an audit log) and log one transition."""
    fields = {"action": action, "subject": subject, "actor": actor, "trading_tenant": tenant_id,
              **{f"detail_{k}": v for k, v in (details or {}).items()}}
    if action in _WARN:
        log.warning("trading transition", **fields)
    elif action == ORDER_PLACED:  # the busiest one: hundreds a second at full speed
        log.debug("trading transition", **fields)
    else:
        log.info("trading transition", **fields)
    if platform.audit is not None:
        platform.audit(uow, actor, action, subject, dict(details or {}), tenant_id)
