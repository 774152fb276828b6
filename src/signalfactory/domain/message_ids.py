"""Message ids of outbox rows: ``msg_`` + 26 Crockford base32 characters.

The first 10 characters are a 48-bit millisecond timestamp, the other 16 are 80 random bits
(the ULID layout), so ids sort by creation time as text: the outbox is paged and claimed in
id order, and a receiver that deduplicates by ``webhook-id`` gets a stable, unique key.
"""

from __future__ import annotations

import hashlib
import os
import time

PREFIX = "msg_"
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford: no I, L, O, U
_RANDOM_BITS = 80


def _base32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_message_id(now_ms: int | None = None) -> str:
    """A fresh id; ``now_ms`` (milliseconds since the epoch) defaults to the wall clock."""
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    if not 0 <= ms < 2 ** 48:
        raise ValueError(f"a message id's timestamp must fit 48 bits, got {ms}")
    rand = int.from_bytes(os.urandom(_RANDOM_BITS // 8), "big")
    return PREFIX + _base32(ms, 10) + _base32(rand, 16)


def is_message_id(text: str) -> bool:
    body = text[len(PREFIX):]
    return (text.startswith(PREFIX) and len(body) == 26
            and all(ch in _ALPHABET for ch in body))


def derived_message_id(key: str, at_ms: int) -> str:
    """The id a message derived from ``key`` always gets: the same key and time give the same
    id, so writing the row again (a fan-out chunk re-run after its worker died) is skipped by
    the outbox's primary key instead of sending twice. ``at_ms`` (e.g. the campaign's creation
    time) keeps the ids sorting with the others; 80 bits of SHA-256 of ``key`` replace the
    random part."""
    if not 0 <= at_ms < 2 ** 48:
        raise ValueError(f"a message id's timestamp must fit 48 bits, got {at_ms}")
    digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:_RANDOM_BITS // 8], "big")
    return PREFIX + _base32(at_ms, 10) + _base32(digest, 16)
