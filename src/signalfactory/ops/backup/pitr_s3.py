"""A pgBackRest repository in an S3 bucket, reached with the regular backups' conventions.

``SIGNALFACTORY_PITR_REPO=s3://bucket/prefix`` puts the WAL archive and the base backups under
``prefix`` in ``bucket``. Credentials, region and endpoint are resolved the boto3 way, as for
``s3://`` backup destinations (``AWS_*`` variables, the shared credentials file,
``AWS_ENDPOINT_URL`` for S3-compatible stores), then written into pgBackRest's configuration:
PostgreSQL's ``archive_command`` reads only that file. ``AWS_CA_BUNDLE`` becomes
``repo1-storage-ca-file``. pgBackRest speaks HTTPS only, so an ``http://`` endpoint is refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from signalfactory.domain.errors import BadInputError
from signalfactory.ops.backup.targets import S3Target


@dataclass(frozen=True)
class S3Repo:
    """What pgBackRest needs to reach the bucket (holds secrets: never logged)."""

    url: str
    bucket: str
    prefix: str
    region: str
    endpoint: str
    port: int | None
    key: str
    secret: str
    token: str | None
    path_style: bool
    ca_file: str | None

    @property
    def repo_path(self) -> str:
        """pgBackRest's ``repo1-path``: absolute, the prefix inside the bucket."""
        return "/" + self.prefix

    def config_lines(self) -> list[str]:
        lines = ["repo1-type=s3", f"repo1-path={self.repo_path}",
                 f"repo1-s3-bucket={self.bucket}", f"repo1-s3-region={self.region}",
                 f"repo1-s3-endpoint={self.endpoint}", f"repo1-s3-key={self.key}",
                 f"repo1-s3-key-secret={self.secret}",
                 f"repo1-s3-uri-style={'path' if self.path_style else 'host'}"]
        if self.port is not None:
            lines.append(f"repo1-storage-port={self.port}")
        if self.token:
            lines.append(f"repo1-s3-token={self.token}")
        if self.ca_file:
            lines.append(f"repo1-storage-ca-file={self.ca_file}")
        return lines


def split_s3_url(url: str) -> tuple[str, str]:
    bucket, _, prefix = url[len("s3://"):].partition("/")
    if not bucket:
        raise BadInputError(f"SIGNALFACTORY_PITR_REPO={url!r} names no bucket; use "
                            "s3://bucket/prefix")
    return bucket, prefix.strip("/")


def s3_repo(url: str) -> tuple[S3Repo, S3Target]:
    """The pgBackRest options for ``url`` and the S3 target (the regular backups' client)
    that reads and writes the repository marker."""
    bucket, prefix = split_s3_url(url)
    try:
        import boto3
    except ImportError as exc:
        raise BadInputError("an s3:// PITR repository needs the `boto3` package; install it "
                            "(pip install boto3)") from exc
    session = boto3.session.Session()
    client = session.client("s3")
    credentials = session.get_credentials()
    if credentials is None:
        raise BadInputError(f"no AWS credentials for {url}: set AWS_ACCESS_KEY_ID and "
                            "AWS_SECRET_ACCESS_KEY (or a shared credentials file), as for "
                            "s3:// backups")
    frozen = credentials.get_frozen_credentials()
    endpoint = urlsplit(str(client.meta.endpoint_url))
    if endpoint.scheme != "https" or not endpoint.hostname:
        raise BadInputError(f"the S3 endpoint {client.meta.endpoint_url} is not https://: "
                            "pgBackRest reaches S3 over TLS only; set AWS_ENDPOINT_URL to an "
                            "https:// URL (and AWS_CA_BUNDLE to its CA when it is private)")
    custom = not endpoint.hostname.endswith("amazonaws.com")
    repo = S3Repo(url=url, bucket=bucket, prefix=prefix,
                  region=str(client.meta.region_name or "us-east-1"),
                  endpoint=endpoint.hostname, port=endpoint.port, key=str(frozen.access_key),
                  secret=str(frozen.secret_key), token=frozen.token or None,
                  # S3-compatible stores rarely resolve bucket.host names; AWS does.
                  path_style=custom, ca_file=os.environ.get("AWS_CA_BUNDLE") or None)
    return repo, S3Target(bucket, prefix, client)
