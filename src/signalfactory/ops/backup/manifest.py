"""The backup manifest: what a backup holds and how to prove a restore brought it all back.

The manifest is plain JSON (so `backup list` works without the key) carrying an HMAC made with
a key derived from the backup key: a manifest edited by hand is refused before anything is
restored. It is written last, so a backup without one was interrupted and is never listed.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime

from signalfactory.domain.errors import BadInputError
from signalfactory.ops.backup.crypto import BackupKey, TamperedError, WrongKeyError

FORMAT = 1
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class Part:
    """One stored object: the database dump or one file of a store kept beside it."""

    name: str          # where it goes back: "database" or "bars/<tf>/<file>.arrow"
    kind: str          # "sqlite", "pg_dump" or "bar_segment"
    object: str        # its object name inside the backup
    size: int          # sealed bytes stored
    sha256: str        # of the sealed bytes stored
    plain_size: int
    plain_sha256: str
    #: content-addressed chunks in the shared chunk store, in file order (incremental
    #: backups). Then ``size`` counts the sealed bytes of all of them, and ``sha256`` is the
    #: SHA-256 of their names joined by newlines.
    chunks: tuple[str, ...] = ()


@dataclass(frozen=True)
class TableCheck:
    rows: int
    checksum: str
    method: str        # how `checksum` was computed; verify recomputes it the same way


@dataclass(frozen=True)
class BackupSummary:
    """One complete backup as `backup list` and `backup create --json` show it."""

    id: str
    created_at: str
    app_version: str
    schema_revision: str | None
    backend: str
    size_bytes: int
    parts: int
    rows: int
    seconds: float
    #: sealed bytes this backup added (incremental backups share unchanged chunks)
    new_bytes: int
    #: the newest audit log entry in the backup, ``SEQ:HASH`` (None: empty log, or a
    #: backup made before the audit log existed)
    audit_head: str | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class UnreadableBackup:
    """A backup whose manifest cannot be read: listed with the reason, never restored."""

    id: str
    error: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Manifest:
    id: str
    created_at: str
    app_version: str
    schema_revision: str | None
    backend: str       # "sqlite" or "postgresql"
    bar_store: str     # "columnar" or "sql"
    compression: str
    key_id: str
    parts: tuple[Part, ...] = ()
    tables: dict[str, TableCheck] = field(default_factory=dict)
    bars: dict[str, TableCheck] = field(default_factory=dict)
    seconds: float = 0.0
    format: int = FORMAT
    mac: str = ""
    #: the newest audit log entry in the snapshot, ``SEQ:HASH``: the anchor that
    #: ``signalfactory audit verify --anchor`` checks the live chain still contains, so
    #: entries deleted from the end or a chain rewritten after the backup are found
    audit_head: str | None = None
    #: sealed bytes this backup added to the destination (chunks already there are shared);
    #: None for a backup whose parts are all its own (then it is ``size``)
    new_bytes: int | None = None

    @property
    def size(self) -> int:
        return sum(p.size for p in self.parts)

    @property
    def created(self) -> datetime:
        return datetime.fromisoformat(self.created_at)

    def _body(self) -> dict[str, object]:
        body = asdict(self)
        body.pop("mac")
        # Fields added later are absent rather than null or empty: manifests written before
        # them keep their MAC.
        for name in ("audit_head", "new_bytes"):
            if body[name] is None:
                body.pop(name)
        for part in body["parts"]:
            if not part["chunks"]:
                part.pop("chunks")
        return body

    def _payload(self) -> bytes:
        return json.dumps(self._body(), sort_keys=True, separators=(",", ":")).encode()

    def signed(self, key: BackupKey) -> Manifest:
        """This manifest with its MAC under ``key``."""
        return replace(self, mac=key.mac(self._payload()))

    def check(self, key: BackupKey) -> None:
        """Refuse a manifest made under another key or changed after it was written."""
        if self.key_id != key.key_id:
            raise WrongKeyError(
                f"backup {self.id} was made with a different backup key (key id {self.key_id}, "
                f"the configured key has id {key.key_id}); set SIGNALFACTORY_BACKUP_KEY or "
                "SIGNALFACTORY_BACKUP_KEY_FILE to the key in use when the backup was made")
        if not secrets.compare_digest(self.mac, key.mac(self._payload())):
            raise TamperedError(f"the manifest of backup {self.id} fails its authentication "
                                "check: it was edited after the backup was made")

    def to_json(self) -> bytes:
        body = self._body()
        body["mac"] = self.mac
        return json.dumps(body, indent=2, sort_keys=True).encode()

    def summary(self) -> BackupSummary:
        """What `backup list --json` shows for one backup."""
        return BackupSummary(
            id=self.id, created_at=self.created_at, app_version=self.app_version,
            schema_revision=self.schema_revision, backend=self.backend, size_bytes=self.size,
            parts=len(self.parts),
            rows=sum(t.rows for t in self.tables.values())
            + sum(t.rows for t in self.bars.values()),
            seconds=round(self.seconds, 3), audit_head=self.audit_head,
            new_bytes=self.size if self.new_bytes is None else self.new_bytes)

    @classmethod
    def from_json(cls, raw: bytes, where: str) -> Manifest:
        try:
            body = json.loads(raw)
            if body.get("format") != FORMAT:
                raise BadInputError(f"{where}: manifest format {body.get('format')!r} is not "
                                    f"supported by this version (expects {FORMAT})")
            body["parts"] = tuple(Part(**{**p, "chunks": tuple(p.get("chunks", ()))})
                                  for p in body["parts"])
            body["tables"] = {k: TableCheck(**v) for k, v in body["tables"].items()}
            body["bars"] = {k: TableCheck(**v) for k, v in body["bars"].items()}
            return cls(**body)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise TamperedError(f"{where}: the manifest is not valid ({exc}); the backup is "
                                "damaged") from exc


def new_backup_id(now: datetime | None = None) -> str:
    """Sortable by time: ``sf-20260101T120000Z-1a2b3c``. The suffix starts with the
    millisecond (three hex digits, ~1.02 ms steps), so two backups in one second sort in the
    order they were taken; the rest is random."""
    now = now or datetime.now(UTC)
    return (f"sf-{now.strftime('%Y%m%dT%H%M%SZ')}-{now.microsecond >> 10:03x}"
            f"{secrets.token_hex(2)[:3]}")
