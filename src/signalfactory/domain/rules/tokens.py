"""Tokenizer of the rule language (hand-written; user text is never evaluated).

Positions are 0-based character offsets into the whole rule text. Names are lower-cased.
``;`` always separates parts. A line break separates parts only when the next line starts a
new part (``label:``); elsewhere, and always inside brackets, it is plain whitespace, so a long
condition can continue on the next line. ``#`` starts a comment running to the end of line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from signalfactory.domain.errors import BadInputError

TokenKind = Literal["name", "number", "op", "sep", "end"]

MAX_RULE_LENGTH: Final = 20_000
_TWO_CHAR_OPS: Final = ("<=", ">=", "==", "!=")
_ONE_CHAR_OPS: Final = "()[],.:+-*/<>="
_HINTS: Final = {"&": "use 'and'", "|": "use 'or'", "!": "use 'not'", "'": "text is not "
                 "allowed in rules", '"': "text is not allowed in rules"}
_OPENERS: Final = "(["
_CLOSERS: Final = ")]"


@dataclass(frozen=True)
class Token:
    kind: TokenKind
    text: str
    pos: int

    def describe(self) -> str:
        """How an error message names this token."""
        if self.kind == "end":
            return "end of rule"
        if self.kind == "sep":
            return "end of part" if self.text == ";" else "end of line"
        if self.kind == "name":
            return f"name '{self.text}'"
        if self.kind == "number":
            return f"number {self.text}"
        return f"'{self.text}'"


def tokenize(text: str) -> list[Token]:
    """Tokens of ``text``, ending with an ``end`` token; BadInputError on a stray character."""
    if len(text) > MAX_RULE_LENGTH:
        raise BadInputError(f"position {MAX_RULE_LENGTH}: rule text is longer than "
                            f"{MAX_RULE_LENGTH} characters", position=MAX_RULE_LENGTH)
    tokens: list[Token] = []
    depth = 0
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif ch == "\n":
            if depth == 0:
                tokens.append(Token("sep", "\n", i))
            i += 1
        elif ch in " \t\r\f\v":
            i += 1
        elif ch == ";":
            tokens.append(Token("sep", ";", i))
            i += 1
        elif _is_name_start(ch):
            j = i + 1
            while j < n and (_is_name_start(text[j]) or (text[j].isascii() and text[j].isdigit())):
                j += 1
            tokens.append(Token("name", text[i:j].lower(), i))
            i = j
        elif _is_digit(ch) or (ch == "." and i + 1 < n and _is_digit(text[i + 1])):
            j = _scan_number(text, i)
            tokens.append(Token("number", text[i:j], i))
            i = j
        elif text[i:i + 2] in _TWO_CHAR_OPS:
            tokens.append(Token("op", text[i:i + 2], i))
            i += 2
        elif ch in _ONE_CHAR_OPS:
            depth += 1 if ch in _OPENERS else -1 if ch in _CLOSERS else 0
            depth = max(depth, 0)
            tokens.append(Token("op", ch, i))
            i += 1
        else:
            hint = _HINTS.get(ch)
            shown = repr(ch) if ch.isprintable() else f"U+{ord(ch):04X}"
            raise BadInputError(f"position {i}: unexpected character {shown}"
                                + (f"; {hint}" if hint else ""), position=i)
    tokens.append(Token("end", "", n))
    return _drop_soft_line_breaks(tokens)


def _drop_soft_line_breaks(tokens: list[Token]) -> list[Token]:
    """Keep a line break only where a new part (``name :``) or the end follows it."""
    kept: list[Token] = []
    for k, tok in enumerate(tokens):
        if tok.kind == "sep" and tok.text == "\n":
            nxt = tokens[k + 1]
            starts_part = (nxt.kind == "name" and tokens[k + 2].kind == "op"
                           and tokens[k + 2].text == ":")
            if not (starts_part or nxt.kind in ("end", "sep")):
                continue
        kept.append(tok)
    return kept


def _scan_number(text: str, i: int) -> int:
    n = len(text)
    j = i
    while j < n and _is_digit(text[j]):
        j += 1
    if j < n and text[j] == ".":
        j += 1
        while j < n and _is_digit(text[j]):
            j += 1
    if j < n and text[j] in "eE":
        k = j + 1
        if k < n and text[k] in "+-":
            k += 1
        if k < n and _is_digit(text[k]):
            j = k
            while j < n and _is_digit(text[j]):
                j += 1
    if j < n and (_is_name_start(text[j]) or text[j] == "."):
        raise BadInputError(f"position {j}: unexpected {text[j]!r} after number "
                            f"{text[i:j]}", position=j)
    return j


def _is_digit(ch: str) -> bool:
    return "0" <= ch <= "9"


def _is_name_start(ch: str) -> bool:
    return ch == "_" or "a" <= ch <= "z" or "A" <= ch <= "Z"
