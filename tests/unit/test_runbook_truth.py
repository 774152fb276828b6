"""docs/operations.md says only what is true: its pointers name things that exist.

- every `signalfactory ...` command in it (code blocks and inline code) is a command of the
  CLI, each of its `--options` is an option of that command, and `--help` on it works (run
  in-process through Typer's CliRunner: a subprocess per command would cost a second each);
- every `SIGNALFACTORY_*` variable is a setting (or the `_FILE` form of a secret one);
- every alert section names an alert in deploy/prometheus/rules.yml, and every alert there
  has a section (its `runbook_url` points at it);
- every repository path it points at (`tests/...`, `src/...`, `deploy/...`, `docs/...`)
  exists.

A renamed command, option, setting, alert or test breaks this test, and with it the build.
"""

from __future__ import annotations

import re
import shlex
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from signalfactory.cli.main import LAZY_COMMANDS, app, load_command
from signalfactory.settings import SECRET_FIELDS, Settings

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = ROOT / "docs" / "operations.md"

# `signalfactory` as the command word (line start, after a shell operator, a backtick, sudo or
# the installed script's path), not as a user, group, namespace or resource name.
_COMMAND = re.compile(r"(?:^|[`(|;&]\s*|\bsudo[ \t]+|/bin/)signalfactory[ \t]+([^`\n|;&)]*)",
                      flags=re.MULTILINE)
_SETTING = re.compile(r"\bSIGNALFACTORY_([A-Z0-9_]+)\b")
# A file in the repository: a path with an extension (`deploy/signalfactory-api` is a
# Kubernetes resource, `deploy/secrets/*` files the operator creates).
_PATH = re.compile(r"(?<![\w/.*-])((?:tests|src|deploy|docs)/[\w/-]*(?:\.\w+)+)(?![\w*])")


def runbook_text() -> str:
    return RUNBOOK.read_text(encoding="utf-8")


def code_spans(text: str) -> list[str]:
    """Fenced blocks and inline code: where commands are written to be run."""
    spans = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    spans += re.findall(r"`([^`\n]+)`", prose)
    return spans


def runbook_commands() -> list[str]:
    """Each distinct `signalfactory` command line (without the program name)."""
    found: dict[str, None] = {}
    for span in code_spans(runbook_text()):
        for match in _COMMAND.finditer(span):
            rest = re.split(r"\s#\s|\s>\s|\s2>", match.group(1))[0].strip()
            if rest:
                found[rest] = None
    return list(found)


@cache
def root_command() -> Any:
    # Typer 0.29 carries its own click: groups are recognised by their ``commands``.
    return typer.main.get_command(app)


def subcommands(command: Any) -> dict[str, Any] | None:
    found = getattr(command, "commands", None)
    return found if isinstance(found, dict) else None


def resolve(argv: list[str]) -> tuple[list[str], Any]:
    """The command path the words name, and the command at its end."""
    command = root_command()
    path: list[str] = []
    for word in argv:
        children = subcommands(command)
        if children is None or word.startswith("-") or word not in children:
            break
        path.append(word)
        # the root lists placeholders (commands import lazily): load the real one
        command = load_command(word) if len(path) == 1 and word in LAZY_COMMANDS \
            else children[word]
    return path, command


def split(line: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError:  # an unbalanced quote in prose: words are enough here
        return line.split()


def test_command_pattern_skips_user_and_resource_names() -> None:
    sample = ("useradd --shell /x signalfactory\n`signalfactory backup create --to D`\n"
              "sudo -g signalfactory deploy/x\n/opt/v/bin/signalfactory db upgrade\n"
              "kubectl -n signalfactory get pods\n")
    found = [m.group(1).strip() for m in _COMMAND.finditer(sample)]
    assert found == ["backup create --to D", "db upgrade"]


def test_the_runbook_has_commands_to_check() -> None:
    commands = runbook_commands()
    assert len(commands) >= 30, commands
    assert any(c.startswith("ops read-only") for c in commands)


@pytest.mark.parametrize("line", runbook_commands())
def test_runbook_command_exists_with_its_options(line: str) -> None:
    argv = split(line)
    path, command = resolve(argv)
    assert path, f"`signalfactory {line}`: {argv[0]!r} is not a command"
    children = subcommands(command)
    assert children is None, (
        f"`signalfactory {line}` names the group {' '.join(path)!r}, not one of its commands "
        f"({', '.join(sorted(children or ()))})")
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    known.add("--help")
    for word in argv[len(path):]:
        if word.startswith("--"):
            option = word.split("=", 1)[0]
            assert option in known, (f"`signalfactory {line}`: {' '.join(path)} has no "
                                     f"option {option} (it has {', '.join(sorted(known))})")
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_runbook_settings_exist() -> None:
    fields = {name.upper() for name in Settings.model_fields}
    secrets = {name.upper() for name in SECRET_FIELDS}
    unknown = set()
    for name in set(_SETTING.findall(runbook_text())):
        if name in fields or (name.endswith("_FILE") and name[:-5] in secrets):
            continue
        unknown.add(f"SIGNALFACTORY_{name}")
    assert not unknown, f"the runbook names settings that do not exist: {sorted(unknown)}"


def _alert_names() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "deploy" / "prometheus").glob("*rules*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            names |= {rule["alert"] for rule in group["rules"] if "alert" in rule}
    return names


def test_every_alert_has_a_section_and_every_section_an_alert() -> None:
    sections = set(re.findall(r"^### (SignalFactory\w+)\s*$", runbook_text(), re.MULTILINE))
    alerts = _alert_names()
    assert sections - alerts == set(), "runbook sections for alerts that do not exist"
    assert alerts - sections == set(), "alerts without a runbook section"


def test_path_pattern_finds_files_not_resources() -> None:
    sample = ("`tests/unit/test_x.py` deploy/signalfactory-api deploy/secrets/backup_key "
              "deploy/systemd/signalfactory-*.service deploy/prometheus/rules.yml")
    assert _PATH.findall(sample) == ["tests/unit/test_x.py", "deploy/prometheus/rules.yml"]


def test_runbook_paths_exist() -> None:
    missing = sorted({p for p in _PATH.findall(runbook_text())
                      if not (ROOT / p).exists() and not p.startswith("deploy/secrets/")})
    assert not missing, f"the runbook points at paths that do not exist: {missing}"
