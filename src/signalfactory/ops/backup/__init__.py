"""Encrypted backups with verified restores: create, list, verify, restore, prune, DR drill.

The marker file ``<home>/restore-in-progress`` exists while a restore runs (``/readyz``
reports it); see :mod:`signalfactory.ops.backup.restore`.

Names are imported on first use (PEP 562): every platform imports ``ops.backup.metrics`` for
its scrape-time gauges, and should not load the backup, restore and drill machinery with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from signalfactory.ops.backup.create import create_backup, run_scheduled_backup
    from signalfactory.ops.backup.drill import run_drill
    from signalfactory.ops.backup.prune import Policy, prune_backups
    from signalfactory.ops.backup.restore import restore_backup, restore_marker
    from signalfactory.ops.backup.verify import verify_backup

_WHERE = {"create_backup": "create", "run_scheduled_backup": "create", "run_drill": "drill",
          "Policy": "prune", "prune_backups": "prune", "restore_backup": "restore",
          "restore_marker": "restore", "verify_backup": "verify"}


def __getattr__(name: str) -> Any:  # noqa: ANN401 - whatever the named module defines
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = ["Policy", "create_backup", "prune_backups", "restore_backup", "restore_marker",
           "run_drill", "run_scheduled_backup", "verify_backup"]
