"""systemd units: restart policy, secrets through LoadCredential, hardening, known keys."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "deploy" / "systemd"
UNITS = {
    "signalfactory-api.service": ["serve"],
    "signalfactory-worker.service": ["worker"],
    "signalfactory-beat.service": ["beat"],
}
INSTALLED_CLI = "/opt/signalfactory/venv/bin/signalfactory"
SECRETS = ("database_password", "backup_key", "archive_signing_key")
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ReadWritePaths": "/var/lib/signalfactory",
    "PrivateTmp": "yes",
    "ProtectHome": "yes",
    "CapabilityBoundingSet": "",
}


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """Sections as (key, value) lists: systemd allows a key several times (Environment=)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"key outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line!r}"
        current.append((key.strip(), value.strip()))
    return sections


def values(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def single(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> str:
    (value,) = values(unit, section, key)
    return value


def load(name: str) -> dict[str, list[tuple[str, str]]]:
    return parse_unit((SYSTEMD / name).read_text())


def test_parse_unit_keeps_repeated_keys() -> None:
    unit = parse_unit("[Service]\nEnvironment=A=1\n# c\nEnvironment=B=2\n")
    assert values(unit, "Service", "Environment") == ["A=1", "B=2"]


@pytest.mark.parametrize("name", UNITS)
def test_unit_parses_with_configparser(name: str) -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string((SYSTEMD / name).read_text())
    assert {"Unit", "Service", "Install"} <= set(parser.sections())


@pytest.mark.parametrize(("name", "command"), UNITS.items())
def test_unit_restarts_always_and_runs_its_command(name: str, command: list[str]) -> None:
    unit = load(name)
    assert single(unit, "Service", "Restart") == "always"
    assert single(unit, "Service", "RestartSec")
    argv = shlex.split(single(unit, "Service", "ExecStart"))
    assert argv[0] == INSTALLED_CLI
    assert argv[1 : 1 + len(command)] == command
    assert single(unit, "Install", "WantedBy") == "multi-user.target"


@pytest.mark.parametrize("name", UNITS)
def test_unit_runs_as_the_service_user_with_non_secret_environment_file(name: str) -> None:
    unit = load(name)
    assert single(unit, "Service", "User") == "signalfactory"
    assert single(unit, "Service", "EnvironmentFile") == "/etc/signalfactory/signalfactory.env"


@pytest.mark.parametrize("name", UNITS)
def test_unit_passes_secrets_only_as_credentials(name: str) -> None:
    unit = load(name)
    credentials = dict(v.split(":", 1) for v in values(unit, "Service", "LoadCredential"))
    environment = dict(v.split("=", 1) for v in values(unit, "Service", "Environment"))
    for secret in SECRETS:
        assert credentials[secret] == f"/etc/signalfactory/credentials/{secret}"
        assert environment[f"SIGNALFACTORY_{secret.upper()}_FILE"] == f"%d/{secret}"
    for key in environment:
        if any(word in key for word in ("KEY", "PASSWORD", "SECRET", "TOKEN")):
            assert key.endswith("_FILE"), f"{key} set inline in the unit"


@pytest.mark.parametrize("name", UNITS)
def test_unit_is_hardened(name: str) -> None:
    unit = load(name)
    for key, expected in HARDENING.items():
        assert single(unit, "Service", key) == expected, key


def test_api_migrates_before_serving_and_the_others_start_after_it() -> None:
    pre = shlex.split(single(load("signalfactory-api.service"), "Service", "ExecStartPre"))
    assert pre == [INSTALLED_CLI, "db", "upgrade"]
    for name in ("signalfactory-worker.service", "signalfactory-beat.service"):
        assert "signalfactory-api.service" in single(load(name), "Unit", "After").split()


def test_environment_file_example_has_no_secrets() -> None:
    settings = {}
    for line in (SYSTEMD / "signalfactory.env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings[key] = value
            assert not any(w in key for w in ("KEY", "PASSWORD", "SECRET", "TOKEN")), key
    assert urlparse(settings["SIGNALFACTORY_DATABASE_URL"]).password is None


def test_systemd_analyze_verify_reports_nothing(tmp_path: Path) -> None:
    """systemd's own parser: unknown keys and bad values are printed, so stderr must be empty.

    The installed CLI path does not exist here, so ExecStart is pointed at /usr/bin/env.
    """
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not on PATH")
    for name in UNITS:
        text = (SYSTEMD / name).read_text().replace(INSTALLED_CLI, "/usr/bin/env signalfactory")
        (tmp_path / name).write_text(text)
    result = subprocess.run(
        [analyze, "verify", *(str(tmp_path / name) for name in UNITS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
