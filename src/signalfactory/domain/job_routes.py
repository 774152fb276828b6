"""Which broker queue a job kind goes to: one table, for Celery's real-time, default and bulk
queues. The embedded runner does not use it: it keeps ordering by the job's priority column.

Real-time work is what makes or acts on a signal now (collectors, trading ticks and kill
sweeps); bulk work is long and can wait (backtests, scans, backups, archives, retention,
reports, campaign fan-out); everything else is default. ``SIGNALFACTORY_CELERY_ROUTES``
(kind -> class) overrides the table per installation.
"""

from __future__ import annotations

from collections.abc import Mapping

REALTIME = "realtime"
DEFAULT = "default"
BULK = "bulk"
#: the queue classes in the order a worker consuming several of them prefers them
QUEUE_CLASSES = (REALTIME, DEFAULT, BULK)

#: job kind -> queue class; a kind not listed is default work
ROUTES: Mapping[str, str] = {
    "collect": REALTIME,
    "collect_source": REALTIME,
    "trading.tick": REALTIME,
    "trading.kill_sweep": REALTIME,
    "campaign.chunk": DEFAULT,
    "backtest": BULK,
    "backtest.chunk": BULK,
    "scan": BULK,
    "backup": BULK,
    "backup.prune": BULK,
    "backup.pitr": BULK,
    "archive": BULK,
    "retention": BULK,
    "prune_jobs": BULK,
    "trading.daily_report": BULK,
    "campaign.fanout": BULK,
}


def queue_class(kind: str, overrides: Mapping[str, str] | None = None) -> str:
    """The queue class of a job kind: the override, else the table, else default."""
    if overrides and kind in overrides:
        return overrides[kind]
    return ROUTES.get(kind, DEFAULT)


def queue_name(base: str, cls: str) -> str:
    """The broker queue of a class: default work keeps the base name (``celery_queue``), so a
    deployment upgraded from one queue drains what is already in it."""
    return base if cls == DEFAULT else f"{base}.{cls}"
