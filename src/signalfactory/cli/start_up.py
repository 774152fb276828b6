"""The cyclic garbage collector is paused while a command-line process starts up.

Start-up creates several hundred thousand long-lived objects (modules, classes, functions,
SQLAlchemy's tables) and almost no garbage, yet with the default thresholds the collector
ran some 240 times over them: about 90 ms of a 700 ms cold ``signalfactory backtest``.
``pause`` is called first thing by the ``signalfactory`` entry point; ``resume`` once the
platform is built (``cli/common.py``) or before a service starts (``cli/main.py``): what
exists then is moved out of the collector's reach for good (``gc.freeze``, as a server does
after its start-up) and collection goes on as usual for the command's own work.

Only a process that ``pause`` was called in is touched: a test or a notebook calling the
Typer app keeps its collector as it was.
"""

from __future__ import annotations

import gc

_paused = [False]


def pause() -> None:
    if gc.isenabled():
        gc.disable()
        _paused[0] = True


def resume() -> None:
    """End the pause, if this process is in one (idempotent)."""
    if _paused[0]:
        _paused[0] = False
        gc.freeze()
        gc.enable()
