"""How the live stream's events travel: WebSocket text messages and Server-Sent Events.

The hub (services/streaming/hub.py) builds one message per group of connections with these
and, for WebSocket connections that take them (api/ws_protocol.py), one ready frame.
"""

from __future__ import annotations

from collections.abc import Sequence

from signalfactory.domain.streaming import SignalEvent
from signalfactory.services.streaming.hub import Framing, Message


def ws_message(events: Sequence[SignalEvent], *, replay: bool = False) -> str:
    """One WebSocket text message carrying several events, joined from their own JSON."""
    head = '{"type":"signals","replay":true,"items":[' if replay else \
        '{"type":"signals","items":['
    return head + ",".join(e.json for e in events) + "]}"


def text_frame(payload: bytes) -> bytes:
    """A final, unmasked WebSocket text frame (RFC 6455 5.2), as a server sends it: built
    once per message and written to every connection that takes prepared frames."""
    size = len(payload)
    if size < 126:
        head = bytes((0x81, size))
    elif size < 1 << 16:
        head = bytes((0x81, 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x81, 127)) + size.to_bytes(8, "big")
    return head + payload


def sse_block(events: Sequence[SignalEvent]) -> bytes:
    return b"".join(e.sse for e in events)


def _ws_frame(message: Message) -> bytes:
    return text_frame(message.encode() if isinstance(message, str) else message)


STREAM_FRAMINGS: dict[str, Framing] = {
    "ws": Framing(message=ws_message, prepared=_ws_frame),
    "sse": Framing(message=sse_block),
}
