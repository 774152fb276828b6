"""Encrypted backups with verified restores: create, list, verify, restore, prune, DR drill.

The marker file ``<home>/restore-in-progress`` exists while a restore runs (``/readyz``
reports it); see :mod:`signalfactory.ops.backup.restore`.
"""

from signalfactory.ops.backup.create import create_backup, run_scheduled_backup
from signalfactory.ops.backup.drill import run_drill
from signalfactory.ops.backup.prune import Policy, prune_backups
from signalfactory.ops.backup.restore import restore_backup, restore_marker
from signalfactory.ops.backup.verify import verify_backup

__all__ = ["Policy", "create_backup", "prune_backups", "restore_backup", "restore_marker",
           "run_drill", "run_scheduled_backup", "verify_backup"]
