"""uvicorn's WebSocket protocol with one addition: writing a message framed once for many.

A broadcast to a thousand subscribers through ASGI costs a task switch, the framework's send
wrappers and a frame serialisation per connection. This subclass of uvicorn's websockets
sans-I/O protocol puts a writer into the connection scope, under the ASGI extension
``signalfactory.ws.prepared``: ``writer(frame) -> bool`` writes a complete, already-framed
server message (``text_frame``) straight to the connection's transport.

It refuses (returns False) whenever the frame would not be exactly what the protocol itself
would send, or should not be sent now: before the handshake completes, after a close, while
the transport is paused by back-pressure (a slow reader), or when an extension such as
permessage-deflate was negotiated (then every connection needs its own compressed bytes).
The caller then uses the ordinary ASGI send. Servers without this protocol (the test client,
other ASGI servers) simply lack the extension, and the ordinary path is used throughout.

Serve with ``uvicorn.run(app, ws=BroadcastWebSocketProtocol)``; ``signalfactory serve`` and
``up`` do.
"""

from __future__ import annotations

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

from signalfactory.api.stream_framing import text_frame

__all__ = ["EXTENSION", "BroadcastWebSocketProtocol", "text_frame"]

EXTENSION = "signalfactory.ws.prepared"


class BroadcastWebSocketProtocol(WebSocketsSansIOProtocol):
    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][EXTENSION] = {"writer": self.write_prepared}

    def write_prepared(self, frame: bytes) -> bool:
        if (not self.handshake_complete or self.close_sent or self.disconnected
                or self.initial_response is not None or not self.writable.is_set()
                or self.conn.extensions or self.transport.is_closing()):
            return False
        self.transport.write(frame)
        return True
