"""Pure ASGI middleware: request ids in logs, latency histograms, request size limits, and
classified errors raised by middleware (outside the app's exception handlers) answered in
the same problem shape as the handlers give."""

from __future__ import annotations

import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from signalfactory.api.problems import problem_for
from signalfactory.observability.logging import bind_context, clear_context, get_logger
from signalfactory.observability.metrics import HTTP_DURATION

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
