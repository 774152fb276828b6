"""structlog imported without rich, for one-shot commands that time a user feels.

``import structlog`` imports its console renderer, which imports rich's traceback and pretty
printers (with Pygments and attrs) to draw exceptions: a tenth of a one-shot command's start.
They are never used here: ``observability.logging`` puts ``format_exc_info`` before every
renderer, so an exception reaches the renderer as text, which it writes as it is, with or
without rich. Without rich, structlog picks its plain formatter for the case that never
comes; rich stays importable afterwards (the tables a command prints use it).

Only when neither is loaded yet; ``tests/unit/test_cli_lean_imports.py`` checks the log lines
of an exception are the same both ways.
"""

from __future__ import annotations

import sys


def import_structlog_without_rich() -> None:
    if "structlog" in sys.modules or "rich" in sys.modules:
        return  # already decided, or rich is loaded anyway (then structlog's use is free)
    sys.modules["rich"] = None  # type: ignore[assignment]  # makes `import rich` fail
    try:
        import structlog  # noqa: F401 - imported for its module state
    finally:
        if "rich" in sys.modules and sys.modules["rich"] is None:
            del sys.modules["rich"]
