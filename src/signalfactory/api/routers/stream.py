"""The live signal stream: WebSocket and Server-Sent Events.

Both endpoints take the same filters: ``?subscription=ID`` (one of your subscriptions) or
ad-hoc ``strategies``, ``symbols`` (repeat the parameter or separate with commas) and
``min_score``. Authentication is the usual API key in ``Authorization: Bearer`` or
``X-API-Key``. Browsers cannot set headers on a WebSocket, so ``/stream/ws`` also accepts
``?api_key=``; a key in a URL can end up in proxy logs, so give browsers a viewer key.

Resuming: every signal carries its id (the SSE ``id:`` field). Reconnect with
``Last-Event-ID: N`` (SSE; browsers send it by themselves) or ``?last_event_id=N`` and the
signals with a greater id that you missed come first (marked ``replay``), then live ones,
with no gap and no duplicate at the seam. A ``live`` message marks the switch.

WebSocket messages (text, JSON): ``{"type": "subscribed", "filter": {...}}``, then
``{"type": "signals", "items": [...]}`` (``"replay": true`` while catching up), and
``{"type": "live", "replayed": N}``. Keepalive is the WebSocket ping. A connection that falls
behind by more than the server's queue is closed with code 1013 (try again later): reconnect
with your last event id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, WebSocket
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect

from signalfactory.api.auth import (
    Principal,
    PrincipalDep,
    key_from_headers,
    principal_for_key,
    rate_limited,
    unauthorized,
)
from signalfactory.api.deps import PlatformDep
from signalfactory.api.problems import ApiProblem, problem_for
from signalfactory.api.schemas import AUTH_RESPONSES
from signalfactory.api.stream_framing import sse_block, ws_message
from signalfactory.api.ws_protocol import EXTENSION as PREPARED_FRAMES
from signalfactory.domain.errors import BadInputError, TemporaryError
from signalfactory.domain.streaming import SignalEvent, StreamFilter
from signalfactory.services.platform import Platform
from signalfactory.services.streaming.hub import StreamHub, Subscriber
from signalfactory.services.streaming.subscriptions import stream_filter

router = APIRouter(prefix="/api/v1", tags=["stream"], responses=AUTH_RESPONSES)

REPLAY_PAGE = 1000
MAX_ID = 2**63 - 1


class StreamQuery:
    """The filter parameters both endpoints share."""

    def __init__(
        self,
        subscription: int | None = Query(default=None, ge=1, le=2**31 - 1,
                                         description="One of your subscriptions' id"),
        strategies: list[str] = Query(default=[], max_length=100,
                                      description="Strategy names (repeat, or comma-separated)"),
        symbols: list[str] = Query(default=[], max_length=1000,
                                   description="Symbols (repeat, or comma-separated)"),
        min_score: float | None = Query(default=None, allow_inf_nan=False),
        last_event_id: int | None = Query(default=None, ge=0, le=MAX_ID,
                                          description="Resume after this signal id"),
    ) -> None:
        self.subscription = subscription
        self.strategies = _split(strategies)
        self.symbols = _split(symbols)
        self.min_score = min_score
        self.last_event_id = last_event_id


def _split(values: list[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _filter(platform: Platform, principal: Principal, q: StreamQuery) -> StreamFilter:
    # The primary, not a replica: a subscription made a moment ago must be found.
    with platform.database.read(primary=True) as uow:
        return stream_filter(uow, principal.tenant_id, subscription_id=q.subscription,
                             strategies_=q.strategies, symbols=q.symbols,
                             min_score=q.min_score)


def _replay_page(hub: StreamHub, flt: StreamFilter, after: int) -> list[SignalEvent]:
    # The hub's feed reads the primary: a replica may not have the newest signals yet, and
    # the seam with the live events is only gap-free against where they were committed.
    return hub.replay_page(flt, after, REPLAY_PAGE)


def _hub(app: FastAPI) -> StreamHub:
    hub = getattr(app.state, "stream_hub", None)
    if not isinstance(hub, StreamHub):
        raise ApiProblem(503, "the live stream is not running in this process; retry shortly",
                         code="temporary", headers={"Retry-After": "5"})
    return hub


# -- Server-Sent Events ------------------------------------------------------------------

class EventStreamResponse(StreamingResponse):
    """``text/event-stream`` fed by a hub subscriber: replay, then live, with keepalives."""

    media_type = "text/event-stream"

    def __init__(self, hub: StreamHub, platform: Platform, flt: StreamFilter,
                 after: int | None) -> None:
        super().__init__(iter(()), media_type=self.media_type,
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.hub, self.platform, self.flt, self.after = hub, platform, flt, after

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sub = self.hub.subscribe(self.flt, "sse", replaying=self.after is not None)
        watcher = asyncio.create_task(_watch_disconnect(receive, sub))
        try:
            await send({"type": "http.response.start", "status": self.status_code,
                        "headers": self.raw_headers})
            try:
                await self._pump(send, sub)
            except TimeoutError:  # the client does not read: drop it, never wait for it
                sub.close("slow")
            else:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(1.0):
                        await send({"type": "http.response.body", "body": b"",
                                    "more_body": False})
        finally:
            watcher.cancel()
            self.hub.unsubscribe(sub)

    async def _send(self, send: Send, body: bytes) -> None:
        async with asyncio.timeout(self.hub.send_timeout):
            await send({"type": "http.response.body", "body": body, "more_body": True})

    async def _pump(self, send: Send, sub: Subscriber) -> None:
        hello = json.dumps({"filter": self.flt.describe()})
        await self._send(send, f"retry: 3000\nevent: subscribed\ndata: {hello}\n\n".encode())
        replayed: set[int] = set()
        if self.after is not None:
            after = self.after
            while sub.closed is None:
                page = await run_in_threadpool(_replay_page, self.hub, self.flt, after)
                if page:
                    await self._send(send, sse_block(page))
                    replayed.update(e.id for e in page)
                    after = page[-1].id
                if len(page) < REPLAY_PAGE:
                    break
            held = self.hub.go_live(sub, replayed)
            if held:
                await self._send(send, sse_block(held))
        await self._send(send, f"event: live\ndata: {{\"replayed\": {len(replayed)}}}\n\n"
                         .encode())
        while True:
            frames = await sub.next_frames(self.hub.heartbeat_seconds)
            if sub.closed is not None:
                return
            await self._send(send, b"".join(f if isinstance(f, bytes) else f.encode()
                                            for f in frames) if frames else b": keepalive\n\n")


async def _watch_disconnect(receive: Receive, sub: Subscriber) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            sub.close("client")
            return


@router.get(
    "/stream/sse", response_class=EventStreamResponse, status_code=200,
    summary="Live signals as Server-Sent Events (resume with Last-Event-ID)",
    description="A never-ending `text/event-stream`. Events: `subscribed` (the filter), "
                "`signal` (one per signal, `id:` = signal id, data = a signal as in "
                "GET /api/v1/signals), `live` (replay done). Comments `: keepalive` every "
                "15 s. The same stream over WebSocket: `GET /api/v1/stream/ws` (also accepts "
                "`?api_key=`).",
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"},
                                                       "example": "id: 42\nevent: signal\n"
                                                                  "data: {\"id\": 42}\n\n"}}},
               404: {"description": "No such subscription, or a strategy named does not "
                                    "exist"},
               422: {"description": "Invalid filter or Last-Event-ID"}})
async def stream_sse(request: Request, principal: PrincipalDep, platform: PlatformDep,
                     q: Annotated[StreamQuery, Depends()],
                     last_event_id_header: Annotated[str | None, Header(
                         alias="Last-Event-ID", max_length=20,
                         description="The id of the last event you received")] = None,
                     ) -> EventStreamResponse:
    after = q.last_event_id
    if last_event_id_header is not None and last_event_id_header.strip():
        text = last_event_id_header.strip()
        if not text.isdigit() or int(text) > MAX_ID:
            raise BadInputError("Last-Event-ID must be a signal id (a whole number)")
        after = int(text)
    hub = _hub(request.app)
    flt = await run_in_threadpool(_filter, platform, principal, q)
    return EventStreamResponse(hub, platform, flt, after)


# -- WebSocket ---------------------------------------------------------------------------

def _ws_principal(platform: Platform, scope: Scope, api_key: str | None) -> Principal:
    headers = {k.decode("latin-1").lower(): v.decode("latin-1")
               for k, v in scope.get("headers") or []}
    secret = key_from_headers(headers) or (api_key.strip() if api_key else None)
    if not secret:
        raise unauthorized("the stream needs an API key: send 'Authorization: Bearer <key>', "
                           "'X-API-Key: <key>' or ?api_key=<key>", "missing_key")
    principal = principal_for_key(platform, secret)
    rate_limited(platform, principal)
    return principal


def _open_ws(platform: Platform, scope: Scope, api_key: str | None,
             q: StreamQuery) -> StreamFilter:
    return _filter(platform, _ws_principal(platform, scope, api_key), q)


async def _deny(websocket: WebSocket, exc: Exception) -> None:
    """Refuse the handshake with the error's problem response (or a close if unsupported)."""
    response = problem_for(exc, websocket.url.path)
    if response is None:
        raise exc
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(response)
    else:  # 1013: try again later (a temporary failure); 1008: policy (refused)
        code = 1013 if isinstance(exc, TemporaryError) else 1008
        await websocket.close(code=code, reason=str(exc)[:120])


@router.websocket("/stream/ws")
async def stream_ws(websocket: WebSocket, q: Annotated[StreamQuery, Depends()],
                    api_key: str | None = Query(default=None, max_length=200)) -> None:
    platform: Platform = websocket.app.state.platform
    try:
        hub = _hub(websocket.app)
        flt = await run_in_threadpool(_open_ws, platform, websocket.scope, api_key, q)
    except (ApiProblem, BadInputError, TemporaryError) as exc:
        await _deny(websocket, exc)
        return
    await websocket.accept()
    prepared = websocket.scope.get("extensions", {}).get(PREPARED_FRAMES) or {}
    sub = hub.subscribe(flt, "ws", replaying=q.last_event_id is not None,
                        direct=prepared.get("writer"))
    reader = asyncio.create_task(_read_until_closed(websocket, sub))
    try:
        await _pump_ws(websocket, hub, sub, q.last_event_id)
    except (WebSocketDisconnect, TimeoutError):
        sub.close("client" if sub.closed is None else sub.closed)
    finally:
        reader.cancel()
        hub.unsubscribe(sub)
    if sub.closed in ("slow", "shutdown"):
        code, reason = ((1013, "too far behind; reconnect with last_event_id")
                        if sub.closed == "slow" else (1012, "server restarting"))
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await websocket.close(code=code, reason=reason)


async def _pump_ws(websocket: WebSocket, hub: StreamHub, sub: Subscriber,
                   after: int | None) -> None:
    timeout = hub.send_timeout
    await websocket.send_text(json.dumps({"type": "subscribed",
                                          "filter": sub.filter.describe()}))
    replayed: set[int] = set()
    if after is not None:
        while sub.closed is None:
            page = await run_in_threadpool(_replay_page, hub, sub.filter, after)
            if page:
                await websocket.send_text(ws_message(page, replay=True))
                replayed.update(e.id for e in page)
                after = page[-1].id
            if len(page) < REPLAY_PAGE:
                break
        held = hub.go_live(sub, replayed)
        if held:
            await websocket.send_text(ws_message(held))
    await websocket.send_text(f'{{"type":"live","replayed":{len(replayed)}}}')
    while True:
        sub.busy = False  # idle: the hub may write prepared frames directly
        frames = await sub.next_frames()
        sub.busy = True
        if sub.closed is not None:
            return
        for frame in frames:
            try:
                async with asyncio.timeout(timeout):
                    await websocket.send_text(frame if isinstance(frame, str)
                                              else frame.decode())
            except TimeoutError:
                sub.close("slow")
                return


async def _read_until_closed(websocket: WebSocket, sub: Subscriber) -> None:
    """Clients only listen; reading notices their close (pings are answered by the server)."""
    with contextlib.suppress(Exception):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
    sub.close("client")
