"""JSON given on the command line is user input too: nested too deep it is refused with exit 2
and a short message, never a RecursionError traceback (json's decoder recurses per level)."""

from __future__ import annotations

import pytest

from tests.helpers import cli

DEEP = '{"a": ' + "[" * 5000 + "]" * 5000 + "}"


@pytest.mark.parametrize("args", [
    ("jobs", "submit", "collect", "--payload", DEEP),
    ("strategies", "add", "deep", "--class", "x.py:X", "--params", DEEP),
    ("backtest", "--rule", "entry: close > 1", "--symbol", "AAA", "--params", DEEP),
], ids=["jobs submit", "strategies add", "backtest"])
def test_too_deeply_nested_json_is_refused_with_exit_2(args: tuple[str, ...],
                                                       tmp_path: object,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNALFACTORY_HOME", str(tmp_path))
    monkeypatch.delenv("SIGNALFACTORY_DATABASE_URL", raising=False)
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert "nested too deeply" in result.stderr
    assert len(result.stderr) < 500
