"""Webhooks signed per the Standard Webhooks specification (https://www.standardwebhooks.com).

Headers: ``webhook-id`` (the outbox row id, the same on every attempt, so receivers drop
repeats), ``webhook-timestamp`` (Unix seconds of this attempt) and ``webhook-signature``:
``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` keyed with the bytes of the
``whsec_<base64>`` secret; during a rotation every active secret signs and the signatures
are space-separated, so receivers holding either secret verify. The spec is three lines of
hmac: signing here keeps the hot path free of a datetime round trip, and the tests verify
with the ``standardwebhooks`` and ``svix`` packages.

One httpx client per channel (connection pool, HTTP/1.1 keep-alive), created on first send;
redirects are not followed (a 3xx is a failed attempt: following it would bypass the SSRF
guard). Refused targets, timeouts and connection errors are failed ``SendResult``s.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as random_secrets
import threading
import time
from collections.abc import Sequence
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from signalfactory.adapters.channels.addresses import resolve_public
from signalfactory.adapters.channels.pacing import Pacer, paced_out, target_keys
from signalfactory.domain.delivery import SendResult
from signalfactory.domain.errors import BadInputError

if TYPE_CHECKING:
    import httpx

SECRET_PREFIX = "whsec_"  # noqa: S105 - the spec's prefix, not a secret
EXCERPT_CHARS = 500
#: bytes of a response read for the excerpt; the rest is never downloaded
EXCERPT_READ_BYTES = 4096
MAX_URL_CHARS = 2048
USER_AGENT = "SignalFactory-Webhooks/1"


def generate_webhook_secret() -> str:
    """A new signing secret: ``whsec_`` + base64 of 24 random bytes (as Svix makes them)."""
    return SECRET_PREFIX + base64.b64encode(random_secrets.token_bytes(24)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret (BadInputError when it is not one)."""
    if not secret.startswith(SECRET_PREFIX):
        raise BadInputError(f"a webhook secret starts with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadInputError(f"a webhook secret is {SECRET_PREFIX}<base64>: {exc}") from exc
    if not 24 <= len(key) <= 64:
        raise BadInputError(f"a webhook secret holds 24 to 64 bytes, not {len(key)}")
    return key


def check_webhook_secret(secret: str) -> str:
    """``secret`` stripped, once it is a usable ``whsec_`` secret (else BadInputError)."""
    secret = secret.strip()
    secret_key(secret)
    return secret


def sign(secrets: Sequence[str], message_id: str, timestamp: int, payload: bytes) -> str:
    """The ``webhook-signature`` header: one ``v1,`` signature per secret."""
    signed = f"{message_id}.{timestamp}.".encode() + payload
    return " ".join(
        "v1," + base64.b64encode(hmac.new(secret_key(s), signed, hashlib.sha256).digest()).decode()
        for s in secrets)


def check_webhook_url(url: str, allow_private: bool) -> str:
    """The URL, once it is one the platform may POST to (BadInputError saying why not):
    http(s), a host, no credentials, a port in 1..65535, and (unless ``allow_private``) a
    host resolving only to public addresses."""
    url = url.strip()
    if not url or len(url) > MAX_URL_CHARS:
        raise BadInputError(f"a webhook URL has 1 to {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BadInputError(f"webhook URL {url!r} is malformed: {exc}") from exc
    if parts.scheme.lower() not in ("http", "https"):
        raise BadInputError(f"a webhook URL is http:// or https://, not {parts.scheme!r}://")
    if "@" in parts.netloc:
        raise BadInputError("a webhook URL must not carry credentials (user:password@); "
                            "receivers verify the webhook-signature header instead")
    if not parts.hostname:
        raise BadInputError(f"webhook URL {url!r} has no host")
    if port is not None and not 1 <= port <= 65535:
        raise BadInputError(f"webhook URL port {port} is outside 1..65535")
    if not allow_private:
        resolve_public(parts.hostname, port or _default_port(parts.scheme), what="webhook")
    return url


def _default_port(scheme: str) -> int:
    return 443 if scheme.lower() == "https" else 80


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After``: delay seconds or an HTTP date, as seconds from now (>= 0)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class WebhookChannel:
    kind = "webhook"

    def __init__(self, timeout_s: float, allow_private: bool, pacer: Pacer | None = None,
                 max_connections: int = 100, max_pacing_wait_s: float = 30.0) -> None:
        self.timeout_s = timeout_s
        self.allow_private = allow_private
        self.pacer = pacer or Pacer()
        #: longest a send waits for its destination's rate (well under a worker's lease)
        self.max_pacing_wait_s = max_pacing_wait_s
        self._max_connections = max_connections
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                import httpx

                self._client = httpx.Client(
                    timeout=httpx.Timeout(self.timeout_s), follow_redirects=False,
                    trust_env=False,  # no proxy from the environment between us and targets
                    limits=httpx.Limits(max_connections=self._max_connections,
                                        max_keepalive_connections=self._max_connections))
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _route(self, target: str) -> tuple[str, dict[str, str], dict[str, str]]:
        """URL to request, extra headers and request extensions: when private targets are
        refused, connect to the address just vetted (Host header and TLS SNI keep the
        name), so a DNS answer that changes after the check cannot redirect us."""
        url = check_webhook_url(target, allow_private=True)
        if self.allow_private:
            return url, {}, {}
        parts = urlsplit(url)
        host = parts.hostname or ""
        resolved = resolve_public(host, parts.port or _default_port(parts.scheme),
                                  what="webhook")
        if resolved.address == host:
            return url, {}, {}
        literal = f"[{resolved.address}]" if ":" in resolved.address else resolved.address
        netloc = f"{literal}:{parts.port}" if parts.port else literal
        host_header = f"{host}:{parts.port}" if parts.port else host
        return (urlunsplit(parts._replace(netloc=netloc)), {"host": host_header},
                {"sni_hostname": host})

    def check_target(self, target: str) -> str:
        """``Channel.check_target``: what endpoint creation stores (SSRF-checked)."""
        return check_webhook_url(target, allow_private=self.allow_private)

    def send(self, target: str, secrets: Sequence[str], message_id: str, timestamp: int,
             subject: str, body: str, payload: bytes, *, html: str | None = None,
             max_per_second: float | None = None) -> SendResult:
        try:
            url, extra_headers, extensions = self._route(target)
            if not secrets:
                raise BadInputError("the endpoint has no signing secret")
            signature = sign(secrets, message_id, timestamp, payload)
        except BadInputError as exc:
            return SendResult(ok=False, error=f"refused: {exc}")
        if self.pacer.wait(target_keys(target, max_per_second),
                           self.max_pacing_wait_s) is None:
            return paced_out(self.max_pacing_wait_s)
        headers = {"content-type": "application/json", "user-agent": USER_AGENT,
                   "webhook-id": message_id, "webhook-timestamp": str(timestamp),
                   "webhook-signature": signature, **extra_headers}
        return self._post(url, headers, extensions, payload, time.perf_counter())

    def _post(self, url: str, headers: dict[str, str], extensions: dict[str, str],
              payload: bytes, started: float) -> SendResult:
        import httpx

        client = self._http()
        try:
            request = client.build_request("POST", url, content=payload, headers=headers,
                                           extensions=extensions)
            response = client.send(request, stream=True)
            try:
                excerpt = _excerpt(response)
            finally:
                response.close()
        except httpx.TimeoutException as exc:
            return SendResult(ok=False, latency_s=time.perf_counter() - started,
                              error=f"timed out after {self.timeout_s:g} s "
                                    f"({type(exc).__name__})")
        except httpx.HTTPError as exc:
            return SendResult(ok=False, latency_s=time.perf_counter() - started,
                              error=f"{type(exc).__name__}: {exc or 'connection failed'}")
        status = response.status_code
        ok = 200 <= status < 300
        return SendResult(
            ok=ok, status_code=status, latency_s=time.perf_counter() - started,
            error=None if ok else f"HTTP {status} {response.reason_phrase}".strip(),
            retry_after_s=parse_retry_after(response.headers.get("retry-after")),
            response_excerpt=excerpt)


def _excerpt(response: httpx.Response) -> str | None:
    data = b""
    for chunk in response.iter_bytes():
        data += chunk
        if len(data) >= EXCERPT_READ_BYTES:
            break
    if not data:
        return None
    return data.decode("utf-8", errors="replace")[:EXCERPT_CHARS]
