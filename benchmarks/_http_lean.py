"""A lean HTTP/1.1 keep-alive client for the read benchmark: an asyncio Protocol, no library.

At 500 requests/s with a backlog of a hundred connections, httpx's own cost (about 1 ms of
CPU per request here) saturated the client's core before the server's, and the benchmark
measured the client. This one sends a pre-encoded GET and parses the answer in
``data_received``: tens of microseconds per request. It assumes what the server sends:
``Content-Length`` bodies (no chunked encoding), no pipelining.
"""

from __future__ import annotations

import asyncio


class LeanHttpError(Exception):
    pass


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, int]] | None = None
        self.transport: asyncio.Transport | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(LeanHttpError(f"connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None:
            return
        head = bytes(self.buffer[:end]).lower()
        at = head.find(b"\r\ncontent-length:")
        if at < 0:
            self.waiter.set_exception(LeanHttpError("response without Content-Length"))
            return
        stop = head.find(b"\r\n", at + 2)
        length = int(head[at + 17:stop if stop > 0 else len(head)])
        total = end + 4 + length
        if len(self.buffer) < total:
            return
        del self.buffer[:total]
        waiter, self.waiter = self.waiter, None
        waiter.set_result((int(head[9:12]), length))

    def get(self, request: bytes) -> asyncio.Future[tuple[int, int]]:
        assert self.transport is not None and self.waiter is None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self.waiter


class LeanHttpClient:
    """GETs over a pool of keep-alive connections, opened as concurrency needs them."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._head = f"Host: {host}:{port}\r\n{extra}\r\n".encode()
        self._idle: list[_Connection] = []
        self._all: list[_Connection] = []

    def request_bytes(self, path: str) -> bytes:
        return f"GET {path} HTTP/1.1\r\n".encode() + self._head

    async def get(self, request: bytes) -> int:
        """The status code of one GET (``request`` from ``request_bytes``)."""
        while self._idle and self._idle[-1].lost:  # the server closed it while idle
            self._idle.pop()
        conn = self._idle.pop() if self._idle else await self._open()
        try:
            status, _length = await conn.get(request)
        except BaseException:
            if conn.transport is not None:
                conn.transport.close()
            raise
        if not conn.lost:
            self._idle.append(conn)
        return status

    async def _open(self) -> _Connection:
        _transport, conn = await asyncio.get_running_loop().create_connection(
            _Connection, self.host, self.port)
        self._all.append(conn)
        return conn

    def close(self) -> None:
        for conn in self._all:
            if conn.transport is not None:
                conn.transport.close()
        self._idle.clear()
        self._all.clear()
