"""The symbol rule (``bad-symbol``): hidden characters and path- or option-like forms are
refused with a message naming what is wrong; the regular expression the OpenAPI document
publishes is the same rule as the check the server runs."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalfactory.domain.errors import BadInputError
from signalfactory.domain.instruments import InstrumentSpec
from signalfactory.domain.symbols import SYMBOL_PATTERN, check_symbol, symbol_problem

GOOD = ["AAPL", "BRK.B", "BRK-B", "^GSPC", "EURUSD=X", "ES=F", "7203.T", "BTC-USD", "SPY:US",
        "a", "X" * 64, "S&P500", "CL1!", "ABC_D", "A+B", "US@NYSE", "BTC/USDT", "ETH/BTC",
        "X" * 31 + "/" + "Y" * 32]
HOSTILE = {
    "right-to-left override": "\u202eLPAA",
    "left-to-right isolate": "AA\u2066PL",
    "zero-width space": "AA\u200bPL",
    "zero-width joiner": "AAPL\u200d",
    "byte order mark": "\ufeffAAPL",
    "soft hyphen": "AA\u00adPL",
    "NUL": "AAPL\x00",
    "tab": "AA\tPL",
    "newline": "AAPL\n",
    "no-break space": "AA\u00a0PL",
    "parent directory": "../x",
    "dot dot": "..",
    "dot": ".",
    "hidden file": ".hidden",
    "two slashes": "a/b/c",
    "pair with a hidden part": "BTC/.x",
    "trailing slash": "BTC/",
    "absolute path": "/etc/passwd",
    "backslash": "a\\b",
    "windows path": "..\\..\\x",
    "option-like": "-rf",
    "Cyrillic look-alike": "\u0410APL",
    "accented": "CAF\u00c9",
    "inner space": "BRK B",
    "surrounding space": " AAPL",
    "empty": "",
    "too long": "X" * 65,
}


@pytest.mark.parametrize("symbol", GOOD)
def test_ordinary_symbols_pass(symbol: str) -> None:
    assert symbol_problem(symbol) is None
    assert check_symbol(symbol) == symbol
    assert InstrumentSpec(symbol=symbol).symbol == symbol


@pytest.mark.parametrize("symbol", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_symbols_are_refused_with_the_rule_id(symbol: str) -> None:
    with pytest.raises(BadInputError) as info:
        check_symbol(symbol, source="test", row=3)
    err = info.value
    assert err.rule == "bad-symbol" and err.row == 3
    assert "a symbol is 1..64 characters of A-Z" in err.detail  # what a symbol may be
    assert len(err.detail) < 400
    with pytest.raises(BadInputError, match="bad-symbol"):
        InstrumentSpec(symbol=symbol)  # every writer (ingest, collectors, sample) is checked


def test_invisible_characters_are_named() -> None:
    problem = symbol_problem("\u202eLPAA")
    assert problem is not None and "U+202E (RIGHT-TO-LEFT OVERRIDE)" in problem
    problem = symbol_problem("AA\u200bPL")
    assert problem is not None and "U+200B" in problem and "position 2" in problem


@settings(max_examples=300, derandomize=True, database=None)
@given(st.text(max_size=70))
def test_the_published_pattern_is_the_rule(text: str) -> None:
    assert (re.search(SYMBOL_PATTERN, text) is not None
            and "\n" not in text) == (symbol_problem(text) is None)
