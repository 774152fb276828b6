"""The API key format: recognisable, self-checking, digest-only."""

from __future__ import annotations

import hashlib
import random

from signalfactory.domain.api_keys import (
    BASE62,
    KEY_LENGTH,
    KEY_MARKER,
    PREFIX_LENGTH,
    RANDOM_LENGTH,
    checksum,
    generate_key,
    is_well_formed,
    role_at_least,
)


def test_generated_keys_have_the_documented_shape() -> None:
    keys = [generate_key() for _ in range(200)]
    assert len({k.secret for k in keys}) == 200
    for key in keys:
        assert key.secret.startswith(KEY_MARKER)
        assert len(key.secret) == KEY_LENGTH == 8 + 32 + 6
        assert set(key.secret[len(KEY_MARKER):]) <= set(BASE62)
        assert key.prefix == key.secret[:PREFIX_LENGTH] and len(key.prefix) == 16
        assert key.digest == hashlib.sha256(key.secret.encode()).hexdigest()
        assert is_well_formed(key.secret)


def test_every_single_character_typo_is_caught_by_the_checksum() -> None:
    rng = random.Random(7)
    secret = generate_key().secret
    body_start = len(KEY_MARKER)
    for position in range(body_start, len(secret)):
        for replacement in rng.sample([c for c in BASE62 if c != secret[position]], 10):
            typo = secret[:position] + replacement + secret[position + 1:]
            assert not is_well_formed(typo), (position, replacement)


def test_transpositions_truncations_and_foreign_text_are_refused() -> None:
    secret = generate_key().secret
    swapped = [secret[:i] + secret[i + 1] + secret[i] + secret[i + 2:]
               for i in range(len(KEY_MARKER), len(secret) - 1) if secret[i] != secret[i + 1]]
    assert swapped and not any(is_well_formed(s) for s in swapped)
    for bad in (secret[:-1], secret + "a", secret.replace("sf_live_", "sf_test_"),
                secret.upper(), " " + secret[1:], "", "sf_live_", "Bearer " + secret,
                secret[:-6] + "!!!!!!", secret[:-6] + "é" * 6):
        assert not is_well_formed(bad), bad


def test_checksum_is_six_base62_characters_of_crc32() -> None:
    random_part = "A" * RANDOM_LENGTH
    value = checksum(random_part)
    assert len(value) == 6 and set(value) <= set(BASE62)
    # Decoding the base62 gives back the CRC32 itself.
    import zlib

    decoded = 0
    for char in value:
        decoded = decoded * 62 + BASE62.index(char)
    assert decoded == zlib.crc32(random_part.encode())


def test_roles_are_ordered_viewer_trader_admin() -> None:
    assert role_at_least("admin", "trader") and role_at_least("trader", "trader")
    assert role_at_least("viewer", "viewer")
    assert not role_at_least("viewer", "trader") and not role_at_least("trader", "admin")
    assert not role_at_least("root", "viewer")
