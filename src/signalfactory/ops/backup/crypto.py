"""Backup key handling and the chunked compress-then-encrypt stream every backup part uses.

Why chunks: a part can be gigabytes, and neither side may hold it in memory. Each chunk of at
most ``CHUNK_SIZE`` plaintext bytes is compressed on its own and sealed with AES-256-GCM. The
nonce is the chunk index, and the associated data binds the part header, the index and a final
flag, so chunks cannot be reordered, dropped, duplicated or cut off at a chunk boundary
without the reader noticing (the STREAM construction of Hoang, Reyhanitabar, Rogaway and
Vizár). Every part gets its own key, derived with HKDF from the backup key and a random salt,
so nonces never repeat under one key.

Part layout::

    header  = b"SFBK" | version u8 | compression u8 | key id (8 bytes) | salt (16 bytes)
    record  = flags u8 (1 final, 2 stored raw) | length u32 | AES-GCM(ciphertext + tag)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from signalfactory.domain.errors import BadInputError, OperationalError

MAGIC = b"SFBK"
VERSION = 1
CHUNK_SIZE = 4 << 20
_HEADER = struct.Struct(">4sBB8s16s")
_RECORD = struct.Struct(">BI")
_FINAL = 1
_RAW = 2
_TAG = 16
COMPRESSIONS = {"none": 0, "zstd": 1, "zlib": 2}
_KEY_HELP = ("generate one with `python3 -c 'import base64, secrets; "
             "print(base64.b64encode(secrets.token_bytes(32)).decode())'`")


class BackupPartError(OperationalError):
    """A stored backup cannot be used as it is; the message names the part and what is wrong.

    Operational, not bad input: a person must pick another backup or find the right key.
    """


class WrongKeyError(BackupPartError):
    code = "wrong-key"


class TamperedError(BackupPartError):
    code = "tampered"


class TruncatedError(BackupPartError):
    code = "truncated"


# -- the key ------------------------------------------------------------------------------


def parse_key(text: str, *, source: str = "SIGNALFACTORY_BACKUP_KEY") -> bytes:
    """32 raw bytes from base64 or hex text; anything else is refused with a clear message."""
    text = text.strip()
    raw: bytes | None = None
    # Text made only of hex digits is hex: base64 of random bytes practically never is.
    if len(text) % 2 == 0 and all(c in "0123456789abcdefABCDEF" for c in text):
        raw = bytes.fromhex(text)
    if raw is None:
        try:
            padded = text + "=" * (-len(text) % 4)
            raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BadInputError(f"{source} is neither base64 nor hex; it must encode 32 random "
                                f"bytes: {_KEY_HELP}") from exc
    if len(raw) != 32:
        raise BadInputError(f"{source} decodes to {len(raw)} bytes, but AES-256 needs exactly "
                            f"32 bytes (256 bits); {_KEY_HELP}")
    return raw


def _derive(master: bytes, info: bytes, salt: bytes | None = None, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(master)


@dataclass(frozen=True)
class BackupKey:
    """The master key and what is derived from it; repr never shows the key."""

    raw: bytes

    def __repr__(self) -> str:
        return f"BackupKey(id={self.key_id})"

    @property
    def key_id(self) -> str:
        """A public fingerprint: tells 'wrong key' apart from 'tampered' without leaking it."""
        return _derive(self.raw, b"signalfactory backup key id v1", length=8).hex()

    def part_key(self, salt: bytes) -> bytes:
        return _derive(self.raw, b"signalfactory backup part v1", salt)

    def derived(self, info: bytes) -> bytes:
        """A 32-byte key for another purpose (``info`` names it), independent of this one."""
        return _derive(self.raw, info)

    def chunk_name(self, plaintext: bytes) -> str:
        """A content address that says nothing about the content without the key."""
        name_key = _derive(self.raw, b"signalfactory backup chunk name v1")
        return hmac.new(name_key, plaintext, hashlib.sha256).hexdigest()

    def mac(self, payload: bytes) -> str:
        mac_key = _derive(self.raw, b"signalfactory backup manifest v1")
        return hmac.new(mac_key, payload, hashlib.sha256).hexdigest()


def load_backup_key(secret: str | None) -> BackupKey:
    if not secret:
        raise BadInputError("no backup key: set SIGNALFACTORY_BACKUP_KEY or "
                            f"SIGNALFACTORY_BACKUP_KEY_FILE (base64 or hex of 32 bytes); "
                            f"{_KEY_HELP}")
    return BackupKey(parse_key(secret))


# -- compression --------------------------------------------------------------------------


class _Codec(Protocol):
    def compress(self, data: bytes) -> bytes: ...
    def decompress(self, data: bytes) -> bytes: ...


class _Zstd:
    def __init__(self) -> None:
        import zstandard

        self._c = zstandard.ZstdCompressor(level=1)
        self._d = zstandard.ZstdDecompressor()

    def compress(self, data: bytes) -> bytes:
        return self._c.compress(data)

    def decompress(self, data: bytes) -> bytes:
        return self._d.decompress(data, max_output_size=CHUNK_SIZE)


class _Zlib:
    def compress(self, data: bytes) -> bytes:
        return zlib.compress(data, 1)

    def decompress(self, data: bytes) -> bytes:
        return zlib.decompress(data)


class _NoCompression:
    def compress(self, data: bytes) -> bytes:
        return data

    def decompress(self, data: bytes) -> bytes:
        return data


def default_compression() -> str:
    """zstd when the `zstandard` package is installed (fast), else the standard library's zlib."""
    try:
        import zstandard  # noqa: F401
    except ImportError:
        return "zlib"
    return "zstd"


def _codec(name: str) -> _Codec:
    if name == "zstd":
        try:
            return _Zstd()
        except ImportError as exc:
            raise OperationalError("this backup is zstd-compressed; install the "
                                   "`zstandard` package to read it") from exc
    if name == "zlib":
        return _Zlib()
    return _NoCompression()


# -- hashing wrappers ---------------------------------------------------------------------


@dataclass
class Digest:
    """Size and SHA-256 of a byte stream, filled in as the stream goes by."""

    size: int = 0
    sha256: str = ""


# -- writing ------------------------------------------------------------------------------


def _blocks(source: BinaryIO | Iterable[bytes]) -> Iterator[bytes]:
    """Plaintext in blocks of exactly CHUNK_SIZE (the last may be shorter)."""
    if hasattr(source, "read"):
        read = source.read
        while True:
            block = read(CHUNK_SIZE)
            # Pipes may return short reads before the end: top the block up.
            while block and len(block) < CHUNK_SIZE:
                more = read(CHUNK_SIZE - len(block))
                if not more:
                    break
                block += more
            if block:
                yield block
            if len(block) < CHUNK_SIZE:
                return
    buffer = bytearray()
    for piece in source:
        buffer += piece
        while len(buffer) >= CHUNK_SIZE:
            yield bytes(buffer[:CHUNK_SIZE])
            del buffer[:CHUNK_SIZE]
    if buffer:
        yield bytes(buffer)


def encrypt_stream(source: BinaryIO | Iterable[bytes], key: BackupKey, compression: str,
                   plain: Digest | None = None) -> Iterator[bytes]:
    """Yield the sealed part for ``source``; ``plain`` receives the plaintext's size and hash."""
    salt = os.urandom(16)
    header = _HEADER.pack(MAGIC, VERSION, COMPRESSIONS[compression],
                          bytes.fromhex(key.key_id), salt)
    aead = AESGCM(key.part_key(salt))
    codec = _codec(compression)
    digest = hashlib.sha256()
    size = 0
    yield header
    index = 0
    pending: bytes | None = None
    for block in _blocks(source):
        if pending is not None:
            yield _seal(aead, codec, header, index, pending, final=False)
            index += 1
        digest.update(block)
        size += len(block)
        pending = block
    yield _seal(aead, codec, header, index, pending or b"", final=True)
    if plain is not None:
        plain.size, plain.sha256 = size, digest.hexdigest()


def _seal(aead: AESGCM, codec: _Codec, header: bytes, index: int, block: bytes,
          *, final: bool) -> bytes:
    packed = codec.compress(block)
    flags = _FINAL if final else 0
    if len(packed) >= len(block):
        packed, flags = block, flags | _RAW
    record = _RECORD.pack(flags, len(packed) + _TAG)
    sealed = aead.encrypt(index.to_bytes(12, "big"), packed, header + record
                          + index.to_bytes(8, "big"))
    return record + sealed


# -- reading ------------------------------------------------------------------------------


class ByteStream(Protocol):
    """What a sealed part is read from: a file, or an S3 object's streaming body."""

    def read(self, size: int = -1, /) -> bytes: ...


class _HashingReader:
    """Reads exact byte counts from a stream, hashing everything read."""

    def __init__(self, stream: ByteStream) -> None:
        self._stream = stream
        self.digest = hashlib.sha256()
        self.size = 0

    def read_exact(self, n: int) -> bytes:
        parts = []
        want = n
        while want:
            piece = self._stream.read(want)
            if not piece:
                break
            parts.append(piece)
            want -= len(piece)
        data = b"".join(parts)
        self.digest.update(data)
        self.size += len(data)
        return data


def decrypt_stream(stream: ByteStream, key: BackupKey, name: str,
                   stored: Digest | None = None, plain: Digest | None = None,
                   ) -> Iterator[bytes]:
    """Yield the plaintext of a sealed part, refusing anything wrong with a message naming it.

    ``stored`` and ``plain`` receive the size and SHA-256 of the sealed and the plain bytes
    once the stream ends; the caller compares them with the manifest.
    """
    reader = _HashingReader(stream)
    header = reader.read_exact(_HEADER.size)
    if len(header) < _HEADER.size:
        raise TruncatedError(f"part {name} is truncated: it ends inside its header "
                             f"({len(header)} of {_HEADER.size} bytes)")
    magic, version, comp_id, key_id, salt = _HEADER.unpack(header)
    if magic != MAGIC or version != VERSION:
        raise TamperedError(f"part {name} is not a Signal Factory backup part (bad header); "
                            "it was replaced or corrupted")
    if key_id.hex() != key.key_id:
        raise WrongKeyError(
            f"part {name} was encrypted with a different backup key (key id {key_id.hex()}, "
            f"the configured key has id {key.key_id}); set SIGNALFACTORY_BACKUP_KEY or "
            "SIGNALFACTORY_BACKUP_KEY_FILE to the key in use when the backup was made")
    names = {v: k for k, v in COMPRESSIONS.items()}
    if comp_id not in names:
        raise TamperedError(f"part {name} names an unknown compression ({comp_id})")
    codec = _codec(names[comp_id])
    aead = AESGCM(key.part_key(salt))
    digest = hashlib.sha256()
    size = 0
    index = 0
    while True:
        record = reader.read_exact(_RECORD.size)
        if len(record) < _RECORD.size:
            raise TruncatedError(f"part {name} is truncated: it ends after {index} chunk(s) "
                                 "without the final chunk")
        flags, length = _RECORD.unpack(record)
        if length > CHUNK_SIZE + 1024 + _TAG:
            raise TamperedError(f"part {name}: chunk {index} claims {length} bytes, more than "
                                "any writer produces; the file was modified or corrupted")
        sealed = reader.read_exact(length)
        if len(sealed) < length:
            raise TruncatedError(f"part {name} is truncated inside chunk {index} "
                                 f"({len(sealed)} of {length} bytes)")
        try:
            packed = aead.decrypt(index.to_bytes(12, "big"), sealed,
                                  header + record + index.to_bytes(8, "big"))
        except InvalidTag:
            raise TamperedError(f"part {name} failed authentication at chunk {index}: the "
                                "file was modified or corrupted after it was written") from None
        block = packed if flags & _RAW else codec.decompress(packed)
        digest.update(block)
        size += len(block)
        yield block
        index += 1
        if flags & _FINAL:
            break
    if reader.read_exact(1):
        raise TamperedError(f"part {name} has data after its final chunk; it was modified")
    if stored is not None:
        stored.size, stored.sha256 = reader.size, reader.digest.hexdigest()
    if plain is not None:
        plain.size, plain.sha256 = size, digest.hexdigest()


def hashing(chunks: Iterable[bytes], into: Digest,
            on_chunk: Callable[[int], None] | None = None) -> Iterator[bytes]:
    """Pass chunks through, recording the size and SHA-256 of what went by."""
    digest = hashlib.sha256()
    size = 0
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
        if on_chunk is not None:
            on_chunk(len(chunk))
        yield chunk
    into.size, into.sha256 = size, digest.hexdigest()
