"""What a symbol may be: the rule every way a symbol enters applies (ingest, collectors, the
API's parameters and bodies, the CLI's options), with the rule id ``bad-symbol``.

A symbol is 1..64 ASCII characters: letters, digits and ``. _ - = ^ : @ & + !``, starting with
a letter, a digit or ``^`` (``AAPL``, ``BRK.B``, ``BRK-B``, ``^GSPC``, ``EURUSD=X``, ``7203.T``,
``BTC-USD``, ``SPY:US``), or a market pair of two such parts joined by one ``/`` (ccxt's
unified ``BTC/USDT``: exchanges, collectors and bots name crypto markets so). So no symbol can
hide characters (bidi overrides that reverse how it reads, zero-width characters that make two
different symbols look alike, letters of another script that look Latin) or look like a path
(``../x``, ``a/b/c``, ``/etc``, ``a\\b``, ``.hidden``) or an option (``-x``) where it becomes
part of a file name, a log line or a command.

``SYMBOL_PATTERN`` is the same rule as a regular expression (for the OpenAPI document), and
``symbol_problem`` says in words what is wrong with a symbol that breaks it.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

from signalfactory.domain.errors import BadInputError, excerpt

RULE: Final = "bad-symbol"
MAX_SYMBOL_LENGTH: Final = 64
_FIRST: Final = "A-Za-z0-9^"
_REST: Final = "A-Za-z0-9._=^:@&+!-"
#: the rule as a regular expression (ECMA-262 and Python alike)
_PART: Final = f"[{_FIRST}][{_REST}]*"
#: one part, or BASE/QUOTE; the length is checked apart (JSON Schema's maxLength beside it)
SYMBOL_PATTERN: Final = f"^{_PART}(/{_PART})?$"
_MATCH: Final = re.compile(SYMBOL_PATTERN)
ALLOWED: Final = ("1..64 characters of A-Z, a-z, 0-9 and . _ - = ^ : @ & + !, starting with a "
                  "letter, a digit or ^, or two such parts joined by one / (BTC/USDT)")


def symbol_problem(symbol: str) -> str | None:
    """What is wrong with ``symbol`` (None when it is a valid symbol)."""
    if len(symbol) <= MAX_SYMBOL_LENGTH and _MATCH.fullmatch(symbol):
        return None
    shown = excerpt(symbol, 30)
    if not symbol:
        return "a symbol cannot be empty"
    if len(symbol) > MAX_SYMBOL_LENGTH:
        return f"symbol {shown} is longer than {MAX_SYMBOL_LENGTH} characters"
    for i, ch in enumerate(symbol):
        if unicodedata.category(ch)[0] in "CZ" and ch != " ":
            name = unicodedata.name(ch, "a control character")
            return (f"symbol {shown} holds an invisible or control character, U+{ord(ch):04X} "
                    f"({name}), at position {i}; type the symbol again")
    if symbol != symbol.strip():
        return f"symbol {shown} has spaces around it"
    if "\\" in symbol or symbol.count("/") > 1 or symbol.startswith("/") or symbol.endswith("/"):
        return (f"symbol {shown} looks like a path; a symbol holds at most one '/', between "
                "two parts (BTC/USDT), and no '\\'")
    for part in symbol.split("/"):
        if not re.fullmatch(f"[{_FIRST}]", part[0]) and part[0].isascii():
            where = "" if part == symbol else f"'s part {excerpt(part, 20)}"
            return f"symbol {shown}{where} starts with {excerpt(part[0])}"
    bad = next((ch for ch in symbol if not re.fullmatch(f"[{_REST}^/]", ch)), symbol[0])
    if not bad.isascii():
        return (f"symbol {shown} holds {excerpt(bad)} (U+{ord(bad):04X} "
                f"{unicodedata.name(bad, '')}), which is not an ASCII character")
    return f"symbol {shown} holds {excerpt(bad)}, which a symbol cannot hold"


def check_symbol(symbol: str, *, source: str | None = None, row: int | None = None) -> str:
    """``symbol`` if it is valid; else ``BadInputError`` with rule ``bad-symbol`` saying what
    is wrong and what a symbol may be."""
    problem = symbol_problem(symbol)
    if problem is not None:
        raise BadInputError(f"{problem}; a symbol is {ALLOWED}", source=source, row=row,
                            rule=RULE)
    return symbol
