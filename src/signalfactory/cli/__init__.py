"""The ``signalfactory`` command line (Typer + rich). Each command calls a service.

``main`` answers ``signalfactory version`` before importing Typer (whose parameter handling
loads pydantic: most of a 150 ms budget); everything else goes through the Typer app in
``cli/main.py``, which imports each command's module only when that command runs.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from signalfactory.cli.main import app

__all__ = ["app", "main"]


def main() -> None:
    if sys.argv[1:] == ["version"]:
        from signalfactory import __version__

        sys.stdout.write(__version__ + "\n")
        return
    from signalfactory.cli import start_up

    start_up.pause()
    try:
        from signalfactory.cli.main import main as run

        run()
    finally:
        start_up.resume()  # a command that never built a platform (a caller's process lives on)


def __getattr__(name: str) -> Any:  # noqa: ANN401 - the Typer app
    if name == "app":
        from signalfactory.cli.main import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
