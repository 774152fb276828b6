"""Pure ASGI middleware: request ids in logs, latency histograms, request size limits,
classified errors raised by middleware (outside the app's exception handlers) answered in
the same problem shape as the handlers give, and load shedding."""

from __future__ import annotations

import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from signalfactory.api.problems import MEDIA_TYPE, PROBLEM_TYPE_BASE, problem_for
from signalfactory.observability.logging import bind_context, clear_context, get_logger
from signalfactory.observability.metrics import API_SHED, HTTP_DURATION

log = get_logger("signalfactory.api")
MAX_BODY_BYTES = 1 << 20


class RequestContextMiddleware:
    """Binds a request id (from ``X-Request-ID`` or new), times the request, logs 5xx."""

    def __init__(self, app: ASGIApp, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or uuid.uuid4().hex
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await _too_large(send, self.max_body_bytes)
            return
        clear_context()
        bind_context(request_id=request_id)
        status = 500
        started = False
        start = time.perf_counter()
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise _BodyTooLargeError
            return message

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                message.setdefault("headers", [])
                # Headers the request earned on the way (RateLimit-* from authentication).
                earned = (scope.get("state") or {}).get("response_headers") or []
                message["headers"] = [*message["headers"], *earned,
                                      (b"x-request-id", request_id.encode("latin-1"))]
            await send(message)

        try:
            await self.app(scope, limited_receive, send_wrapper)
        except _BodyTooLargeError:
            status = 413
            await _too_large(send, self.max_body_bytes)
        except Exception as exc:
            # Middleware (authentication and the idempotency claim) runs outside the app's
            # exception handlers: a database that is down must answer 503 there too.
            answer = None if started else problem_for(exc, scope["path"])
            if answer is None:
                raise
            await answer(scope, receive, send_wrapper)
        finally:
            route: object = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            elapsed = time.perf_counter() - start
            HTTP_DURATION.labels(scope["method"], template, str(status)).observe(elapsed)
            if status >= 500:
                log.error("request failed", method=scope["method"], route=template,
                          status=status, duration_ms=round(elapsed * 1000, 2))
            clear_context()


class _BodyTooLargeError(Exception):
    pass


async def _too_large(send: Send, limit: int) -> None:
    import json

    body = json.dumps({"type": "about:blank", "title": "Content Too Large", "status": 413,
                       "detail": f"request body exceeds {limit} bytes; send less"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/problem+json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


#: never shed: probes and scraping must see an overloaded process as it is, and the live
#: stream's requests stay open for as long as a subscriber listens
UNSHED_PATHS = frozenset({"/livez", "/readyz", "/metrics"})
UNSHED_PREFIXES = ("/api/v1/stream/",)
SHED_RETRY_AFTER_S = 1


class LoadSheddingMiddleware:
    """Answers 503 (problem JSON, ``Retry-After``) at once while the process already works
    on ``api_max_in_flight`` HTTP requests.

    Past that point a queued request only waits behind the others until its client gives up,
    and its work is wasted; a quick refusal keeps the latency of the admitted ones and tells
    the client when to come back. The answer costs no thread, database or authentication.
    """

    def __init__(self, app: ASGIApp, limit: int | None = None) -> None:
        self.app = app
        self.limit = limit  # None: the platform's setting, read at the first request
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if (scope["type"] != "http" or path in UNSHED_PATHS
                or path.startswith(UNSHED_PREFIXES)):
            await self.app(scope, receive, send)
            return
        if self.limit is None:
            self.limit = int(scope["app"].state.platform.settings.api_max_in_flight)
        if self.in_flight >= self.limit:
            API_SHED.inc()
            await _overloaded(send, path, self.limit)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


async def _overloaded(send: Send, path: str, limit: int) -> None:
    import json

    body = json.dumps({"type": PROBLEM_TYPE_BASE + "overloaded",
                       "title": "Service Unavailable", "status": 503,
                       "detail": f"the server is working on its limit of {limit} requests; "
                                 f"retry in {SHED_RETRY_AFTER_S} s",
                       "instance": path}).encode()
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", MEDIA_TYPE.encode()),
                            (b"content-length", str(len(body)).encode()),
                            (b"retry-after", str(SHED_RETRY_AFTER_S).encode())]})
    await send({"type": "http.response.body", "body": body})
