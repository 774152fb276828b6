"""Whether this process records Prometheus metrics.

A one-shot command (``signalfactory scan``, ``backtest``...) serves no ``/metrics`` and
pushes nothing: what it would count dies with it, and importing ``prometheus_client`` (with
the metric definitions) was a sizeable part of its start-up. The command line turns
recording off for such commands (``cli/main.py``), unless ``PROMETHEUS_MULTIPROC_DIR`` is
set: then the values go to files a serving process sums, and they are recorded as usual.
Every other process (servers, workers, tests) records. Code that counts takes the metric
definitions from ``metrics()`` (None: not recording), so that nothing imports them at
module level on a command's path.
"""

from __future__ import annotations

import os
from types import ModuleType

_off = [False]
_module: list[ModuleType] = []


def stop_recording_unless_shared() -> None:
    """For a process nobody scrapes: stop recording, unless the values are shared through
    prometheus_client's multiprocess files."""
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        _off[0] = True


def recording() -> bool:
    return not _off[0]


def metrics() -> ModuleType | None:
    """``signalfactory.observability.metrics`` (imported on the first call), or None when
    this process does not record."""
    if _off[0]:
        return None
    if not _module:
        from signalfactory.observability import metrics as defined

        _module.append(defined)
    return _module[0]
