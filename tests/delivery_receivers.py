"""Real peers on loopback for the delivery channel tests: an HTTP receiver whose paths
answer as a webhook target might (ok, slow, 500, closed connection, 410, 429), a
Telegram-like rate-limited stand-in, and an SMTP server (aiosmtpd)."""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    client_port: int


@dataclass
class ReceiverState:
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: Telegram-like limits: arrival times per chat and overall, 429s answered
    chat_arrivals: dict[str, deque[float]] = field(default_factory=lambda: defaultdict(deque))
    all_arrivals: deque[float] = field(default_factory=deque)
    too_many: int = 0
    per_chat_window_s: float = 1.0
    overall_per_second: int = 30


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the channel's pool reuses connections
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
                ) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        state = self.server.state
        path = self.path.split("?", 1)[0]
        with state.lock:
            state.received.append(Received(path, dict(self.headers.items()), body,
                                           self.client_address[1]))
        if path.startswith("/slow"):
            time.sleep(3.0)
            self._answer(200, b"late")
        elif path.startswith("/500"):
            self._answer(500, b"internal failure " * 100, {"content-type": "text/plain"})
        elif path.startswith("/close"):
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        elif path.startswith("/410"):
            self._answer(410, b"gone")
        elif path.startswith("/429date"):
            self._answer(429, b"slow down", {"retry-after": formatdate(time.time() + 120,
                                                                       usegmt=True)})
        elif path.startswith("/429"):
            self._answer(429, b"slow down", {"retry-after": "7"})
        elif path.startswith("/tg/"):
            self._telegram(path.removeprefix("/tg/"))
        else:
            self._answer(200, b'{"ok": true}', {"content-type": "application/json"})

    def _telegram(self, chat: str) -> None:
        """429 above 30 messages in any second overall, or 2 in a second to one chat."""
        state = self.server.state
        now = time.monotonic()
        with state.lock:
            overall = state.all_arrivals
            while overall and overall[0] <= now - 1.0:
                overall.popleft()
            mine = state.chat_arrivals[chat]
            too_soon = bool(mine) and now - mine[-1] < state.per_chat_window_s
            if too_soon or len(overall) >= state.overall_per_second:
                state.too_many += 1
                limited = True
            else:
                overall.append(now)
                mine.append(now)
                limited = False
        if limited:
            self._answer(429, b'{"ok":false,"error_code":429}', {"retry-after": "1"})
        else:
            self._answer(200, b'{"ok":true}')


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: ReceiverState


@contextmanager
def http_receiver() -> Iterator[tuple[str, ReceiverState]]:
    """``(http://127.0.0.1:<port>, state)`` of a threaded receiver, shut down after."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.state = ReceiverState()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SmtpInbox:
    """aiosmtpd handler keeping every message; refuses recipients at refused.example."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_RCPT(  # noqa: N802 - aiosmtpd calls hooks by this name
            self, server: Any, session: Any, envelope: Any, address: str,
            rcpt_options: list[str]) -> str:
        if address.endswith("@refused.example"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd calls hooks by this name
            self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted"


@contextmanager
def smtp_server() -> Iterator[tuple[int, SmtpInbox]]:
    from aiosmtpd.controller import Controller

    inbox = SmtpInbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, ready_timeout=10)
    controller.start()
    try:
        yield port, inbox
    finally:
        controller.stop()


def require_mosquitto() -> None:
    """Skip (fail under CI=true) when the Mosquitto of this machine is unreachable."""
    import pytest

    from tests.conftest import IN_CI

    try:
        socket.create_connection(("127.0.0.1", 1883), timeout=2).close()
    except OSError as exc:
        message = f"Mosquitto at 127.0.0.1:1883 is unreachable ({exc})"
        if IN_CI:
            pytest.fail(message + "; CI=true requires it")
        pytest.skip(message)


@contextmanager
def mqtt_subscriber(topic: str) -> Iterator[queue.Queue[bytes]]:
    """A paho client subscribed to ``topic`` on the local Mosquitto: payloads arrive on the
    queue it yields (subscription confirmed before it does)."""
    import paho.mqtt.client as mqtt

    require_mosquitto()
    got: queue.Queue[bytes] = queue.Queue()
    subscribed: queue.Queue[bool] = queue.Queue()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_message = lambda _c, _u, message: got.put(message.payload)
    client.on_subscribe = lambda *_args: subscribed.put(True)
    client.connect("127.0.0.1", 1883)
    client.loop_start()
    try:
        client.subscribe(topic, qos=1)
        subscribed.get(timeout=10)
        yield got
    finally:
        client.loop_stop()
        client.disconnect()
