"""WebSocket subscribers of the stream benchmark in a process of their own: epoll, no library.

    python benchmarks/_ws_receivers.py HOST PORT  (connections as JSON lines on stdin)

Standard input: one JSON line ``[[path, {header: value}], ...]`` (one entry per connection),
then commands, one per line; answers are JSON lines on standard output:

* after the connections: ``{"live": N}`` once every connection has had its ``live`` message;
* ``take``: ``{"signals": [t, ...], "cpu_ms": c}``, each connection's first ``signals``
  message since the last ``take`` (wall clock, ns, stamped when the bytes were read), then
  forgets them; ``c``: this process's CPU time since the last ``take``;
* ``quit``: closes every connection and exits.

Why: the last subscriber's receipt measures the client's own loop (~20 us per socket with
asyncio; the server had written every socket long before). Several of these processes spread
the subscribers over cores; one ``epoll.poll`` returns every readable socket and each costs one
``recv`` and a prefix check. On 2 busy cores one such process was no faster than asyncio.
Frames are assumed as the server sends them: unfragmented and unmasked; pings are answered.
"""

from __future__ import annotations

import base64
import json
import os
import select
import socket
import sys
import time

SIGNALS = b'{"type":"signals"'
LIVE = b'{"type":"live"'


class Conn:
    __slots__ = ("buffer", "got", "live", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.got = 0
        self.live = False


def handshake(host: str, port: int, path: str, headers: dict[str, str]) -> Conn:
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
             *(f"{k}: {v}" for k, v in headers.items())]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    conn = Conn(sock)
    while b"\r\n\r\n" not in conn.buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        conn.buffer += chunk
    end = conn.buffer.find(b"\r\n\r\n")
    status = bytes(conn.buffer[:end]).split(b"\r\n", 1)[0]
    if b" 101 " not in status:
        raise ConnectionError(status.decode("latin-1"))
    del conn.buffer[:end + 4]
    sock.setblocking(False)
    return conn


def pong(conn: Conn, payload: bytes) -> None:
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    conn.sock.send(bytes([0x8A, 0x80 | len(payload)]) + mask + masked)


def parse(conn: Conn, now: int) -> None:
    buf = conn.buffer
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
            if opcode == 0x1 and not conn.got and buf.startswith(SIGNALS, pos):
                conn.got = now  # the first bytes of the message arrived now
            return
        if opcode == 0x1:
            if buf.startswith(SIGNALS, pos):
                conn.got = conn.got or now
            elif buf.startswith(LIVE, pos):
                conn.live = True
        elif opcode == 0x9:
            pong(conn, bytes(buf[pos:pos + length]))
        del buf[:pos + length]


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    specs = json.loads(sys.stdin.readline())
    conns: dict[int, Conn] = {}
    poller = select.epoll()
    for path, headers in specs:
        conn = handshake(host, port, path, headers)
        conns[conn.sock.fileno()] = conn
        poller.register(conn.sock.fileno(), select.EPOLLIN)
        parse(conn, 0)  # what came with the handshake's answer (the greeting, "live")
    stdin = sys.stdin.fileno()
    os.set_blocking(stdin, False)
    poller.register(stdin, select.EPOLLIN)
    out = sys.stdout
    announced = False
    pending = b""
    recv_timestamp = time.time_ns
    cpu = time.process_time()
    while True:
        for fd, _mask in poller.poll(0.05):
            if fd == stdin:
                pending += os.read(stdin, 4096)
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    if line.strip() == b"quit":
                        for conn in conns.values():
                            conn.sock.close()
                        return
                    if line.strip() == b"take":
                        got = [c.got for c in conns.values() if c.got]
                        for c in conns.values():
                            c.got = 0
                        cpu, last_cpu = time.process_time(), cpu
                        out.write(json.dumps({"signals": got,
                                              "cpu_ms": (cpu - last_cpu) * 1000}) + "\n")
                        out.flush()
                continue
            conn = conns[fd]
            try:
                data = conn.sock.recv(262144)
            except BlockingIOError:
                continue
            now = recv_timestamp()
            if not data:
                poller.unregister(fd)
                continue
            if not conn.buffer and data[0] == 0x81 and data[1] < 126 \
                    and len(data) == 2 + data[1]:
                # One whole small text frame, the usual broadcast: no buffering.
                if data.startswith(SIGNALS, 2):
                    conn.got = conn.got or now
                elif data.startswith(LIVE, 2):
                    conn.live = True
                continue
            if not conn.buffer and data[0] == 0x81 and data[1] == 126 \
                    and len(data) == 4 + int.from_bytes(data[2:4], "big"):
                if data.startswith(SIGNALS, 4):
                    conn.got = conn.got or now
                elif data.startswith(LIVE, 4):
                    conn.live = True
                continue
            conn.buffer += data
            parse(conn, now)
        if not announced and all(c.live for c in conns.values()):
            announced = True
            out.write(json.dumps({"live": len(conns)}) + "\n")
            out.flush()


if __name__ == "__main__":
    main()
