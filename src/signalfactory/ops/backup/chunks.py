"""The content-addressed chunk store behind incremental (SQLite) backups.

Each file of a backup (the SQLite snapshot, each bar segment) is cut into fixed-size chunks of
``CHUNK_BYTES``. SQLite pages are at most 64 KiB and a power of two, so every chunk boundary is
a page boundary: a page changed by a write changes one chunk, and the rest of the file maps to
chunks the store already holds. A chunk is named by an HMAC of its plaintext under a key
derived from the backup key (the name proves the content after decryption, and tells nothing
about it without the key), sealed with the same compress-then-encrypt stream as any part, and
stored once under ``chunks/<first two hex digits>/<name>.sfbk``. A backup's manifest lists
its chunks in order; a backup a minute later writes only the chunks that changed.

Why a chunk is never collected while a backup that reuses it is being written: ``backup
prune`` deletes an unreferenced chunk only once it is older than ``GRACE`` (a day), and a
backup reuses a stored chunk only when it is younger than ``REUSE_WINDOW`` (12 hours), else
it writes it again (which makes it young). So a reused chunk stays collectable-proof for 12
hours after the backup looked at it; a backup that ran that long is refused before its
manifest is written (:meth:`ChunkWriter.check_still_safe`). A chunk the backup wrote itself is
younger still. Prune lists the chunks before it reads the manifests, so a manifest completed
in between protects its chunks through the same age rule.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO

from signalfactory.domain.errors import OperationalError
from signalfactory.ops.backup.crypto import (
    BackupKey,
    Digest,
    TamperedError,
    decrypt_stream,
    encrypt_stream,
    hashing,
)
from signalfactory.ops.backup.manifest import Part
from signalfactory.ops.backup.targets import MissingPartError, StoredObject, Target

CHUNKS = "chunks"
CHUNK_BYTES = 128 << 10
GRACE = timedelta(hours=24)
REUSE_WINDOW = timedelta(hours=12)
CHUNK_NAME = re.compile(r"^[0-9a-f]{64}$")


def chunk_object(name: str) -> str:
    return f"{name[:2]}/{name}.sfbk"


def names_digest(names: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(names).encode()).hexdigest()


def _blocks(stream: IO[bytes]) -> Iterable[bytes]:
    while True:
        block = stream.read(CHUNK_BYTES)
        while block and len(block) < CHUNK_BYTES:  # short reads: top the block up
            more = stream.read(CHUNK_BYTES - len(block))
            if not more:
                break
            block += more
        if not block:
            return
        yield block


@dataclass
class ChunkWriter:
    """Writes the parts of one backup into the chunk store, each chunk once."""

    target: Target
    key: BackupKey
    compression: str
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    stored: dict[str, StoredObject] = field(default_factory=dict)
    new_bytes: int = 0
    oldest_reused: datetime | None = None

    def __post_init__(self) -> None:
        self.stored = self.target.list_objects(CHUNKS)

    def _put(self, block: bytes) -> tuple[str, int]:
        name = self.key.chunk_name(block)
        obj = chunk_object(name)
        known = self.stored.get(obj)
        if known is not None and self.now - known.modified < REUSE_WINDOW:
            if self.oldest_reused is None or known.modified < self.oldest_reused:
                self.oldest_reused = known.modified
            return name, known.size
        sealed = Digest()
        self.target.write_object(CHUNKS, obj, hashing(
            encrypt_stream([block], self.key, self.compression), sealed))
        self.stored[obj] = StoredObject(sealed.size, datetime.now(UTC))
        self.new_bytes += sealed.size
        return name, sealed.size

    def write_part(self, name: str, kind: str, stream: IO[bytes],
                   progress: Callable[[int], None] | None = None) -> Part:
        names: list[str] = []
        plain = hashlib.sha256()
        plain_size = sealed_size = 0
        for block in _blocks(stream):
            chunk, size = self._put(block)
            names.append(chunk)
            plain.update(block)
            plain_size += len(block)
            sealed_size += size
            if progress is not None:
                progress(len(block))
        return Part(name=name, kind=kind, object=name + ".sfbk", size=sealed_size,
                    sha256=names_digest(names), plain_size=plain_size,
                    plain_sha256=plain.hexdigest(), chunks=tuple(names))

    def check_still_safe(self) -> None:
        """Refuse to publish a manifest whose reused chunks prune may have collected."""
        if self.oldest_reused is None:
            return
        if datetime.now(UTC) - self.oldest_reused >= GRACE - timedelta(hours=1):
            raise OperationalError(
                "this backup ran so long that chunks it reuses may have been removed by "
                "`backup prune` meanwhile; it was discarded: run it again")


def read_chunks(target: Target, key: BackupKey, part: Part, backup_id: str,
                out: Callable[[bytes], None], stored: Digest) -> None:
    """Decrypt ``part``'s chunks in order into ``out``; each must be what its name says."""
    sealed = 0
    for index, name in enumerate(part.chunks):
        obj = chunk_object(name)
        chunk_digest = Digest()
        data = bytearray()
        try:
            with target.open_object(CHUNKS, obj) as stream:
                for block in decrypt_stream(stream, key, f"{CHUNKS}/{obj}", chunk_digest):
                    data += block
        except MissingPartError:
            raise MissingPartError(
                f"backup {backup_id} is missing its chunk {CHUNKS}/{obj} (part {part.name}, "
                f"not found in {target.url}); the backup is damaged: pick another one with "
                "`signalfactory backup list`") from None
        if key.chunk_name(bytes(data)) != name:
            raise TamperedError(f"chunk {CHUNKS}/{obj} (number {index} of part {part.name} "
                                f"in backup {backup_id}) does not hold the content its name "
                                "promises: it was replaced by another chunk")
        sealed += chunk_digest.size
        out(bytes(data))
    stored.size, stored.sha256 = sealed, names_digest(part.chunks)


@dataclass(frozen=True)
class ChunkSweep:
    unreferenced: int
    deleted: list[str]


def sweep_chunks(target: Target, referenced: Callable[[], set[str] | None], now: datetime,
                 *, dry_run: bool = False) -> ChunkSweep:
    """Delete chunks no manifest references once older than ``GRACE``.

    The chunks are listed first and ``referenced()`` (the chunks of every manifest) is
    called after, so a manifest completed in between only protects more. It answers None
    when a manifest could not be read: then nothing is deleted.
    """
    stored = target.list_objects(CHUNKS)
    names = referenced()
    if names is None:
        return ChunkSweep(0, [])
    wanted = {chunk_object(name) for name in names}
    loose = [obj for obj in stored if obj not in wanted]
    old = sorted(obj for obj in loose if now - stored[obj].modified >= GRACE)
    if not dry_run:
        for obj in old:
            target.delete_object(CHUNKS, obj)
    return ChunkSweep(len(loose), old)
