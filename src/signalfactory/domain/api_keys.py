"""API key format: ``sf_live_<32 random base62><6 base62 CRC32 checksum>``.

The fixed ``sf_live_`` marker makes a leaked key recognisable to secret scanners; the checksum
lets a mistyped or truncated key be refused without touching the database (the scheme GitHub
uses for its tokens). Only the SHA-256 digest of the whole key is ever stored.
"""

from __future__ import annotations

import hashlib
import secrets
import string
import zlib
from dataclasses import dataclass

KEY_MARKER = "sf_live_"
RANDOM_LENGTH = 32
CHECKSUM_LENGTH = 6
KEY_LENGTH = len(KEY_MARKER) + RANDOM_LENGTH + CHECKSUM_LENGTH
# What lists show and ``keys revoke`` accepts: the marker plus 8 random characters.
PREFIX_LENGTH = len(KEY_MARKER) + 8

BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
_BASE62_SET = frozenset(BASE62)

ROLES: tuple[str, ...] = ("viewer", "trader", "admin")


@dataclass(frozen=True)
class NewKey:
    """A freshly minted key: ``secret`` is shown once, ``digest`` and ``prefix`` are stored."""

    secret: str
    prefix: str
    digest: str


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, rem = divmod(number, 62)
        chars.append(BASE62[rem])
    return "".join(reversed(chars))


def checksum(random_part: str) -> str:
    """Six base62 characters of CRC32 (62**6 > 2**32, so every CRC value fits)."""
    return _base62(zlib.crc32(random_part.encode("ascii")), CHECKSUM_LENGTH)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def generate_key() -> NewKey:
    random_part = "".join(secrets.choice(BASE62) for _ in range(RANDOM_LENGTH))
    secret = KEY_MARKER + random_part + checksum(random_part)
    return NewKey(secret=secret, prefix=secret[:PREFIX_LENGTH], digest=digest(secret))


def is_well_formed(secret: str) -> bool:
    """True when ``secret`` has our shape and its checksum matches: no database needed."""
    if len(secret) != KEY_LENGTH or not secret.startswith(KEY_MARKER):
        return False
    body = secret[len(KEY_MARKER):]
    if not _BASE62_SET.issuperset(body):
        return False
    random_part, check = body[:RANDOM_LENGTH], body[RANDOM_LENGTH:]
    return secrets.compare_digest(checksum(random_part), check)


def role_at_least(role: str, required: str) -> bool:
    """Roles are ordered viewer < trader < admin; an unknown role satisfies nothing."""
    if role not in ROLES:
        return False
    return ROLES.index(role) >= ROLES.index(required)
