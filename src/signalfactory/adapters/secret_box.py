"""AES-256-GCM sealing of endpoint targets and secrets (they carry credentials).

Sealed bytes: a version byte, a 12-byte random nonce, then the ciphertext with its tag. The
key comes from ``SIGNALFACTORY_DELIVERY_KEY`` (or ``_FILE``): 32 bytes, base64-encoded.
"""

from __future__ import annotations

import base64
import binascii
import os

from signalfactory.domain.errors import BadInputError, OperationalError
from signalfactory.settings import Settings

_VERSION = b"\x01"
_AAD = b"signalfactory-delivery-v1"


class AesGcmSecretBox:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise BadInputError("SIGNALFACTORY_DELIVERY_KEY must be 32 bytes, base64-encoded "
                                "(make one with: python -c \"import os,base64;"
                                "print(base64.b64encode(os.urandom(32)).decode())\")")
        # imported here: a process without a delivery key (every command-line one) never
        # seals anything, and cryptography is a noticeable part of a fresh process's start
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead = AESGCM(key)

    def seal(self, clear: bytes) -> bytes:
        nonce = os.urandom(12)
        return _VERSION + nonce + self._aead.encrypt(nonce, clear, _AAD)

    def open(self, sealed: bytes) -> bytes:
        if sealed[:1] != _VERSION or len(sealed) < 29:
            raise OperationalError("a sealed delivery secret has an unknown format")
        from cryptography.exceptions import InvalidTag

        try:
            return self._aead.decrypt(sealed[1:13], sealed[13:], _AAD)
        except InvalidTag as exc:
            raise OperationalError("a delivery secret does not open with "
                                   "SIGNALFACTORY_DELIVERY_KEY: was the key changed?") from exc


def build_secret_box(settings: Settings) -> AesGcmSecretBox | None:
    if settings.delivery_key is None:
        return None
    try:
        key = base64.b64decode(settings.delivery_key.get_secret_value(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadInputError("SIGNALFACTORY_DELIVERY_KEY is not valid base64") from exc
    return AesGcmSecretBox(key)
