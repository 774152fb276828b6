"""A command refused as bad input (exit 2) changes nothing: in a new home it creates no
database (not even the directory), and in a home in use the store's fingerprint is the same
before and after. Input that can be checked without the database is checked before the
platform is opened; what the command writes (built-in strategies included) is written in one
transaction with its own work."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import cli, fingerprint

HEADER = "date,open,high,low,close,volume\n"

# (case id, arguments); files named here are written by the test first
REFUSED: list[tuple[str, tuple[str, ...]]] = [
    ("strategies add: bad rule", ("strategies", "add", "mine", "--rule", "entry: close >")),
    ("strategies add: built-in name", ("strategies", "add", "sma_cross", "--rule",
                                       "entry: close > 1")),
    ("strategies add: bad name", ("strategies", "add", "no/slash", "--rule",
                                  "entry: close > 1")),
    ("strategies add: bad timeframe", ("strategies", "add", "mine", "--rule",
                                       "entry: close > 1", "--timeframe", "7q")),
    ("strategies add: rule and params", ("strategies", "add", "mine", "--rule",
                                         "entry: close > 1", "--params", '{"a": 1}')),
    ("ingest: malformed file", ("ingest", "{tmp}/bad.csv")),
    ("backtest: bad size", ("backtest", "--rule", "entry: close > 1", "--symbol", "AAA",
                            "--size", "lots")),
    ("backtest: bad rule", ("backtest", "--rule", "entry: close >", "--symbol", "AAA")),
    ("backtest: bad dates", ("backtest", "--strategy", "sma_cross", "--symbol", "AAA",
                             "--from", "2020-02-02", "--to", "2020-01-01")),
    ("scan: bad rule", ("scan", "--rule", "entry: nope(close) > 1")),
    ("scan: bad top", ("scan", "--strategy", "sma_cross", "--top", "0")),
    ("scan: bad timeframe", ("scan", "--strategy", "sma_cross", "--timeframe", "7q")),
    ("evaluate: bad since", ("evaluate", "--since", "yesterday")),
    ("signals: bad since", ("signals", "--since", "yesterday")),
]


def _args(args: tuple[str, ...], tmp: Path) -> list[str]:
    (tmp / "bad.csv").write_text(HEADER + "2024-01-02,10,11,9,10.5,-5\n")
    return [a.replace("{tmp}", str(tmp)) for a in args]


@pytest.mark.parametrize("args", [c[1] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_refused_in_a_new_home_creates_nothing(args: tuple[str, ...], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("SIGNALFACTORY_HOME", str(home))
    monkeypatch.delenv("SIGNALFACTORY_DATABASE_URL", raising=False)
    result = cli(*_args(args, tmp_path))
    assert result.exit_code == 2, result.output
    assert not home.exists(), sorted(p.name for p in home.rglob("*"))


@pytest.fixture(scope="module")
def used_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with data but, like after a first ingest, no strategies stored yet."""
    home = tmp_path_factory.mktemp("used")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SIGNALFACTORY_HOME", str(home))
        mp.delenv("SIGNALFACTORY_DATABASE_URL", raising=False)
        good = home / "aaa.csv"
        good.write_text(HEADER + "2024-01-02,10,11,9,10.5,1000\n2024-01-03,10.5,11.5,10,11,1200\n")
        assert cli("ingest", str(good), "--symbol", "AAA").exit_code == 0
    return home


@pytest.mark.parametrize("args", [c[1] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_refused_in_a_home_in_use_changes_nothing(args: tuple[str, ...], used_home: Path,
                                                  tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNALFACTORY_HOME", str(used_home))
    monkeypatch.delenv("SIGNALFACTORY_DATABASE_URL", raising=False)
    before = fingerprint()
    assert before["tables"]["strategies"][0] == 0, "the home should hold no strategies"
    result = cli(*_args(args, tmp_path))
    assert result.exit_code == 2, result.output
    assert fingerprint() == before
