"""The HTTP side of the simulator: a threading ``http.server`` on loopback, keep-alive on.

The standard library server answers a request in well under a millisecond on loopback (see
``benchmarks/exchange_simulator.py`` for the figure against uvicorn), needs no event loop in a
test's thread, and lets a fault close the socket mid-exchange, which is how a dropped response
looks to the client. Each response is written with one ``send`` (headers and body together) so
Nagle's algorithm never waits on a delayed ACK.
"""

from __future__ import annotations

import socket
import struct
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from signalfactory.testing.exchange_simulator.simulator import ExchangeSimulator


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    #: close the connection without a response (after ``hang`` seconds): a dropped response
    drop: bool = False
    hang: float = 0.0
    content_type: str = "application/json;charset=UTF-8"


_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
            404: "Not Found", 405: "Method Not Allowed", 418: "I'm a teapot",
            429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
            503: "Service Unavailable", 504: "Gateway Timeout"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "exchange-simulator"
    sys_version = ""
    simulator: ClassVar[ExchangeSimulator]

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def _serve(self) -> None:
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        response = self.simulator.handle(self.command, path, query, body,
                                         {k.lower(): v for k, v in self.headers.items()})
        if response.drop:
            self._drop(response.hang)
            return
        head = [f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Error')}",
                f"Content-Type: {response.content_type}",
                f"Content-Length: {len(response.body)}"]
        head.extend(f"{k}: {v}" for k, v in response.headers.items())
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode() + response.body)
        self.log_request(response.status)

    def _drop(self, hang: float) -> None:
        if hang > 0:
            self.simulator.stopping.wait(hang)
        self.close_connection = True
        # SO_LINGER 0: close sends a RST, the client sees "connection reset" at once
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: tests assert on the simulator's counters, not on an access log."""


class SimulatorServer:
    """A background ``ThreadingHTTPServer`` bound to a free loopback port."""

    def __init__(self, simulator: ExchangeSimulator, host: str = "127.0.0.1") -> None:
        handler = type("SimulatorHandler", (_Handler,), {"simulator": simulator})
        self.httpd = ThreadingHTTPServer((host, 0), handler)
        self.httpd.daemon_threads = True
        self.host = host
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={
            "poll_interval": 0.05}, name=f"exchange-simulator:{self.port}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)
