"""The sealed backup stream: round trips, and every way of cutting or shuffling it refused."""

from __future__ import annotations

import io
import os
import struct

import pytest

from signalfactory.domain.errors import BadInputError
from signalfactory.ops.backup import crypto
from signalfactory.ops.backup.crypto import (
    BackupKey,
    Digest,
    TamperedError,
    TruncatedError,
    WrongKeyError,
    decrypt_stream,
    encrypt_stream,
    parse_key,
)

KEY = BackupKey(bytes(range(32)))


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crypto, "CHUNK_SIZE", 1000)


def _seal(data: bytes, compression: str = "zstd") -> bytes:
    return b"".join(encrypt_stream(io.BytesIO(data), KEY, compression))


def _open(sealed: bytes, key: BackupKey = KEY) -> bytes:
    return b"".join(decrypt_stream(io.BytesIO(sealed), key, "part"))


def _records(sealed: bytes) -> tuple[bytes, list[bytes]]:
    header, rest, records = sealed[:30], sealed[30:], []
    while rest:
        _flags, length = struct.unpack(">BI", rest[:5])
        records.append(rest[: 5 + length])
        rest = rest[5 + length:]
    return header, records


@pytest.mark.parametrize("compression", ["zstd", "zlib", "none"])
@pytest.mark.parametrize("size", [0, 1, 999, 1000, 1001, 5500])
def test_round_trip(compression: str, size: int) -> None:
    data = (os.urandom(size // 2) + b"a" * (size - size // 2))
    plain_in, plain_out, stored = Digest(), Digest(), Digest()
    sealed = b"".join(encrypt_stream(io.BytesIO(data), KEY, compression, plain_in))
    out = b"".join(decrypt_stream(io.BytesIO(sealed), KEY, "p", stored, plain_out))
    assert out == data
    assert plain_in == plain_out and plain_in.size == size
    assert stored.size == len(sealed)


def test_iterable_source_and_compression_helps() -> None:
    data = b"0123456789" * 500
    sealed = b"".join(encrypt_stream([data[:7], data[7:]], KEY, "zstd"))
    assert len(sealed) < len(data) // 4
    assert _open(sealed) == data


def test_cut_at_a_chunk_boundary_is_truncation() -> None:
    header, records = _records(_seal(os.urandom(3500)))
    assert len(records) == 4
    with pytest.raises(TruncatedError, match="without the final chunk"):
        _open(header + b"".join(records[:-1]))
    with pytest.raises(TruncatedError, match="inside chunk"):
        _open(header + b"".join(records)[:-10])


def test_reordered_or_duplicated_chunks_fail_authentication() -> None:
    header, records = _records(_seal(os.urandom(3500)))
    with pytest.raises(TamperedError, match="chunk 1"):
        _open(header + records[0] + records[2] + records[1] + records[3])
    with pytest.raises(TamperedError):
        _open(header + records[0] + records[0] + records[1] + records[2] + records[3])


def test_trailing_data_after_the_final_chunk() -> None:
    with pytest.raises(TamperedError, match="after its final chunk"):
        _open(_seal(b"abc") + b"extra")


def test_flipping_the_final_flag_fails() -> None:
    header, records = _records(_seal(os.urandom(2500)))
    forged = bytes([records[1][0] | 1]) + records[1][1:]
    with pytest.raises(TamperedError):
        _open(header + records[0] + forged)


def test_other_key_is_named_as_wrong_key() -> None:
    with pytest.raises(WrongKeyError, match="different backup key"):
        _open(_seal(b"secret"), BackupKey(bytes(32)))


def test_parse_key_forms() -> None:
    raw = bytes(range(32))
    assert parse_key(raw.hex()) == raw
    assert parse_key(__import__("base64").b64encode(raw).decode()) == raw
    assert parse_key(__import__("base64").urlsafe_b64encode(raw).decode().rstrip("=")) == raw
    with pytest.raises(BadInputError, match="16 bytes"):
        parse_key(bytes(16).hex())
    with pytest.raises(BadInputError, match="neither base64 nor hex"):
        parse_key("not a key!")
    assert "00010203" not in repr(BackupKey(raw))
