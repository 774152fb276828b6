"""Every command a container, pod, unit or the runbook starts exists in the CLI.

The commands are read from the deployment artifacts themselves (Dockerfile CMD, compose
`command`, Kubernetes container `args`, systemd `ExecStart`/`ExecStartPre`), then each is run
with `--help` through the interpreter running the tests. The runbook's commands are checked,
with their options, in tests/unit/test_runbook_truth.py.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
INSTALLED_CLI = "/opt/signalfactory/venv/bin/signalfactory"
# What processes are started with; `db upgrade` is the migration on its own.
PROCESS_COMMANDS = {("serve",), ("worker",), ("beat",), ("up",), ("init",), ("db", "upgrade")}


def subcommand(argv: list[str]) -> tuple[str, ...]:
    """The command path: the words before the first option."""
    words = []
    for token in argv:
        if token.startswith("-"):
            break
        words.append(token)
    return tuple(words)


def dockerfile_commands() -> dict[str, tuple[str, ...]]:
    text = (ROOT / "Dockerfile").read_text()
    cmd_lines = re.findall(r"^CMD\s+(\[.*\])\s*$", text, flags=re.MULTILINE)
    return {"Dockerfile CMD": subcommand(json.loads(cmd_lines[-1]))}


def compose_commands() -> dict[str, tuple[str, ...]]:
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    return {
        f"compose {name}": subcommand(service["command"])
        for name, service in services.items()
        if "build" in service
    }


def k8s_commands() -> dict[str, tuple[str, ...]]:
    found = {}
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            template = (doc or {}).get("spec", {}).get("template", {})
            for container in template.get("spec", {}).get("containers", []):
                if container["image"].split(":")[0].endswith("signalfactory"):
                    key = f"k8s {doc['metadata']['name']}/{container['name']}"
                    found[key] = subcommand(container["args"])
    return found


def systemd_commands() -> dict[str, tuple[str, ...]]:
    found = {}
    for path in sorted((DEPLOY / "systemd").glob("*.service")):
        for line in path.read_text().splitlines():
            key, _, value = line.partition("=")
            if key in {"ExecStart", "ExecStartPre"} and value.startswith(INSTALLED_CLI):
                found[f"{path.name} {key}"] = subcommand(shlex.split(value)[1:])
    return found


STARTED = {**dockerfile_commands(), **compose_commands(), **k8s_commands(), **systemd_commands()}

def run_help(command: tuple[str, ...], home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SIGNALFACTORY_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "signalfactory", *command, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
        cwd=home,
    )


def test_artifacts_start_the_processes_we_expect() -> None:
    assert len(STARTED) >= 10
    assert set(STARTED.values()) >= {("serve",), ("worker",), ("beat",), ("db", "upgrade")}


@pytest.mark.parametrize(("where", "command"), STARTED.items())
def test_started_command_is_a_known_process_command(where: str, command: tuple[str, ...]) -> None:
    assert command in PROCESS_COMMANDS, f"{where} starts unknown command {command}"


@pytest.mark.parametrize("command", sorted(set(STARTED.values())), ids=" ".join)
def test_started_command_has_help(command: tuple[str, ...], tmp_path: Path) -> None:
    result = run_help(command, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Usage" in result.stdout
