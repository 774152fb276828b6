"""One-shot commands load less at start-up, and what they print or log stays the same.

structlog is imported without rich (``cli/structlog_import.py``); rich loads only when a
command prints through it (``cli/common.py``); TA-Lib's registry entries are built when a
rule first names them (``domain/indicators/registry.py``). A real ``scan`` and ``backtest``
process (``python -m signalfactory``) loads none of the modules only other commands need,
loads its settings once, pauses the garbage collector until its platform is built
(``cli/start_up.py``) and records no metrics nobody could read
(``observability/recording.py``).
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

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


RULE = "entry: crosses_above(sma(close, 10), sma(close, 30)) and rsi(close, 14) < 70"
#: Modules a scan or a backtest must not load: each belongs to other commands (or to a
#: server), and each was a measurable part of these commands' start-up.
NOT_FOR_SCAN_OR_BACKTEST = (
    "prometheus_client",  # metrics nobody reads in a one-shot command
    "signalfactory.observability.metrics",
    "croniter",  # the default schedules are known valid
    "numpy.ma",  # np.unique's first call
    "pandas",
    "signalfactory.domain.delivery",  # channels are made on first use
    "signalfactory.adapters.channels.webhook",
    "signalfactory.adapters.channels.email",
    "signalfactory.adapters.channels.apprise_channel",
    "signalfactory.adapters.sandbox.pool",  # the sandbox is made on first use
    "signalfactory.domain.sandbox",
    "signalfactory.services.sandbox.strategies",
    "signalfactory.services.audit.log",  # nothing is audited when nothing changes
    "signalfactory.domain.sources",
    # the whole schema (delivery, trading, sources...): these commands' repositories need
    # only ``tables_core``; migrations, backups and retention import ``tables``
    "signalfactory.adapters.storage.tables",
    "signalfactory.adapters.storage.tables_trading",
    "signalfactory.adapters.storage.signal_events",  # the signal feed is made on first use
    "signalfactory.services.streaming.ports",
)

# Runs the command line as ``python -m signalfactory`` does, counting settings loads; at
# exit prints the loaded modules, the collector's state and whether metrics are recorded.
_COMMAND = r"""
import atexit, gc, json, runpy, sys
import signalfactory.settings as settings_module
loads = [0]
real = settings_module.load_settings
def counting(**overrides):
    loads[0] += 1
    return real(**overrides)
settings_module.load_settings = counting
def report():
    from signalfactory.observability.recording import recording
    print(json.dumps({"modules": sorted(sys.modules), "loads": loads[0],
                      "gc_enabled": gc.isenabled(), "frozen": gc.get_freeze_count(),
                      "recording": recording()}), file=sys.stderr)
atexit.register(report)
sys.argv = ["signalfactory", *sys.argv[1:]]
runpy.run_module("signalfactory", run_name="__main__")
"""


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with sample bars whose built-in strategies are stored already (the first
    command that needs them stores them, audited)."""
    path = tmp_path_factory.mktemp("lean") / "home"
    for argv in (("sample", "--symbols", "3", "--bars", "300"), ("strategies", "list")):
        subprocess.run([sys.executable, "-m", "signalfactory", *argv],
                       env={**os.environ, "SIGNALFACTORY_HOME": str(path)},
                       capture_output=True, check=True, timeout=120)
    return path


def _command(home: Path, *argv: str, **env: str) -> dict[str, object]:
    run_env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    done = subprocess.run([sys.executable, "-c", _COMMAND, *argv],
                          env={**run_env, "SIGNALFACTORY_HOME": str(home), **env},
                          capture_output=True, text=True, check=True, timeout=120)
    found: dict[str, object] = json.loads(done.stderr.strip().splitlines()[-1])
    return found


@pytest.mark.parametrize("argv", [
    ("scan", "--rule", RULE, "--json"),
    ("backtest", "--rule", RULE, "--symbol", "SAAA", "--json"),
    ("backtest", "--strategy", "sma_cross", "--symbol", "SAAB"),  # prints through rich
])
def test_scan_and_backtest_load_only_what_they_use(home: Path, argv: tuple[str, ...]) -> None:
    found = _command(home, *argv)
    modules = set(found["modules"])  # type: ignore[call-overload]
    assert "signalfactory.bootstrap" in modules  # the probe sees the command's own imports
    assert sorted(m for m in NOT_FOR_SCAN_OR_BACKTEST if m in modules) == []
    assert found["loads"] == 1  # the root callback's settings build the platform
    # the collector was paused during start-up, then resumed with the start-up heap frozen
    assert found["gc_enabled"] is True and found["frozen"] > 10_000  # type: ignore[operator]
    assert found["recording"] is False


def test_a_command_records_metrics_when_they_are_shared(home: Path, tmp_path: Path) -> None:
    found = _command(home, "scan", "--rule", RULE, "--json",
                     PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    assert found["recording"] is True
    assert "prometheus_client" in found["modules"]  # type: ignore[operator]


def test_calling_the_app_in_process_leaves_gc_and_metrics_alone() -> None:
    """Tests and notebooks call the Typer app: their collector and metrics are untouched."""
    from signalfactory.cli import start_up
    from signalfactory.observability.recording import metrics, recording
    from tests.helpers import cli

    frozen = gc.get_freeze_count()
    assert cli("strategies", "--help").exit_code == 0
    assert not start_up.in_command_process()
    assert gc.isenabled() and gc.get_freeze_count() == frozen
    assert recording() and metrics() is not None


def test_the_gc_pause_ends_once_and_only_where_it_began(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from signalfactory.cli import start_up

    monkeypatch.setattr(start_up, "_paused", [False])
    monkeypatch.setattr(start_up, "_command_process", [False])
    frozen = gc.get_freeze_count()
    start_up.resume()  # never paused: nothing happens
    assert gc.isenabled() and gc.get_freeze_count() == frozen
    try:
        start_up.pause()
        assert not gc.isenabled() and start_up.in_command_process()
        start_up.resume()
        assert gc.isenabled()
        start_up.resume()
        assert gc.isenabled()
    finally:
        gc.enable()
        gc.unfreeze()  # the test process's heap goes back to the collector


def test_pydantic_plugins_are_off_only_inside_the_block(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from signalfactory.cli import start_up

    monkeypatch.delenv("PYDANTIC_DISABLE_PLUGINS", raising=False)
    with start_up.pydantic_plugins_off():
        assert os.environ["PYDANTIC_DISABLE_PLUGINS"] == "1"
    assert "PYDANTIC_DISABLE_PLUGINS" not in os.environ
    monkeypatch.setenv("PYDANTIC_DISABLE_PLUGINS", "some_plugin")
    with start_up.pydantic_plugins_off():
        pass
    assert os.environ["PYDANTIC_DISABLE_PLUGINS"] == "some_plugin"


def test_the_whole_schema_keeps_its_order_and_the_core_is_its_start() -> None:
    """``tables`` defines every table on the metadata ``tables_core`` starts: in the schema's
    order (backups and checksums list tables in it), each after the tables it refers to."""
    probe = ("import json\n"
             "from signalfactory.adapters.storage import tables_core\n"
             "core = list(tables_core.metadata.tables)\n"
             "from signalfactory.adapters.storage import tables\n"
             "print(json.dumps([core, list(tables.metadata.tables)]))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, timeout=60)
    core, whole = json.loads(done.stdout.strip().splitlines()[-1])
    from signalfactory.adapters.storage import tables, tables_core

    assert tables.metadata is tables_core.metadata
    assert whole[:len(core)] == core and len(whole) > len(core)
    assert {"backtests", "bar_segments", "scans", "strategies"} <= set(core)
    assert {"deliveries", "orders", "sources", "subscriptions"} <= set(whole) - set(core)
    seen: set[str] = set()
    for name in whole:
        table = tables.metadata.tables[name]
        assert {fk.column.table.name for fk in table.foreign_keys} - {name} <= seen, name
        seen.add(name)


def test_the_signal_feed_is_made_on_first_use(tmp_path: Path) -> None:
    from signalfactory.adapters.storage.signal_events import SqlSignalEventSource
    from signalfactory.bootstrap import build_platform
    from signalfactory.settings import Settings

    platform = build_platform(Settings(home=tmp_path / "home"), migrate_db=True)
    try:
        feed = platform.signal_feed
        assert feed is not None and feed._feed is None  # type: ignore[attr-defined]
        assert isinstance(feed.events, SqlSignalEventSource)
        assert feed.notifications is None  # SQLite: polling alone
        assert feed.events is feed.events and feed.events.max_id() == 0
    finally:
        platform.close()
