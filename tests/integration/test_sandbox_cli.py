"""Uploaded Python strategies on the command line: check, add (refusals exit 2 and store
nothing), evaluate in the sandbox, list the signals with their code hash and the runs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.helpers import cli, fingerprint
from tests.sandbox_strategies import SMA_CROSS


@pytest.mark.parametrize("backend", ["sqlite"])  # the storage paths are covered elsewhere
def test_upload_check_evaluate_and_runs(sf_env: dict[str, str], tmp_path: Path) -> None:
    assert cli("sample", "--symbols", "4", "--bars", "250").exit_code == 0
    assert cli("strategies", "list").exit_code == 0  # stores the built-ins once
    good = tmp_path / "sma.py"
    good.write_text(SMA_CROSS)
    digest = hashlib.sha256(SMA_CROSS.encode()).hexdigest()
    checked = cli("strategies", "check", str(good), "--json")
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.output) == {"valid": True, "class_name": "SmaCross",
                                          "imports": ["numpy", "signalfactory.domain.rules",
                                                      "signalfactory.domain.strategies"],
                                          "code_hash": digest}

    bad = tmp_path / "bad.py"
    bad.write_text(SMA_CROSS.replace("        gap = fast - slow",
                                     "        gap = fast - slow\n        open('/etc/passwd')"))
    before = fingerprint()
    refused = cli("strategies", "add", "bad", "--source", str(bad))
    assert refused.exit_code == 2
    assert "[builtin]" in refused.output and "line 27" in refused.output, refused.output
    assert cli("strategies", "check", str(bad)).exit_code == 2
    assert cli("strategies", "add", "x", "--source", str(good), "--rule",
               "entry: close > 1").exit_code == 2
    assert fingerprint() == before, "a refused upload stores nothing"

    added = cli("strategies", "add", "pysma", "--source", str(good), "--params",
                '{"fast": 5}', "--json")
    assert added.exit_code == 0, added.output
    stored = json.loads(added.output)
    assert (stored["sandboxed"], stored["code_hash"], stored["parameters"]) == (
        True, digest, {"fast": 5})
    evaluated = cli("evaluate", "--strategy", "pysma", "--json")
    assert evaluated.exit_code == 0, evaluated.output
    (report,) = json.loads(evaluated.output)
    assert report["status"] == "succeeded" and report["signals_written"] > 0
    signals = json.loads(cli("signals", "--strategy", "pysma", "--json").output)
    assert signals and {s["code_hash"] for s in signals} == {digest}
    runs = json.loads(cli("strategies", "runs", "pysma", "--json").output)
    assert [(r["purpose"], r["outcome"], r["code_hash"]) for r in runs] == [
        ("signals", "succeeded", digest)]
    assert runs[0]["bars"] == 4 * 250 and runs[0]["signals"] > 0
