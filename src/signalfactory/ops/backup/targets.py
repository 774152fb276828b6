"""Where backups are kept: a local directory or an S3-compatible bucket, behind one interface.

Layout on both: ``<root>/<backup id>/<object>`` and ``<root>/<backup id>/manifest.json``.
Objects are written first (local files under a temporary name, renamed when complete; S3
multipart uploads, invisible until completed) and the manifest LAST, so a backup interrupted
at any point has no manifest and is never listed as complete. Incremental (SQLite) backups
keep their content in the shared chunk store ``<root>/chunks/<xx>/<name>.sfbk`` (see
:mod:`signalfactory.ops.backup.chunks`); their own folder holds only the manifest.

S3 credentials and endpoint come the usual boto3 way (``AWS_*`` variables, shared credentials
file, ``AWS_ENDPOINT_URL`` for S3-compatible stores). boto3 is imported only for s3:// URLs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from signalfactory.domain.errors import BadInputError, OperationalError
from signalfactory.ops.backup.crypto import BackupPartError, ByteStream
from signalfactory.ops.backup.manifest import MANIFEST_NAME


class MissingPartError(BackupPartError):
    code = "missing-part"


@dataclass(frozen=True)
class Incomplete:
    """A backup folder without a manifest: interrupted, or still being written."""

    id: str
    modified: datetime


@dataclass(frozen=True)
class StoredObject:
    size: int
    modified: datetime


class Target(Protocol):
    url: str

    def write_object(self, backup_id: str, name: str, chunks: Iterable[bytes]) -> int:
        """Store an object from chunks; returns bytes written. Not visible as complete yet."""
        ...

    def write_manifest(self, backup_id: str, data: bytes) -> None: ...

    def open_object(self, backup_id: str, name: str) -> AbstractContextManager[ByteStream]:
        """A context manager yielding a binary stream; MissingPartError when absent."""
        ...

    def read_manifest(self, backup_id: str) -> bytes: ...

    def list_ids(self) -> list[str]:
        """Complete backups (those with a manifest), oldest first."""
        ...

    def list_incomplete(self) -> list[Incomplete]: ...

    def delete(self, backup_id: str) -> None: ...

    def list_objects(self, folder: str) -> dict[str, StoredObject]:
        """Every object under ``folder`` by its name inside it (e.g. the chunk store)."""
        ...

    def delete_object(self, folder: str, name: str) -> None: ...


def disk_full(exc: OSError, where: str) -> OperationalError:
    return OperationalError(f"no space left on {where} ({exc.strerror}); free space or run "
                            "`signalfactory backup prune` there, then try again")


def _missing(backup_id: str, name: str, url: str) -> MissingPartError:
    return MissingPartError(f"backup {backup_id} is missing its part {name} (not found in "
                            f"{url}); the backup is damaged: pick another one with "
                            "`signalfactory backup list`")


class LocalTarget:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)

    def _dir(self, backup_id: str) -> Path:
        return self.root / backup_id

    def _write(self, final: Path, chunks: Iterable[bytes]) -> int:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.{secrets.token_hex(4)}.partial")
        written = 0
        try:
            with tmp.open("wb") as fh:
                for chunk in chunks:
                    fh.write(chunk)
                    written += len(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            tmp.rename(final)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if exc.errno == errno.ENOSPC:
                raise disk_full(exc, self.url) from exc
            raise
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return written

    def write_object(self, backup_id: str, name: str, chunks: Iterable[bytes]) -> int:
        return self._write(self._dir(backup_id) / name, chunks)

    def write_manifest(self, backup_id: str, data: bytes) -> None:
        self._write(self._dir(backup_id) / MANIFEST_NAME, [data])
        fd = os.open(self._dir(backup_id), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @contextmanager
    def open_object(self, backup_id: str, name: str) -> Iterator[BinaryIO]:
        try:
            fh = (self._dir(backup_id) / name).open("rb")
        except FileNotFoundError:
            raise _missing(backup_id, name, self.url) from None
        with fh:
            yield fh

    def read_manifest(self, backup_id: str) -> bytes:
        try:
            return (self._dir(backup_id) / MANIFEST_NAME).read_bytes()
        except FileNotFoundError:
            raise BadInputError(f"no complete backup {backup_id!r} in {self.url}; see "
                                "`signalfactory backup list`") from None

    def list_ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and (p / MANIFEST_NAME).is_file())

    def list_incomplete(self) -> list[Incomplete]:
        if not self.root.is_dir():
            return []
        out = []
        for p in self.root.iterdir():
            if p.is_dir() and p.name.startswith("sf-") and not (p / MANIFEST_NAME).exists():
                newest = max([f.stat().st_mtime for f in p.rglob("*")] + [p.stat().st_mtime])
                out.append(Incomplete(p.name, datetime.fromtimestamp(newest, UTC)))
        return sorted(out, key=lambda i: i.id)

    def delete(self, backup_id: str) -> None:
        folder = self._dir(backup_id)
        # Manifest first: a delete cut short leaves an incomplete backup, never a broken one.
        (folder / MANIFEST_NAME).unlink(missing_ok=True)
        shutil.rmtree(folder, ignore_errors=True)

    def list_objects(self, folder: str) -> dict[str, StoredObject]:
        base = self._dir(folder)
        if not base.is_dir():
            return {}
        out = {}
        for path in base.rglob("*"):
            if path.is_file() and not path.name.endswith(".partial"):
                stat = path.stat()
                out[path.relative_to(base).as_posix()] = StoredObject(
                    stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC))
        return out

    def delete_object(self, folder: str, name: str) -> None:
        (self._dir(folder) / name).unlink(missing_ok=True)


class _Paginator(Protocol):
    def paginate(self, **params: object) -> Iterable[dict[str, Any]]: ...


class S3Client(Protocol):
    """The calls made on a boto3 S3 client (boto3 ships no types; answers are dicts)."""

    def create_multipart_upload(self, **params: object) -> dict[str, Any]: ...
    def upload_part(self, **params: object) -> dict[str, Any]: ...
    def complete_multipart_upload(self, **params: object) -> dict[str, Any]: ...
    def abort_multipart_upload(self, **params: object) -> dict[str, Any]: ...
    def put_object(self, **params: object) -> dict[str, Any]: ...
    def get_object(self, **params: object) -> dict[str, Any]: ...
    def delete_object(self, **params: object) -> dict[str, Any]: ...
    def delete_objects(self, **params: object) -> dict[str, Any]: ...
    def get_paginator(self, operation: str, /) -> _Paginator: ...


class S3Target:
    """An S3 bucket and key prefix. Uploads in 8 MiB multipart pieces, so memory stays flat."""

    PIECE = 8 << 20

    def __init__(self, bucket: str, prefix: str, client: S3Client | None = None) -> None:
        if client is None:
            try:
                import boto3
            except ImportError as exc:
                raise BadInputError("s3:// destinations need the `boto3` package; install "
                                    "it (pip install boto3)") from exc
            client = boto3.client("s3")
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"

    def _key(self, backup_id: str, name: str = "") -> str:
        parts = [p for p in (self.prefix, backup_id, name) if p]
        return "/".join(parts)

    def _errors(self, exc: Exception) -> Exception:
        return OperationalError(f"S3 request to {self.url} failed: {exc}; check the bucket, "
                                "credentials (AWS_*) and AWS_ENDPOINT_URL")

    def write_object(self, backup_id: str, name: str, chunks: Iterable[bytes]) -> int:
        key = self._key(backup_id, name)
        buffer = bytearray()
        upload_id: str | None = None
        etags: list[dict[str, Any]] = []
        written = 0
        try:
            for chunk in chunks:
                buffer += chunk
                written += len(chunk)
                if len(buffer) >= self.PIECE:
                    if upload_id is None:
                        upload_id = self.client.create_multipart_upload(
                            Bucket=self.bucket, Key=key)["UploadId"]
                    etags.append(self._upload_piece(key, upload_id, len(etags) + 1, buffer))
                    buffer = bytearray()
            if upload_id is None:
                self.client.put_object(Bucket=self.bucket, Key=key, Body=bytes(buffer))
                return written
            if buffer:
                etags.append(self._upload_piece(key, upload_id, len(etags) + 1, buffer))
            self.client.complete_multipart_upload(Bucket=self.bucket, Key=key,
                                                  UploadId=upload_id,
                                                  MultipartUpload={"Parts": etags})
            return written
        except BaseException as exc:
            if upload_id is not None:
                with contextlib.suppress(Exception):  # best effort: the manifest is what counts
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=key,
                                                       UploadId=upload_id)
            if _is_client_error(exc):
                raise self._errors(exc) from exc  # type: ignore[arg-type]
            raise

    def _upload_piece(self, key: str, upload_id: str, number: int,
                      data: bytearray) -> dict[str, Any]:
        answer = self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                         PartNumber=number, Body=bytes(data))
        return {"ETag": answer["ETag"], "PartNumber": number}

    def write_manifest(self, backup_id: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(backup_id, MANIFEST_NAME),
                                   Body=data, ContentType="application/json")
        except Exception as exc:
            if _is_client_error(exc):
                raise self._errors(exc) from exc
            raise

    @contextmanager
    def open_object(self, backup_id: str, name: str) -> Iterator[ByteStream]:
        try:
            body = self.client.get_object(Bucket=self.bucket,
                                          Key=self._key(backup_id, name))["Body"]
        except Exception as exc:
            if _error_code(exc) in ("NoSuchKey", "404"):
                raise _missing(backup_id, name, self.url) from None
            if _is_client_error(exc):
                raise self._errors(exc) from exc
            raise
        try:
            yield body
        finally:
            body.close()

    def read_manifest(self, backup_id: str) -> bytes:
        try:
            body = self.client.get_object(Bucket=self.bucket,
                                          Key=self._key(backup_id, MANIFEST_NAME))["Body"]
        except Exception as exc:
            if _error_code(exc) in ("NoSuchKey", "404"):
                raise BadInputError(f"no complete backup {backup_id!r} in {self.url}; see "
                                    "`signalfactory backup list`") from None
            if _is_client_error(exc):
                raise self._errors(exc) from exc
            raise
        with body:
            return bytes(body.read())

    def _objects(self, under: str = "") -> Iterator[dict[str, Any]]:
        prefix = (self.prefix + "/" if self.prefix else "") + under
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix)
            for page in pages:
                yield from page.get("Contents", [])
        except Exception as exc:
            if _is_client_error(exc):
                raise self._errors(exc) from exc
            raise

    def _grouped(self) -> dict[str, list[dict[str, Any]]]:
        skip = len(self.prefix) + 1 if self.prefix else 0
        groups: dict[str, list[dict[str, Any]]] = {}
        for obj in self._objects():
            rest = obj["Key"][skip:]
            if "/" in rest:
                groups.setdefault(rest.split("/", 1)[0], []).append(obj)
        return groups

    def list_ids(self) -> list[str]:
        return sorted(backup_id for backup_id, objs in self._grouped().items()
                      if any(o["Key"].endswith("/" + MANIFEST_NAME) for o in objs))

    def list_incomplete(self) -> list[Incomplete]:
        return [Incomplete(backup_id, max(o["LastModified"] for o in objs))
                for backup_id, objs in sorted(self._grouped().items())
                if backup_id.startswith("sf-")
                and not any(o["Key"].endswith("/" + MANIFEST_NAME) for o in objs)]

    def list_objects(self, folder: str) -> dict[str, StoredObject]:
        skip = len(self._key(folder)) + 1
        return {o["Key"][skip:]: StoredObject(int(o["Size"]), o["LastModified"])
                for o in self._objects(folder + "/")}

    def delete_object(self, folder: str, name: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(folder, name))
        except Exception as exc:
            if _is_client_error(exc):
                raise self._errors(exc) from exc
            raise

    def delete(self, backup_id: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket,
                                      Key=self._key(backup_id, MANIFEST_NAME))
            keys = [{"Key": o["Key"]} for o in self._objects(backup_id + "/")]
            for start in range(0, len(keys), 1000):
                self.client.delete_objects(Bucket=self.bucket,
                                           Delete={"Objects": keys[start:start + 1000]})
        except Exception as exc:
            if _is_client_error(exc):
                raise self._errors(exc) from exc
            raise


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def _is_client_error(exc: BaseException) -> bool:
    module = type(exc).__module__
    return module.startswith(("botocore", "boto3"))


def open_target(dest: str) -> Target:
    """A target from a local path or an ``s3://bucket/prefix`` URL."""
    if not dest:
        raise BadInputError("no destination: give a local directory or s3://bucket/prefix")
    if dest.startswith("s3://"):
        rest = dest[len("s3://"):]
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise BadInputError(f"{dest!r} names no bucket; use s3://bucket/prefix")
        return S3Target(bucket, prefix)
    if "://" in dest:
        raise BadInputError(f"{dest!r}: only local paths and s3://bucket/prefix are supported")
    return LocalTarget(Path(dest).expanduser())
