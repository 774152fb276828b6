"""TA-Lib imported without pandas, for one-shot commands that time a user feels.

``import talib`` imports pandas (about 0.25 s in a fresh process, more than TA-Lib itself) only
to let its functions accept and return ``pandas.Series``. Nothing in this package hands TA-Lib
anything but NumPy arrays, and for NumPy arrays TA-Lib calls the same compiled function either
way, so the values are identical; ``tests/unit/test_cli_imports.py`` checks both. A command
that calls this before its indicators load (``scan``, ``backtest``) starts that much sooner.

Only the CLI process is affected, and only when neither TA-Lib nor pandas is loaded yet: a
server or worker imports TA-Lib the usual way, and pandas itself stays importable (sources and
reports import it when they need it). Uploaded strategies run in a separate sandbox process.
"""

from __future__ import annotations

import sys

_HELD_OUT = ("pandas", "polars")


def import_talib_without_pandas() -> None:
    if "talib" in sys.modules or any(name in sys.modules for name in _HELD_OUT):
        return  # already decided, or pandas is loaded anyway (then TA-Lib's wrapping is free)
    for name in _HELD_OUT:
        sys.modules[name] = None  # type: ignore[assignment]  # makes `import pandas` fail
    try:
        import talib  # noqa: F401 - imported for its module state
    finally:
        for name in _HELD_OUT:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
