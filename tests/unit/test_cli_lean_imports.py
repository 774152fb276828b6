"""One-shot commands load less at start-up, and what they print or log stays the same.

structlog is imported without rich (``cli/structlog_import.py``); rich loads only when a
command prints through it (``cli/common.py``); TA-Lib's registry entries are built when a
rule first names them (``domain/indicators/registry.py``).
"""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys

import pytest

from signalfactory.domain.indicators.registry import BUILTINS, build_registry
from signalfactory.domain.indicators.talib_backed import talib_function_names

# Logs an exception through structlog and through the standard library, in console and JSON
# format, then says whether rich was loaded. argv[1]: how structlog is imported.
_LOG_AN_EXCEPTION = r"""
import json, logging, sys
if sys.argv[1] == "lean":
    from signalfactory.cli.structlog_import import import_structlog_without_rich
    import_structlog_without_rich()
else:
    import rich.console, structlog
from signalfactory.observability.logging import configure_logging, get_logger
for fmt in ("console", "json"):
    configure_logging(fmt, "INFO")
    try:
        {}["missing"]
    except KeyError:
        get_logger("probe").exception("failed", token="sf_live_abcdefghijkl")
        logging.getLogger("probe.stdlib").exception("stdlib failed")
print(json.dumps("rich" in sys.modules))
"""
# the module (the package's attribute of that name is the registry itself)
registry_module = importlib.import_module("signalfactory.domain.indicators.registry")
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z")


def _logged(how: str) -> tuple[str, bool]:
    done = subprocess.run([sys.executable, "-c", _LOG_AN_EXCEPTION, how], capture_output=True,
                          text=True, check=True, timeout=60)
    *lines, rich_loaded = done.stdout.splitlines()
    return _TIMESTAMP.sub("<ts>", "\n".join(lines)), json.loads(rich_loaded)


def test_exceptions_are_logged_the_same_without_rich() -> None:
    lean, lean_rich = _logged("lean")
    usual, usual_rich = _logged("usual")
    assert (lean_rich, usual_rich) == (False, True)
    assert "Traceback (most recent call last)" in lean
    assert "KeyError: 'missing'" in lean and "stdlib failed" in lean
    assert "abcdefghijkl" not in lean  # redaction still applies
    assert lean == usual


def test_scan_and_backtest_modules_load_no_rich() -> None:
    probe = ("import sys, json\nimport signalfactory.cli.scans, signalfactory.cli.backtest\n"
             "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'rich')))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, timeout=60)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_the_console_is_made_on_first_use(capsys: pytest.CaptureFixture[str]) -> None:
    from signalfactory.cli.common import _ConsoleOnFirstUse

    console = _ConsoleOnFirstUse(stderr=True)
    assert console._console is None
    console.print("[bold]hello[/]", highlight=False)
    assert console.made() is console.made()
    assert capsys.readouterr().err == "hello\n"


def test_registry_entries_are_built_when_first_looked_up(
        monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str] = []
    real = registry_module.talib_indicator

    def counting(ta_name: str, registry_name: str | None = None):  # type: ignore[no-untyped-def]
        built.append(ta_name)
        return real(ta_name, registry_name=registry_name)

    monkeypatch.setattr(registry_module, "talib_indicator", counting)
    fresh = build_registry()
    names = [b.name for b in BUILTINS] + [
        f"talib_{n.lower()}" if n.lower() in {b.name for b in BUILTINS} else n.lower()
        for n in talib_function_names()]
    assert list(fresh) == names and len(fresh) == len(names)
    assert "sma" in fresh and "ema" in fresh and "no_such" not in fresh
    assert fresh.get("no_such") is None
    assert built == []
    first = fresh["sma"]
    assert fresh["sma"] is first and fresh.get_or_raise("SMA") is first
    assert built == ["SMA"]
    assert first.outputs == registry_module.registry["sma"].outputs
    with pytest.raises(KeyError):
        fresh["no_such"]
    assert len(dict(fresh.items())) == len(names)  # everything is built when asked for


def test_a_name_is_registered_once() -> None:
    from signalfactory.domain.indicators.registry import IndicatorRegistry

    with pytest.raises(ValueError, match="registered twice"):
        IndicatorRegistry(BUILTINS[:1], on_demand=[(BUILTINS[0].name, lambda: BUILTINS[0])])
