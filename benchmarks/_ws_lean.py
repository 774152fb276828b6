"""A lean WebSocket subscriber for the stream benchmark: an asyncio Protocol, no library.

A thousand subscribers live in one process, so the client's own cost must stay small next to
the server's: frames are parsed in ``data_received`` (no task per message) and only the
arrival time of each message is kept. It does the RFC 6455 handshake, answers pings, and
assumes what the server sends: unfragmented, unmasked text frames.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import Callable

OnMessage = Callable[["LeanWebSocket", bytes, int], None]


class LeanWebSocket(asyncio.Protocol):
    def __init__(self, host: str, port: int, path: str, headers: dict[str, str],
                 on_message: OnMessage) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
                 "Sec-WebSocket-Version: 13", *(f"{k}: {v}" for k, v in headers.items())]
        self.request = ("\r\n".join(lines) + "\r\n\r\n").encode()
        self.on_message = on_message
        self.buffer = bytearray()
        self.upgraded = False
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("closed during the handshake"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        if self.upgraded and not self.buffer and len(data) > 2 and data[0] == 0x81:
            # The usual broadcast: exactly one whole unfragmented text frame in one read. Its
            # header is checked and its payload handed on without going through the buffer
            # (about half of this callback's cost per socket).
            length = data[1]
            if length < 126 and len(data) == 2 + length:
                self.on_message(self, data[2:], now)
                return
            if length == 126 and len(data) == 4 + int.from_bytes(data[2:4], "big"):
                self.on_message(self, data[4:], now)
                return
        buf = self.buffer
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[:end]).split(b"\r\n", 1)[0]
            del buf[:end + 4]
            if b" 101 " not in status:
                self.opened.set_exception(ConnectionError(status.decode("latin-1")))
                return
            self.upgraded = True
            self.opened.set_result(None)
        while len(buf) >= 2:
            opcode, length, pos = buf[0] & 0x0F, buf[1] & 0x7F, 2
            if length == 126:
                if len(buf) < 4:
                    return
                length, pos = int.from_bytes(buf[2:4], "big"), 4
            elif length == 127:
                if len(buf) < 10:
                    return
                length, pos = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < pos + length:
                return
            payload = bytes(buf[pos:pos + length])
            del buf[:pos + length]
            if opcode == 0x1:
                self.on_message(self, payload, now)
            elif opcode == 0x9:
                self._send(0xA, payload)
            elif opcode == 0x8 and self.transport is not None:
                self.transport.close()

    def _send(self, opcode: int, payload: bytes) -> None:
        # Client frames are masked (RFC 6455 5.3); payloads here are tiny control frames.
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        assert self.transport is not None and len(payload) < 126
        self.transport.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._send(0x8, (1000).to_bytes(2, "big"))
            self.transport.close()


async def open_lean(host: str, port: int, path: str, headers: dict[str, str],
                    on_message: OnMessage) -> LeanWebSocket:
    loop = asyncio.get_running_loop()
    _transport, protocol = await loop.create_connection(
        lambda: LeanWebSocket(host, port, path, headers, on_message), host, port)
    await protocol.opened
    return protocol
