"""``Idempotency-Key`` on every POST under /api/v1, with Stripe's semantics.

- The first request with a key runs; its status and body are stored for 24 hours.
- A replay with the same key and the same request returns the stored status and body with
  ``Idempotent-Replayed: true`` and runs nothing.
- The same key with a different request (method, path, query or body) is refused with 422.
- A request whose key is still in flight gets 409 (retry shortly); the work runs once.
- Keys belong to a tenant: two tenants may use the same key independently.
- Results that mean "nothing happened" (401, 403, 422, 429, 5xx) are not stored: the claim is
  released and a corrected retry with the same key runs.

It is ASGI middleware, so every POST route gets it without declaring anything; it
authenticates through ``authenticate_scope``, which caches the principal for the route.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from signalfactory.api.auth import authenticate_scope
from signalfactory.api.problems import MEDIA_TYPE, PROBLEM_TYPE_BASE, ApiProblem
from signalfactory.domain.accounts import StoredResponse
from signalfactory.domain.errors import TemporaryError
from signalfactory.observability.logging import get_logger
from signalfactory.services.accounts import idempotency as keys
from signalfactory.services.platform import Platform

log = get_logger("signalfactory.api.idempotency")

HEADER = b"idempotency-key"
MAX_KEY_LENGTH = 255
NOT_STORED = frozenset({401, 403, 422, 429})
_SKIPPED_HEADERS = frozenset({"content-length", "date", "server", "x-request-id"})
PURGE_EVERY_S = 3600.0
#: marks a stored response whose body is sealed (it held a secret); never sent to clients
SEALED_HEADER = "x-signalfactory-stored-sealed"


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp, prefix: str = "/api/v1/") -> None:
        self.app = app
        self.prefix = prefix
        self._last_purge = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] != "POST"
                or not scope["path"].startswith(self.prefix)):
            await self.app(scope, receive, send)
            return
        raw_key = dict(scope.get("headers") or []).get(HEADER)
        if raw_key is None:
            await self.app(scope, receive, send)
            return
        key = raw_key.decode("latin-1").strip()
        if not key or len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
            await _send_problem(send, scope, ApiProblem(
                400, f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII "
                     "characters; a UUID is a good choice", code="idempotency-key-invalid"))
            return
        body = await _read_body(receive)
        platform: Platform = scope["app"].state.platform
        try:
            principal = await run_in_threadpool(authenticate_scope, platform, scope)
            request_hash = _fingerprint(scope, body)
            claim = await run_in_threadpool(keys.claim, platform, principal.tenant_id, key,
                                            "POST", scope["path"], request_hash)
        except ApiProblem as exc:
            await _send_problem(send, scope, exc)
            return
        except TemporaryError as exc:
            # Outside the routes' handlers: answer as they would (503, read-only or busy).
            await _send_problem(send, scope, ApiProblem(
                503, str(exc), code=exc.code, headers={"Retry-After": "5"}))
            return
        if claim.outcome == "replay" and claim.response is not None:
            await _send_replay(send, _opened(platform, claim.response))
            return
        if claim.outcome == "mismatch":
            await _send_problem(send, scope, ApiProblem(
                422, f"Idempotency-Key {key!r} was already used with a different request; "
                     "use a new key for a new request", code="idempotency-key-reused"))
            return
        if claim.outcome == "in_flight" or claim.record_id is None:
            await _send_problem(send, scope, ApiProblem(
                409, f"a request with Idempotency-Key {key!r} is still being processed; "
                     "retry after it finishes", code="idempotency-key-in-use",
                headers={"Retry-After": "1"}))
            return
        await self._execute(scope, receive, send, body, platform, claim.record_id)

    async def _execute(self, scope: Scope, receive: Receive, send: Send, body: bytes,
                       platform: Platform, record_id: int) -> None:
        status = 500
        headers: list[tuple[str, str]] = []
        chunks: list[bytes] = []
        delivered = False

        async def replay_receive() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers.extend((k.decode("latin-1"), v.decode("latin-1"))
                               for k, v in message.get("headers") or []
                               if k.decode("latin-1").lower() not in _SKIPPED_HEADERS)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, replay_receive, capture)
        except BaseException:
            await run_in_threadpool(keys.release, platform, record_id)
            raise
        if status >= 500 or status in NOT_STORED:
            try:
                await run_in_threadpool(keys.release, platform, record_id)
            except TemporaryError as exc:
                # The database went read-only during the request: the claim stays in flight
                # until it expires, so a retry with this key answers 409 until then.
                log.warning("idempotency claim not released", error=str(exc))
        else:
            stored_headers, stored_body = _sealed_if_secret(platform, headers,
                                                            b"".join(chunks))
            await run_in_threadpool(keys.complete, platform, record_id, status,
                                    stored_headers, stored_body)
        await self._maybe_purge(platform)

    async def _maybe_purge(self, platform: Platform) -> None:
        if time.monotonic() - self._last_purge < PURGE_EVERY_S:
            return
        self._last_purge = time.monotonic()
        try:
            removed = await run_in_threadpool(keys.purge_expired, platform)
        except Exception as exc:  # housekeeping must never fail a request
            log.warning("could not purge expired idempotency keys", error=str(exc))
            return
        if removed:
            log.info("purged expired idempotency keys", removed=removed)


def _fingerprint(scope: Scope, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (scope["method"].encode(), scope["path"].encode(),
                 scope.get("query_string", b""), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _sealed_if_secret(platform: Platform, headers: list[tuple[str, str]],
                      body: bytes) -> tuple[list[tuple[str, str]], bytes]:
    """A response marked ``Cache-Control: no-store`` carries a secret shown once (a webhook
    signing secret): it is stored sealed with the delivery key, never in clear."""
    no_store = any(k.lower() == "cache-control" and "no-store" in v.lower()
                   for k, v in headers)
    if not no_store:
        return headers, body
    if platform.secret_box is None:  # nothing can be sealed: keep no copy of the body
        return [*headers, (SEALED_HEADER, "dropped")], b""
    return [*headers, (SEALED_HEADER, "sealed")], platform.secret_box.seal(body)


def _opened(platform: Platform, stored: StoredResponse) -> StoredResponse:
    marks = [v for k, v in stored.headers if k == SEALED_HEADER]
    if not marks:
        return stored
    headers = tuple((k, v) for k, v in stored.headers if k != SEALED_HEADER)
    if marks[0] != "sealed" or platform.secret_box is None:
        # The answer held a secret shown once (an API key) and no copy was kept: say so,
        # rather than replaying the status with an empty body.
        body = json.dumps({
            "type": PROBLEM_TYPE_BASE + "conflict", "title": "Conflict", "status": 409,
            "detail": "this Idempotency-Key was already answered with a secret that is shown "
                      "only once and was not kept; send a new request (with a new key) to "
                      "make another"}).encode()
        return StoredResponse(status_code=409, headers=(
            ("content-type", MEDIA_TYPE), ("cache-control", "no-store")),
            body=body)
    return StoredResponse(status_code=stored.status_code, headers=headers,
                          body=platform.secret_box.open(stored.body))


async def _send_replay(send: Send, stored: StoredResponse) -> None:
    body = stored.body
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in stored.headers]
    headers += [(b"content-length", str(len(body)).encode()),
                (b"idempotent-replayed", b"true")]
    await send({"type": "http.response.start", "status": stored.status_code,
                "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_problem(send: Send, scope: Scope, exc: ApiProblem) -> None:
    from http import HTTPStatus

    payload = {"type": exc.type_, "title": HTTPStatus(exc.status_code).phrase,
               "status": exc.status_code, "detail": exc.detail, "instance": scope["path"],
               **exc.extra}
    body = json.dumps(payload).encode()
    headers = [(b"content-type", MEDIA_TYPE.encode()),
               (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1"))
                for k, v in (exc.headers or {}).items()]
    await send({"type": "http.response.start", "status": exc.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def document_idempotency(app: FastAPI) -> None:
    """Show the ``Idempotency-Key`` header and its 409/422 answers on every POST in OpenAPI."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        for path, operations in schema.get("paths", {}).items():
            post = operations.get("post")
            if post is None or not path.startswith("/api/v1/"):
                continue
            params = post.setdefault("parameters", [])
            if not any(p.get("name") == "Idempotency-Key" for p in params):
                params.append({
                    "name": "Idempotency-Key", "in": "header", "required": False,
                    "description": "Send a unique value (a UUID) to make retries safe: a "
                                   "replay within 24 h returns the first response.",
                    "schema": {"type": "string", "minLength": 1,
                               "maxLength": MAX_KEY_LENGTH, "pattern": "^[ -~]+$"}})
            responses = post.setdefault("responses", {})
            # Content (problem+json) is added by problems.document_problems.
            responses.setdefault("400", {"description": "Invalid Idempotency-Key"})
            responses.setdefault("409", {"description": "A request with this Idempotency-Key "
                                                        "is still in flight"})
            responses.setdefault("422", {"description": "Invalid request, or an "
                                                        "Idempotency-Key reused with a "
                                                        "different request"})
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
