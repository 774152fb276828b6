"""What a command-line process does once at start-up: the garbage collector's pause, the
settings loaded once for the command, and whether this process is a command at all.

The cyclic garbage collector is paused while a command-line process starts up.

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
import os
from collections.abc import Iterator
from contextlib import contextmanager

#: Where the root callback leaves the settings it loaded (``ctx.meta``, shared by the
#: command's context): the command's platform is built with them instead of loading them a
#: second time (``cli/common.py``).
COMMAND_SETTINGS = "signalfactory.settings"

_paused = [False]
_command_process = [False]


def pause() -> None:
    """Called by the ``signalfactory`` entry point, first thing."""
    _command_process[0] = True
    if gc.isenabled():
        gc.disable()
        _paused[0] = True


def resume() -> None:
    """End the pause, if this process is in one (idempotent)."""
    if _paused[0]:
        _paused[0] = False
        gc.freeze()
        gc.enable()


def in_command_process() -> bool:
    """Whether this process is a ``signalfactory`` command (not a test or a notebook calling
    the Typer app): then what a one-shot command counts in metrics is read by nobody
    (``observability/recording.py``)."""
    return _command_process[0]


@contextmanager
def pydantic_plugins_off() -> Iterator[None]:
    """Pydantic's plugins stay unloaded while the settings are defined and loaded by a
    one-shot command (as Typer does for its own parameters): looking for them reads the
    entry points of every installed distribution, some 10-20 ms of a command's start-up,
    and the platform installs none. Servers and workers load them as usual."""
    previous = os.environ.get("PYDANTIC_DISABLE_PLUGINS")
    os.environ["PYDANTIC_DISABLE_PLUGINS"] = "1"
    try:
        yield
    finally:
        if previous is None:
            del os.environ["PYDANTIC_DISABLE_PLUGINS"]
        else:
            os.environ["PYDANTIC_DISABLE_PLUGINS"] = previous
