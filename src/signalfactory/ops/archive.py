"""Daily archive snapshots: one day's bars and signals as Parquet, hashed and signed.

A snapshot is a folder ``<dir>/<YYYY-MM-DD>/`` with ``bars_<tf>.parquet`` per timeframe that
has bars that day, ``signals.parquet`` (when the signals table exists), ``manifest.json``
(SHA-256 and size of every file, row counts, the signer's public key) and
``manifest.json.sig`` (Ed25519 over the manifest's exact bytes, base64).

The signing key is ``SIGNALFACTORY_ARCHIVE_SIGNING_KEY`` or its ``_FILE``: a PEM private key
(``openssl genpkey -algorithm ed25519``) or the raw 32-byte key in base64. Verifying checks
the signature (against a public key you pin with ``--public-key``, else the configured
signing key's, else the one in the manifest, which is reported as unpinned) and every file's
hash, and names each file that fails.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

import signalfactory
from signalfactory.adapters.storage.bar_store import BarStore
from signalfactory.adapters.storage.instruments import SqlInstrumentRepository
from signalfactory.adapters.storage.unit_of_work import sql_database
from signalfactory.domain.bars import FIELDS
from signalfactory.domain.errors import BadInputError, OperationalError
from signalfactory.domain.timeframes import Timeframe
from signalfactory.domain.timestamps import datetime_to_ns
from signalfactory.services.platform import Platform
from signalfactory.settings import Settings

MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.sig"
FORMAT = 1
_NS_PER_DAY = 86_400 * 1_000_000_000


# -- keys ---------------------------------------------------------------------------------

def _b64_or_hex(text: str) -> bytes | None:
    if len(text) == 64:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def load_signing_key(settings: Settings) -> Ed25519PrivateKey:
    if settings.archive_signing_key is None:
        raise BadInputError("no archive signing key: set SIGNALFACTORY_ARCHIVE_SIGNING_KEY or "
                            "SIGNALFACTORY_ARCHIVE_SIGNING_KEY_FILE (an Ed25519 PEM from "
                            "`openssl genpkey -algorithm ed25519`, or 32 raw bytes in base64)")
    text = settings.archive_signing_key.get_secret_value().strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise BadInputError(f"SIGNALFACTORY_ARCHIVE_SIGNING_KEY is not a readable "
                                f"unencrypted PEM private key: {exc}") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise BadInputError("SIGNALFACTORY_ARCHIVE_SIGNING_KEY is a PEM key but not "
                                "Ed25519; generate one with `openssl genpkey -algorithm "
                                "ed25519`")
        return key
    raw = _b64_or_hex(text)
    if raw is None or len(raw) != 32:
        raise BadInputError("SIGNALFACTORY_ARCHIVE_SIGNING_KEY must be an Ed25519 PEM private "
                            "key or exactly 32 raw bytes in base64 or hex")
    return Ed25519PrivateKey.from_private_bytes(raw)


def _public_raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def load_public_key(text: str, source: str) -> Ed25519PublicKey:
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode())
        except ValueError:
            key = None
        if key is None or not isinstance(key, Ed25519PublicKey):
            raise BadInputError(f"{source} is not an Ed25519 public key in PEM form")
        return key
    raw = _b64_or_hex(text)
    if raw is None or len(raw) != 32:
        raise BadInputError(f"{source} must be an Ed25519 public key: PEM, or 32 raw bytes "
                            "in base64 or hex")
    return Ed25519PublicKey.from_public_bytes(raw)


def key_fingerprint(key: Ed25519PublicKey) -> str:
    return hashlib.sha256(_public_raw(key)).hexdigest()[:16]


# -- snapshot -----------------------------------------------------------------------------

def parse_day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise BadInputError(f"--date {text!r} is not a date; use YYYY-MM-DD") from exc


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _bar_tables(store: BarStore, conn: sa.Connection, start_ns: int) -> dict[str, pa.Table]:
    names = SqlInstrumentRepository(conn).symbols()
    out = {}
    for tf in sorted(store.timeframes(conn)):
        cols = store.read_columns(conn, Timeframe.parse(tf), None, start_ns,
                                  start_ns + _NS_PER_DAY - 1)
        if not len(cols):
            continue
        out[f"bars_{tf}.parquet"] = pa.table({
            "symbol": pa.array([names.get(int(i), "") for i in cols.instrument_id],
                               pa.string()),
            "instrument_id": pa.array(cols.instrument_id),
            "ts": pa.array(cols.ts, pa.timestamp("ns", tz="UTC")),
            **{f: pa.array(getattr(cols, f)) for f in FIELDS}})
    return out


def _jsonable(value: object) -> object:
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, default=str)
    return value


def _signals_table(conn: sa.Connection, day_start: datetime) -> pa.Table | None:
    if not sa.inspect(conn).has_table("signals"):
        return None
    signals = sa.Table("signals", sa.MetaData(), autoload_with=conn)
    time_col = signals.c.bar_ts if "bar_ts" in signals.c else signals.c.created_at
    rows = conn.execute(sa.select(signals).where(
        time_col >= day_start, time_col < day_start + timedelta(days=1))
        .order_by(*signals.primary_key.columns or signals.columns)).mappings().all()
    columns = {name: [_jsonable(r[name]) for r in rows] for name in signals.c.keys()}  # noqa: SIM118 - names, not columns
    try:
        return pa.table(columns)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.table({k: pa.array([None if v is None else str(v) for v in vals], pa.string())
                         for k, vals in columns.items()})


@dataclass(frozen=True)
class ArchivedFile:
    """One file of a snapshot as its manifest lists it."""

    name: str
    rows: int
    size: int
    sha256: str


@dataclass(frozen=True)
class SnapshotReport:
    path: str
    date: str
    files: tuple[ArchivedFile, ...]
    signals: str
    key_id: str

    def to_dict(self) -> dict[str, object]:
        """The ``archive snapshot --json`` form."""
        return {"path": self.path, "date": self.date,
                "files": [asdict(f) for f in self.files], "signals": self.signals,
                "key_id": self.key_id}


def snapshot(platform: Platform, day: date, out_dir: Path | None = None, *,
             force: bool = False) -> SnapshotReport:
    key = load_signing_key(platform.settings)
    root = out_dir or platform.settings.home / "archive"
    final = root / day.isoformat()
    if final.exists() and not force:
        raise BadInputError(f"an archive for {day} already exists at {final}; pass --force to "
                            "replace it")
    day_start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    start_ns = datetime_to_ns(day_start)
    database = sql_database(platform.database)
    with database.reader.connect() as conn:
        tables = _bar_tables(database.bar_store, conn, start_ns)
        signals = _signals_table(conn, day_start)
    if signals is not None:
        tables["signals.parquet"] = signals
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{day.isoformat()}-", dir=root))
    try:
        files = []
        for name, table in sorted(tables.items()):
            pq.write_table(table, staging / name, compression="zstd")
            files.append(ArchivedFile(name=name, rows=table.num_rows,
                                      size=(staging / name).stat().st_size,
                                      sha256=_sha256(staging / name)))
        public = key.public_key()
        included = "included" if signals is not None else "no signals table"
        key_id = key_fingerprint(public)
        manifest = {"format": FORMAT, "date": day.isoformat(),
                    "created_at": datetime.now(UTC).isoformat(),
                    "app_version": signalfactory.__version__,
                    "signals": included,
                    "files": [asdict(f) for f in files],
                    "public_key": base64.b64encode(_public_raw(public)).decode(),
                    "key_id": key_id}
        body = json.dumps(manifest, indent=2, sort_keys=True).encode()
        (staging / MANIFEST).write_bytes(body)
        (staging / SIGNATURE).write_text(base64.b64encode(key.sign(body)).decode() + "\n")
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return SnapshotReport(path=str(final), date=day.isoformat(), files=tuple(files),
                          signals=included, key_id=key_id)


# -- verify -------------------------------------------------------------------------------

@dataclass(frozen=True)
class VerifyResult:
    path: str
    signature: str
    key: str
    pinned: bool
    failures: dict[str, str]
    checked: tuple[str, ...]
    unlisted: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.signature == "ok" and not self.failures

    def to_dict(self) -> dict[str, object]:
        """The ``archive verify --json`` form."""
        return {"ok": self.ok, "path": self.path, "signature": self.signature,
                "key_id": self.key, "pinned_key": self.pinned, "failures": self.failures,
                "checked": list(self.checked), "unlisted": list(self.unlisted)}


def _pinned_key(settings: Settings, public_key: str | None) -> Ed25519PublicKey | None:
    if public_key:
        path = Path(public_key)
        text = path.read_text() if path.is_file() else public_key
        return load_public_key(text, "--public-key")
    if settings.archive_signing_key is not None:
        return load_signing_key(settings).public_key()
    return None


def _signature_problem(key: Ed25519PublicKey, embedded: Ed25519PublicKey,
                       folder: Path, body: bytes) -> str | None:
    """Why the manifest's signature (present) does not hold; None when it verifies."""
    try:
        signature = base64.b64decode((folder / SIGNATURE).read_text().strip(), validate=True)
        key.verify(signature, body)
    except (InvalidSignature, binascii.Error, ValueError):
        if key_fingerprint(embedded) != key_fingerprint(key):
            return (f"signed by another key: the manifest names key "
                    f"{key_fingerprint(embedded)}, the pinned key is {key_fingerprint(key)}")
        return "does not verify: manifest.json was changed after signing"
    return None


def _file_problem(folder: Path, name: str, entry: dict[str, object]) -> str | None:
    file = folder / name
    if "/" in name or name.startswith(".") or not name:
        return "unsafe file name in manifest"
    if not file.is_file():
        return "missing"
    if file.stat().st_size != entry.get("size"):
        return (f"size {file.stat().st_size} bytes, manifest says {entry.get('size')} "
                "(truncated or replaced)")
    if _sha256(file) != entry.get("sha256"):
        return "SHA-256 differs from the manifest (modified)"
    return None


def verify(settings: Settings, path: Path, public_key: str | None = None) -> VerifyResult:
    folder = path.parent if path.name == MANIFEST else path
    if not (folder / MANIFEST).is_file():
        raise BadInputError(f"{folder} holds no {MANIFEST}; give the folder of an archive "
                            "snapshot (for example .signalfactory/archive/2024-01-02)")
    body = (folder / MANIFEST).read_bytes()
    try:
        manifest = json.loads(body)
        files = manifest["files"]
        embedded = load_public_key(manifest["public_key"], "the manifest's public_key")
    except (ValueError, KeyError, TypeError, BadInputError) as exc:
        raise OperationalError(f"{folder / MANIFEST} is damaged ({exc}); this archive cannot "
                               "be trusted") from exc
    pinned = _pinned_key(settings, public_key)
    key = pinned or embedded
    failures: dict[str, str] = {}
    if not (folder / SIGNATURE).is_file():
        problem: str | None = f"{SIGNATURE} is missing"
        failures[SIGNATURE] = "missing"
    elif (problem := _signature_problem(key, embedded, folder, body)) is not None:
        failures[MANIFEST] = f"signature {problem}"
    listed = set()
    checked = []
    for entry in files:
        name = str(entry.get("name", ""))
        listed.add(name)
        file_problem = _file_problem(folder, name, entry)
        if file_problem is None:
            checked.append(name)
        else:
            failures[name or "?"] = file_problem
    unlisted = sorted(p.name for p in folder.iterdir()
                      if p.name not in listed | {MANIFEST, SIGNATURE})
    return VerifyResult(path=str(folder), signature=problem or "ok", key=key_fingerprint(key),
                        pinned=pinned is not None, failures=failures, checked=tuple(checked),
                        unlisted=tuple(unlisted))
