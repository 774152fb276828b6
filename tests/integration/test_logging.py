"""Logs are JSON lines with context, and a planted canary secret never appears anywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CANARY = "canary-Zq8v1sXw9PLkQ3"


def test_canary_secret_never_logged(tmp_path: Path) -> None:
    env = {**os.environ, "SIGNALFACTORY_HOME": str(tmp_path), "SIGNALFACTORY_LOG_FORMAT": "json",
           "SIGNALFACTORY_BACKUP_KEY": CANARY, "SIGNALFACTORY_LOG_LEVEL": "DEBUG"}
    env.pop("SIGNALFACTORY_DATABASE_URL", None)
    code = (
        "from signalfactory.observability.logging import (configure_logging, get_logger,\n"
        "    bind_context)\n"
        f"configure_logging('json', 'DEBUG', ['{CANARY}'])\n"
        "log = get_logger('t')\n"
        "bind_context(request_id='r1', tenant='acme', job_id='j1')\n"
        f"log.info('leak attempt', detail='key is {CANARY}', backup_key='x',\n"
        "         nested={'password': 'p'})\n"
        "import logging; logging.getLogger('stdlib').warning('stdlib %s', "
        f"'{CANARY}')\n"
        "log.info('api key sf_live_abcdefghijklmnopqrstuvwxyz0123456789 used')\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True)
    cli_out = subprocess.run([sys.executable, "-m", "signalfactory", "sample", "--symbols", "2",
                              "--bars", "20"], env=env, capture_output=True, text=True,
                             check=True)
    everything = out.stdout + out.stderr + cli_out.stdout + cli_out.stderr
    assert CANARY not in everything
    assert "abcdefghijklmnopqrstuvwxyz0123456789" not in everything
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    first = lines[0]
    assert first["request_id"] == "r1" and first["tenant"] == "acme" and first["job_id"] == "j1"
    assert first["backup_key"] == "[redacted]" and first["nested"]["password"] == "[redacted]"
    assert any(line.get("event", "").startswith("stdlib") for line in lines)


def test_log_lines_reach_a_pipe_whole_and_at_once() -> None:
    """stdout to a pipe is block-buffered: each JSON record must still arrive as soon as it
    is logged, complete, before anything the process prints to stderr after it."""
    code = (
        "import sys, time\n"
        "from signalfactory.observability.logging import configure_logging, get_logger\n"
        "configure_logging('json', 'INFO')\n"
        "get_logger('t').info('first', n=1)\n"
        "sys.stderr.write('after\\n'); sys.stderr.flush()\n"
        "time.sleep(30)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": ""})
    try:
        assert proc.stderr is not None and proc.stdout is not None
        assert proc.stderr.readline() == b"after\n"
        # The process is still running (sleeping): the line was flushed, not left in a buffer.
        record = json.loads(proc.stdout.readline())
        assert record["event"] == "first" and record["n"] == 1
    finally:
        proc.kill()
        proc.wait()


def test_a_one_shot_command_logs_to_stderr_and_its_json_output_stays_its_own(
        tmp_path: Path) -> None:
    """``--json`` output piped into another program must hold nothing but the document:
    commands log to stderr; the long-running services (``serve``, ``up``, ``worker``,
    ``beat``) keep stdout, where a container runtime collects logs."""
    from signalfactory.cli.main import LAZY_COMMANDS, SERVICE_COMMANDS

    env = {**os.environ, "SIGNALFACTORY_HOME": str(tmp_path), "SIGNALFACTORY_LOG_FORMAT": "json",
           "SIGNALFACTORY_LOG_LEVEL": "DEBUG"}
    env.pop("SIGNALFACTORY_DATABASE_URL", None)
    run = [sys.executable, "-m", "signalfactory"]
    subprocess.run([*run, "sample", "--symbols", "3", "--bars", "120"], env=env, check=True,
                   capture_output=True)
    out = subprocess.run([*run, "evaluate", "--json"], env=env, capture_output=True, text=True,
                         check=True)
    json.loads(out.stdout)  # one document, no log line before or after it
    logged = [json.loads(line) for line in out.stderr.splitlines() if line.strip()]
    assert logged and all("event" in line for line in logged)
    assert SERVICE_COMMANDS == {"serve", "up", "worker", "beat"} <= set(LAZY_COMMANDS)
