"""Delivery end to end: bars ingested from a file make signals, and every signal reaches a
webhook (signed, verified by the standardwebhooks package), an e-mail inbox (aiosmtpd) and an
MQTT topic (the Mosquitto on this machine), once each; ingesting the same file again sends
nothing more."""

from __future__ import annotations

import base64
import os
import queue
import time
import uuid
from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path

import numpy as np
import pytest
import standardwebhooks

from signalfactory.domain.delivery import DELIVERED, DeliveryControls
from signalfactory.services.accounts.tenants import create_tenant
from signalfactory.services.delivery.controls import set_controls
from signalfactory.services.delivery.endpoints import create_endpoint
from signalfactory.services.marketdata.ingest import ingest_files
from signalfactory.services.platform import Platform
from signalfactory.services.strategies.catalog import add_strategy
from signalfactory.services.streaming.subscriptions import create_subscription
from signalfactory.workers.delivery import DeliveryWorker
from tests.delivery_receivers import http_receiver, mqtt_subscriber, smtp_server

# One entry per bar: every new bar of the followed strategy is a signal.
RULE = "entry: close > 0\nexit: close < 0"


@pytest.fixture
def dplatform(sf_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Platform]:
    from signalfactory.bootstrap import build_platform

    monkeypatch.setenv("SIGNALFACTORY_DELIVERY_KEY", base64.b64encode(os.urandom(32)).decode())
    monkeypatch.setenv("SIGNALFACTORY_DELIVERY_ALLOW_PRIVATE_TARGETS", "true")
    platform = build_platform(migrate_db=True)
    try:
        yield platform
    finally:
        platform.close()


def _csv(path: Path, symbol: str, days: int) -> Path:
    rng = np.random.default_rng(7)
    close = 100 + np.cumsum(rng.normal(0, 1, days))
    lines = ["date,open,high,low,close,volume"]
    for i, c in enumerate(close):
        day = np.datetime64("2024-01-01") + np.timedelta64(i, "D")
        lines.append(f"{day},{c:.2f},{c + 1:.2f},{c - 1:.2f},{c:.2f},1000")
    path.write_text("\n".join(lines) + "\n")
    return path


def _signal_count(platform: Platform) -> int:
    with platform.database.read(primary=True) as uow:
        return len(uow.deliveries.find(None, limit=100_000))


def _deliver_all(platform: Platform, expected: int) -> None:
    worker = DeliveryWorker(platform, concurrency=2, poll_seconds=0.1)
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with platform.database.read(primary=True) as uow:
                done = len(uow.deliveries.find(None, status=DELIVERED, limit=100_000))
            if done >= expected:
                return
            time.sleep(0.05)
    finally:
        worker.stop()
    pytest.fail(f"only {done} of {expected} deliveries were made within 60 s")


def test_an_ingested_signal_reaches_a_webhook_an_inbox_and_an_mqtt_topic_once(
        dplatform: Platform, tmp_path: Path) -> None:
    topic = f"signalfactory/e2e-{uuid.uuid4().hex}"
    with mqtt_subscriber(topic) as received, http_receiver() as (base, hooks), \
            smtp_server() as (smtp_port, inbox):
        with dplatform.database.write() as uow:
            tenant = create_tenant(uow, f"e2e-{uuid.uuid4().hex[:6]}", "enterprise").id
            add_strategy(uow, tenant, "every_bar", rule_text=RULE)
        subscription = create_subscription(dplatform, tenant, "alerts",
                                           strategies_=["every_bar"])
        hook = create_endpoint(dplatform, tenant, name="hook", kind="webhook",
                               target=f"{base}/hook")
        mail = create_endpoint(
            dplatform, tenant, name="mail", kind="email",
            target=f"smtp://127.0.0.1:{smtp_port}?from=sf@example.com&to=me@example.com")
        mq = create_endpoint(dplatform, tenant, name="mqtt", kind="apprise",
                             target=f"mqtt://127.0.0.1:1883/{topic}")
        set_controls(dplatform, tenant, subscription.id, DeliveryControls(
            endpoint_ids=(hook.endpoint.id, mail.endpoint.id, mq.endpoint.id)))

        csv = _csv(tmp_path / "ACME.csv", "ACME", 40)
        ingest_files(dplatform, [csv], symbol="ACME", timeframe="1d")
        rows = _signal_count(dplatform)
        assert rows > 0 and rows % 3 == 0, "each signal owes one row per endpoint"
        signals = rows // 3
        _deliver_all(dplatform, rows)

        # The webhook: every signal once, signed with the endpoint's secret.
        assert hook.secret is not None
        verifier = standardwebhooks.Webhook(hook.secret)
        ids = [r.headers["webhook-id"] for r in hooks.received]
        assert len(ids) == signals and len(set(ids)) == signals
        for request in hooks.received:
            payload = verifier.verify(request.body, request.headers)
            assert payload["type"] == "signal.created" and payload["symbol"] == "ACME"
        # The inbox: one multipart message (text and HTML) per signal.
        assert len(inbox.messages) == signals
        kinds = {part.get_content_type()
                 for part in message_from_bytes(inbox.messages[0][2]).walk()}
        assert {"text/plain", "text/html"} <= kinds
        # The MQTT topic: one message per signal.
        got = []
        deadline = time.monotonic() + 10
        while len(got) < signals and time.monotonic() < deadline:
            try:
                got.append(received.get(timeout=0.5))
            except queue.Empty:
                continue
        assert len(got) == signals and all(b"ACME" in m for m in got)

        # The same file again: no new signal, nothing sent twice.
        ingest_files(dplatform, [csv], symbol="ACME", timeframe="1d")
        assert _signal_count(dplatform) == rows
        _deliver_all(dplatform, rows)
        time.sleep(0.5)
        assert len(hooks.received) == signals and len(inbox.messages) == signals
        assert received.empty()
