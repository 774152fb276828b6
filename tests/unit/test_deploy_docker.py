"""Static checks of the Dockerfile and .dockerignore (no Docker engine needed).

The image must be multi-stage on python:3.11-slim, run as uid 10001, carry no secret in any
ENV or ARG, check /livez without curl, and start `signalfactory serve` by default.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SECRET_NAME = re.compile(r"SECRET|KEY|PASSWORD|PASSWD|TOKEN|CREDENTIAL", re.IGNORECASE)


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    stage: int  # index of the FROM it belongs to; -1 before the first FROM


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped."""
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, arguments.strip(), stage))
    return instructions


def exec_form(arguments: str) -> list[str]:
    """An instruction's JSON (exec form) argument list; shell form is rejected."""
    value = json.loads(arguments)
    assert isinstance(value, list), f"expected exec form, got {arguments!r}"
    return [str(item) for item in value]


def key_values(arguments: str) -> dict[str, str]:
    """ENV/ARG arguments: `A=1 B="x y"`, or the legacy `A value` form."""
    tokens = shlex.split(arguments)
    if tokens and "=" not in tokens[0]:
        return {tokens[0]: " ".join(tokens[1:])}
    return dict(token.partition("=")[::2] for token in tokens)


INSTRUCTIONS = parse_dockerfile(DOCKERFILE.read_text())
FINAL_STAGE = max(i.stage for i in INSTRUCTIONS)


def final(keyword: str) -> list[Instruction]:
    return [i for i in INSTRUCTIONS if i.stage == FINAL_STAGE and i.keyword == keyword]


def global_args() -> dict[str, str]:
    found: dict[str, str] = {}
    for instruction in INSTRUCTIONS:
        if instruction.stage == -1 and instruction.keyword == "ARG":
            found.update(key_values(instruction.arguments))
    return found


def resolve(text: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: variables.get(m.group(1), m.group(0)), text)


def test_parser_joins_continuations_and_tracks_stages() -> None:
    parsed = parse_dockerfile(
        "ARG A=1\nFROM x AS one\n# c\nRUN a \\\n  && b\nFROM y AS two\nUSER 5\n"
    )
    assert [(i.keyword, i.stage) for i in parsed] == [
        ("ARG", -1),
        ("FROM", 0),
        ("RUN", 0),
        ("FROM", 1),
        ("USER", 1),
    ]
    assert parsed[2].arguments == "a  && b"


def test_key_values_reads_both_env_forms() -> None:
    assert key_values('A=1 B="two words"') == {"A": "1", "B": "two words"}
    assert key_values("A some value") == {"A": "some value"}


def test_build_is_multi_stage_on_python_311_slim_with_named_stages() -> None:
    stages = [i for i in INSTRUCTIONS if i.keyword == "FROM"]
    assert len(stages) >= 2
    variables = global_args()
    for stage in stages:
        image, as_keyword, name = resolve(stage.arguments, variables).split()
        assert image.startswith("python:3.11-slim")
        assert as_keyword.upper() == "AS" and name


def test_final_stage_copies_the_built_venv_from_the_builder() -> None:
    builder = next(i for i in INSTRUCTIONS if i.keyword == "FROM").arguments.split()[-1]
    copies = final("COPY")
    assert any(f"--from={builder}" in c.arguments for c in copies)
    build_runs = " ".join(i.arguments for i in INSTRUCTIONS if i.stage == 0 and i.keyword == "RUN")
    assert "venv" in build_runs and "wheel" in build_runs


def test_final_stage_runs_as_uid_10001() -> None:
    users = final("USER")
    assert users, "final stage has no USER"
    user = users[-1].arguments.split(":")[0]
    assert user == "10001"
    runs = " ".join(i.arguments for i in final("RUN"))
    assert "--uid 10001" in runs


def test_healthcheck_probes_livez_with_python_not_curl() -> None:
    (healthcheck,) = final("HEALTHCHECK")
    options, _, command = healthcheck.arguments.partition("CMD")
    assert "--interval" in options and "--timeout" in options
    argv = exec_form(command.strip())
    assert argv[:2] == ["python", "-c"]
    assert "urllib.request" in argv[2] and "/livez" in argv[2]
    assert "curl" not in healthcheck.arguments


def test_entrypoint_and_default_command_serve_on_all_interfaces() -> None:
    (entrypoint,) = final("ENTRYPOINT")
    assert exec_form(entrypoint.arguments) == ["signalfactory"]
    (cmd,) = final("CMD")
    argv = exec_form(cmd.arguments)
    assert argv[0] == "serve"
    # In a container the API must listen on all interfaces to be reachable at all.
    assert argv[argv.index("--host") + 1] == "0.0.0.0"  # noqa: S104


@pytest.mark.parametrize("keyword", ["ENV", "ARG", "LABEL"])
def test_no_secret_values_in_env_arg_or_label(keyword: str) -> None:
    for instruction in (i for i in INSTRUCTIONS if i.keyword == keyword):
        for name, value in key_values(instruction.arguments).items():
            if SECRET_NAME.search(name) and not name.endswith("_FILE"):
                assert not value, f"{keyword} {name} carries a value: secrets come at run time"


def test_no_secret_files_are_copied_into_the_image() -> None:
    for instruction in (i for i in INSTRUCTIONS if i.keyword in {"COPY", "ADD"}):
        assert not re.search(r"\.env\b|secret|\.pem|\.key\b", instruction.arguments, re.I)


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents wins."""
    excluded = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        regex = re.escape(body.strip("/")).replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def dockerignore_patterns() -> list[str]:
    lines = (line.strip() for line in DOCKERIGNORE.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


@pytest.mark.parametrize(
    "path",
    [
        ".env",
        ".venv/bin/python",
        ".signalfactory/signalfactory.db",
        "deploy/secrets/backup_key",
        ".git/config",
        "tests/unit/test_x.py",
        "src/signalfactory/__pycache__/cli.cpython-311.pyc",
    ],
)
def test_dockerignore_keeps_local_state_and_secrets_out_of_the_context(path: str) -> None:
    assert dockerignore_excludes(path, dockerignore_patterns())


@pytest.mark.parametrize(
    "path",
    [
        "pyproject.toml",
        "README.md",
        "src/signalfactory/cli/main.py",
        "src/signalfactory/adapters/storage/migrations/script.py.mako",
    ],
)
def test_dockerignore_keeps_what_the_build_needs(path: str) -> None:
    assert not dockerignore_excludes(path, dockerignore_patterns())


def test_every_copied_source_survives_the_dockerignore() -> None:
    patterns = dockerignore_patterns()
    for instruction in (i for i in INSTRUCTIONS if i.keyword == "COPY"):
        if "--from=" in instruction.arguments:
            continue
        *sources, _destination = instruction.arguments.split()
        for source in sources:
            assert not dockerignore_excludes(source.rstrip("/"), patterns), source
