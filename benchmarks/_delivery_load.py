"""Load pieces of benchmarks/delivery.py (also used by the priority integration test): a fast
webhook receiver in a child process, bulk recipients, real-time rows with commit times.

The receiver is a raw asyncio HTTP/1.1 server with keep-alive: it answers every POST with
``204`` and records the wall-clock receipt time of each ``webhook-id``. Control requests:
``GET /stats`` (count), ``GET /times`` (id -> receipt time, JSON), ``GET /reset``.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import httpx
import sqlalchemy as sa

from signalfactory.adapters.channels.webhook import generate_webhook_secret
from signalfactory.adapters.storage.tables import endpoints, subscription_endpoints, subscriptions
from signalfactory.adapters.storage.unit_of_work import sql_database
from signalfactory.domain.delivery import REALTIME, NewDelivery
from signalfactory.domain.message_ids import new_message_id
from signalfactory.services.platform import Platform

_NO_CONTENT = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"


def _answer(body: bytes) -> bytes:
    return (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


def _serve(port_out: Connection) -> None:
    times: dict[str, float] = {}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path = lines[0].split(" ")[:2]
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        key, value = line.split(":", 1)
                        headers[key.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                if length:
                    await reader.readexactly(length)
                if method == "POST":
                    times[headers.get("webhook-id", f"anon-{len(times)}")] = time.time()
                    writer.write(_NO_CONTENT)
                elif path == "/stats":
                    writer.write(_answer(json.dumps({"count": len(times)}).encode()))
                elif path == "/times":
                    writer.write(_answer(json.dumps(times).encode()))
                else:  # /reset
                    times.clear()
                    writer.write(_answer(b"{}"))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
        port_out.send(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())


@dataclass
class Receiver:
    process: multiprocessing.process.BaseProcess
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def _get(self, path: str) -> Any:
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=30).json()

    def count(self) -> int:
        return int(self._get("/stats")["count"])

    def times(self) -> dict[str, float]:
        return {str(k): float(v) for k, v in self._get("/times").items()}

    def reset(self) -> None:
        self._get("/reset")

    def wait_for(self, count: int, timeout: float) -> float | None:
        """Seconds until ``count`` messages arrived, or None at the timeout."""
        start = time.perf_counter()
        while time.perf_counter() - start < timeout:
            if self.count() >= count:
                return time.perf_counter() - start
            time.sleep(0.02)
        return None

    def stop(self) -> None:
        self.process.terminate()
        self.process.join(5)


def start_receiver() -> Receiver:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=_serve, args=(child,), daemon=True)
    process.start()
    if not parent.poll(30):
        process.terminate()
        raise RuntimeError("the webhook receiver did not start")
    return Receiver(process, int(parent.recv()))


def bulk_recipients(platform: Platform, tenant_id: int, count: int, url: str,
                    *, prefix: str = "bench") -> tuple[list[int], list[int]]:
    """``count`` subscriptions, each with its own webhook endpoint at ``url``, inserted in
    bulk (the repositories add one at a time). Returns (subscription ids, endpoint ids)."""
    box = platform.secret_box
    if box is None:
        raise RuntimeError("set SIGNALFACTORY_DELIVERY_KEY: targets are sealed")
    target = box.seal(url.encode())
    secrets = box.seal(json.dumps([{"secret": generate_webhook_secret(),
                                    "expires_at": None}]).encode())
    engine = sql_database(platform.database).engine
    step = 5000
    with engine.begin() as conn:
        first_sub = int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(subscriptions.c.id),
                                                                0))).scalar_one()) + 1
        first_ep = int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(endpoints.c.id),
                                                               0))).scalar_one()) + 1
        subs = list(range(first_sub, first_sub + count))
        eps = list(range(first_ep, first_ep + count))
        for start in range(0, count, step):
            part = range(start, min(start + step, count))
            conn.execute(subscriptions.insert(), [
                {"id": subs[i], "tenant_id": tenant_id, "name": f"{prefix}-{i}",
                 "strategies": [], "symbols": []} for i in part])
            conn.execute(endpoints.insert(), [
                {"id": eps[i], "tenant_id": tenant_id, "name": f"{prefix}-{i}",
                 "kind": "webhook", "target_sealed": target, "target_hint": "loopback",
                 "secrets_sealed": secrets} for i in part])
            conn.execute(subscription_endpoints.insert(), [
                {"subscription_id": subs[i], "endpoint_id": eps[i]} for i in part])
        if engine.dialect.name == "postgresql":  # explicit ids: move the sequences on
            for table in ("subscriptions", "endpoints"):
                conn.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                     f"(SELECT max(id) FROM {table}))"))
    return subs, eps


def payload(n: int) -> dict[str, object]:
    """A signal-sized payload (about 300 bytes, like signal.created)."""
    return {"type": "signal.created", "signal_id": n, "strategy": "sma_cross",
            "symbol": "AAPL", "timeframe": "1d", "side": "buy", "score": 0.87,
            "price": 187.25, "ts": "2026-03-02T14:30:00+00:00", "reason": "fast SMA crossed "
            "above slow SMA", "tenant_id": 1}


def enqueue_rows(platform: Platform, tenant_id: int, pairs: Sequence[tuple[int, int]],
                 priority: int, start: int = 0) -> list[str]:
    """Rows at ``priority`` for (subscription, endpoint) pairs, committed in one write."""
    rows = [NewDelivery(id=new_message_id(), tenant_id=tenant_id, endpoint_id=e,
                        subscription_id=s, payload=payload(start + i), priority=priority)
            for i, (s, e) in enumerate(pairs)]
    with platform.database.write() as uow:
        uow.deliveries.enqueue(rows)
    return [r.id for r in rows]


def send_realtime(platform: Platform, tenant_id: int, pair: tuple[int, int],
                  n: int) -> tuple[str, float]:
    """One real-time row, committed and announced as the outbox does for a new signal;
    returns its id and the wall-clock time of the commit."""
    row = NewDelivery(id=new_message_id(), tenant_id=tenant_id, endpoint_id=pair[1],
                      subscription_id=pair[0], payload=payload(n), priority=REALTIME)
    with platform.database.write() as uow:
        uow.deliveries.enqueue([row])
    committed = time.time()
    if platform.delivery_queue is not None:
        platform.delivery_queue.announce([row.id])
    return row.id, committed


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]
