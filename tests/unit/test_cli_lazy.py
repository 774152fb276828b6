"""The root CLI imports a command's module only when the command runs, yet ``--help`` lists
every command with its own help text."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import pytest
import typer.main

from tests.helpers import cli

cli_main = importlib.import_module("signalfactory.cli.main")  # the package's `main` is a function
HEAVY = ("sqlalchemy", "alembic", "numba", "numpy", "pandas", "fastapi", "signalfactory.bootstrap")


def _modules_after(code: str) -> set[str]:
    probe = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, timeout=60)
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY or m in HEAVY)


def test_importing_the_cli_loads_no_database_or_numba_module() -> None:
    assert _heavy(_modules_after("import signalfactory.cli.main")) == []


@pytest.mark.parametrize("argv", [["--help"], ["version"]])
def test_help_and_version_load_no_database_or_numba_module(argv: list[str]) -> None:
    code = ("import contextlib, io\nfrom signalfactory.cli.main import app\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            f"    app({argv!r})")
    assert _heavy(_modules_after(code)) == []


def test_help_lists_every_command_with_its_help() -> None:
    cli_main._loaded.clear()
    lazy = cli("--help")
    assert lazy.exit_code == 0
    for name, entry in cli_main.LAZY_COMMANDS.items():
        assert name in lazy.output
        assert " ".join(entry.help.split()[:2]) in lazy.output  # the panel wraps the rest
    assert "version" in lazy.output
    # The same page once every command is really imported: the table says what they say.
    for name in cli_main.LAZY_COMMANDS:
        cli_main.load_command(name)
    assert cli("--help").output == lazy.output


def test_the_help_table_matches_each_command() -> None:
    for name, entry in cli_main.LAZY_COMMANDS.items():
        command = cli_main.load_command(name)
        assert command.name == name
        first_paragraph = (command.help or "").split("\n\n")[0].strip()
        assert first_paragraph == entry.help, name


def test_every_registered_command_is_reachable() -> None:
    group = typer.main.get_command(cli_main.app)
    assert isinstance(group, cli_main.LazyGroup)
    ctx = group.make_context("signalfactory", ["version"])
    for name in group.list_commands(ctx):
        _, command, _ = group.resolve_command(ctx, [name])
        assert command is not None and not isinstance(command, cli_main._Placeholder), name


def test_a_subcommand_group_runs_through_the_lazy_root() -> None:
    result = cli("db", "--help")
    assert result.exit_code == 0
    assert "upgrade" in result.output and "downgrade" in result.output


def test_an_unknown_command_still_suggests_the_close_one() -> None:
    result = cli("scna")
    assert result.exit_code == 2
    assert "scan" in result.output + (result.stderr or "")


def test_version_prints_the_package_version() -> None:
    from signalfactory import __version__

    result = cli("version")
    assert result.exit_code == 0 and result.output.strip() == __version__


def test_modules_probe_sees_heavy_imports() -> None:
    """The probe can fail: importing the bootstrap does load SQLAlchemy."""
    assert "sqlalchemy" in _heavy(_modules_after("import signalfactory.bootstrap"))



def test_the_entry_point_prints_the_version_without_typer() -> None:
    from signalfactory import __version__

    code = ("import sys\nsys.argv = ['signalfactory', 'version']\n"
            "from signalfactory.cli import main\nmain()")
    done = subprocess.run([sys.executable, "-c", code + "\nprint('typer' in sys.modules)"],
                          capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.split() == [__version__, "False"]


#: what a command's own help page must not load (the work it describes loads them)
HELP_HEAVY = ("sqlalchemy", "alembic", "numba", "pandas", "talib", "signalfactory.bootstrap")


@pytest.mark.parametrize("argv", [["scan", "--help"], ["backtest", "--help"],
                                  ["signals", "--help"]])
def test_a_command_help_page_loads_no_database_numba_or_talib(argv: list[str]) -> None:
    code = ("import contextlib, io\nfrom signalfactory.cli.main import app\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            f"    app({argv!r})")
    loaded = _modules_after(code)
    assert sorted(m for m in loaded if m.split(".")[0] in HELP_HEAVY or m in HELP_HEAVY) == []


def _entry_point(argv: list[str], preload: str) -> tuple[str, list[str]]:
    """The page the ``signalfactory`` entry point prints, and the rich modules it loaded."""
    code = (f"import sys\n{preload}\nsys.argv = ['signalfactory', *{argv!r}]\n"
            "from signalfactory.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith(('rich.markdown', "
            "'rich.traceback', 'markdown_it'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60, env={**os.environ, "COLUMNS": "100"})
    *page, loaded = done.stdout.rstrip("\n").split("\n")
    return "\n".join(page), json.loads(loaded.replace("'", '"'))


@pytest.mark.parametrize("argv", [["--help"], [], ["scan", "--help"], ["db", "--help"]])
def test_help_pages_are_unchanged_without_markdown_and_traceback(argv: list[str]) -> None:
    """The entry point renders help with stand-ins for rich.markdown / rich.traceback
    (cli/rich_help.py): the page is the one Typer prints with the real modules loaded."""
    lean, loaded = _entry_point(argv, "")
    real, real_loaded = _entry_point(argv, "import rich.markdown, rich.traceback")
    assert lean == real and "Usage" in lean
    # a command's page also configures logging, whose structlog loads rich.traceback itself
    assert [m for m in loaded if m != "rich.traceback" or argv in ([], ["--help"])] == []
    assert "rich.markdown" in real_loaded  # the probe can fail


def test_the_rich_stand_ins_load_the_real_class_when_used() -> None:
    code = ("import sys\nfrom signalfactory.cli.rich_help import import_rich_utils\n"
            "import_rich_utils()\nimport typer.rich_utils as r\n"
            "before = 'rich.markdown' in sys.modules\n"
            "page = r.Markdown('# title')\nimport rich.markdown\n"
            "print(before, type(page) is rich.markdown.Markdown, isinstance(page, r.Markdown),"
            " r.Traceback.from_exception.__qualname__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)
    assert done.stdout.split() == ["False", "True", "True", "Traceback.from_exception"]
