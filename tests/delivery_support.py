"""Shared set-up of the delivery tests: a strategy, instruments, endpoints routed from a
subscription, signals stored through the outbox, a scripted channel and a local receiver."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from signalfactory.adapters.jobs.queues import LocalJobQueue
from signalfactory.adapters.secret_box import AesGcmSecretBox
from signalfactory.domain.delivery import DeliveryControls, NewEndpoint, SendResult
from signalfactory.domain.endpoint_secrets import SigningSecret, encode_secrets
from signalfactory.domain.instruments import InstrumentSpec
from signalfactory.domain.signals import NewSignal
from signalfactory.domain.strategies.stored import StoredStrategy
from signalfactory.domain.streaming import NewSubscription
from signalfactory.services.platform import Platform
from signalfactory.services.signals.store import StoredSignals, store_signals
from signalfactory.services.strategies.catalog import add_strategy, get_strategy

ALWAYS = "entry: close > 0\nexit: close < 0"
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BOX = AesGcmSecretBox(bytes(range(32)))


def with_delivery(platform: Platform, channels: dict[str, Any] | None = None) -> Platform:
    """The platform with a secret box, a local delivery queue and the given channels."""
    return dataclasses.replace(platform, secret_box=BOX, delivery_queue=LocalJobQueue(),
                               channels=channels if channels is not None
                               else dict(platform.channels))


def seed_strategy(platform: Platform, tenant_id: int = 1, name: str = "always") -> StoredStrategy:
    with platform.database.write() as uow:
        add_strategy(uow, tenant_id, name, rule_text=ALWAYS)
        return get_strategy(uow, tenant_id, name)


def seed_instruments(platform: Platform, symbols: Sequence[str]) -> dict[str, int]:
    with platform.database.write() as uow:
        return dict(uow.instruments.upsert([InstrumentSpec(symbol=s) for s in symbols]).ids)


def seed_route(platform: Platform, name: str, target: str, *, tenant_id: int = 1,
               kind: str = "webhook", strategies: Sequence[str] = (),
               symbols: Sequence[str] = (), min_score: float | None = None,
               **controls: Any) -> tuple[int, int]:
    """An endpoint (sealed target and secret) and a subscription routed to it."""
    with platform.database.write() as uow:
        endpoint = uow.endpoints.add(NewEndpoint(
            tenant_id=tenant_id, name=name, kind=kind,  # type: ignore[arg-type]
            target_sealed=BOX.seal(target.encode()), target_hint=target[:20],
            secrets_sealed=BOX.seal(encode_secrets((SigningSecret(SECRET),)))))
        sub = uow.subscriptions.add(NewSubscription(
            tenant_id=tenant_id, name=f"sub-{name}", strategies=tuple(strategies),
            symbols=tuple(symbols), min_score=min_score))
        uow.endpoints.set_controls(sub.id, DeliveryControls(endpoint_ids=(endpoint.id,),
                                                            **controls))
    return endpoint.id, sub.id


def new_signals(stored: StoredStrategy, instruments: dict[str, int], n: int, *,
                start: datetime | None = None, score: float | None = 1.0) -> list[NewSignal]:
    start = start or datetime(2024, 1, 1, tzinfo=UTC)
    symbols = sorted(instruments)
    return [NewSignal(strategy_version_id=stored.version_id,
                      instrument_id=instruments[symbols[i % len(symbols)]],
                      symbol=symbols[i % len(symbols)], timeframe="1d",
                      bar_ts=start + timedelta(days=i), side="long", score=score,
                      price=100.0 + i, values={"close": 100.0 + i}) for i in range(n)]


def insert_signals(platform: Platform, stored: StoredStrategy,
                   signals: Sequence[NewSignal]) -> StoredSignals:
    with platform.database.write() as uow:
        return store_signals(platform, uow, [(stored, s) for s in signals])


class ScriptedChannel:
    """A channel whose answers a test scripts: ``answer(target, message_id)`` per send."""

    def __init__(self, kind: str = "webhook",
                 answer: Callable[[str, str], SendResult] | None = None) -> None:
        self.kind = kind
        self.answer = answer or (lambda _t, _m: SendResult(ok=True, status_code=200))
        self.sent: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def send(self, target: str, secrets: Sequence[str], message_id: str, timestamp: int,
             subject: str, body: str, payload: bytes, *, html: str | None = None,
             max_per_second: float | None = None) -> SendResult:
        with self._lock:
            self.sent.append({"target": target, "secrets": list(secrets), "id": message_id,
                              "timestamp": timestamp, "subject": subject, "body": body,
                              "payload": json.loads(payload)})
        return self.answer(target, message_id)

    def check_target(self, target: str) -> str:
        return target


class Receiver:
    """A local HTTP receiver: records every POST (headers, body) and answers with
    ``status`` (a callable of the request count may script it)."""

    def __init__(self, status: Callable[[int], tuple[int, dict[str, str]]] | None = None,
                 delay: float = 0.0) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.truncated = 0
        self.status = status or (lambda _n: (200, {}))
        self.delay = delay
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = self.rfile.read(length)
                if len(body) < length:
                    # the sender died mid-request (a kill test): nothing was delivered, as a
                    # real receiver whose signature check fails on the cut body would agree
                    with lock:
                        outer.truncated += 1
                    return
                with lock:
                    outer.requests.append(({k.lower(): v for k, v in self.headers.items()},
                                           body))
                    n = len(outer.requests)
                if outer.delay:
                    threading.Event().wait(outer.delay)
                code, headers = outer.status(n)
                self.send_response(code)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def ids(self) -> list[str]:
        return [h["webhook-id"] for h, _b in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def delivery_env() -> dict[str, str]:
    """Settings a delivery subprocess needs: the key of ``BOX`` and loopback targets."""
    import base64

    return {"SIGNALFACTORY_DELIVERY_KEY": base64.b64encode(bytes(range(32))).decode(),
            "SIGNALFACTORY_DELIVERY_ALLOW_PRIVATE_TARGETS": "true",
            "PATH": os.environ.get("PATH", "")}
