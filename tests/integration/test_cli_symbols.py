"""Symbols given on the command line or in a file are refused with rule bad-symbol (exit 2,
nothing stored) when they hide characters or look like paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import cli, fingerprint

HEADER = "symbol,date,open,high,low,close,volume\n"
ROWS = "{s},2024-01-02,10,11,9,10.5,1000\n{s},2024-01-03,10.5,11.5,10,11,1200\n"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    monkeypatch.setenv("SIGNALFACTORY_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SIGNALFACTORY_DATABASE_URL", raising=False)
    assert cli("sample", "--symbols", "2", "--bars", "30").exit_code == 0
    return fingerprint()


@pytest.mark.parametrize("symbol", ["\u202eLPAA", "AA\u200bPL", "../x", "a/b/c", "a\\b", ".x"])
def test_hostile_symbols_are_refused_by_every_command(home: dict[str, object], tmp_path: Path,
                                                      symbol: str) -> None:
    in_column = tmp_path / "bars.csv"
    in_column.write_text(HEADER + ROWS.format(s="GOOD") + ROWS.format(s=symbol),
                         encoding="utf-8")
    plain = tmp_path / "plain.csv"
    plain.write_text(HEADER.replace("symbol,", "") + ROWS.format(s="").replace(",2024", "2024"))
    for args in (("ingest", str(in_column)),
                 ("ingest", str(plain), "--symbol", symbol),
                 ("backtest", "--strategy", "sma_cross", "--symbol", symbol),
                 ("signals", "--symbol", symbol)):
        result = cli(*args)
        assert result.exit_code == 2, (args, result.output)
        assert "[bad-symbol]" in result.stderr, (args, result.stderr)
    assert "row 4" in cli("ingest", str(in_column)).stderr  # the first row of the symbol
    assert fingerprint() == home


def test_a_file_named_like_a_hidden_file_gives_no_symbol(home: dict[str, object],
                                                         tmp_path: Path) -> None:
    hidden = tmp_path / ".bars.csv"
    hidden.write_text(HEADER.replace("symbol,", "") + ROWS.format(s="").replace(",2024", "2024"))
    result = cli("ingest", str(hidden))
    assert result.exit_code == 2 and "[bad-symbol]" in result.stderr
    assert fingerprint() == home
