"""Delivery channels against real peers on loopback: a webhook receiver verifying with the
official ``standardwebhooks`` package and ``svix``, failure answers, SSRF refusals, and
pacing proven against a Telegram-like rate-limited stand-in."""

from __future__ import annotations

import json
import random
import string
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import standardwebhooks
import svix.webhooks

from signalfactory.adapters.channels.pacing import Pacer, telegram_keys
from signalfactory.adapters.channels.webhook import (
    WebhookChannel,
    check_webhook_secret,
    check_webhook_url,
    generate_webhook_secret,
)
from signalfactory.domain.delivery import SendResult
from signalfactory.domain.errors import BadInputError
from tests.delivery_receivers import http_receiver

pytestmark = pytest.mark.timeout(90)


def _payload(rng: random.Random) -> bytes:
    text = "".join(rng.choice(string.printable + "éü€🚀") for _ in range(rng.randint(0, 200)))
    return json.dumps({"type": "signal", "id": rng.randint(1, 10**9), "note": text,
                       "price": rng.uniform(0, 1e6)}, ensure_ascii=rng.random() < 0.5).encode()


def _send(channel: WebhookChannel, url: str, secrets: list[str], payload: bytes,
          timestamp: int | None = None, message_id: str | None = None) -> SendResult:
    return channel.send(url, secrets, message_id or f"msg_{uuid.uuid4().hex}",
                        int(time.time()) if timestamp is None else timestamp, "s", "b",
                        payload)


def _verifies(secret: str, body: bytes, headers: dict[str, str]) -> tuple[bool, bool]:
    """(standardwebhooks accepts, svix accepts)."""
    results = []
    for verify in (standardwebhooks.Webhook(secret).verify, svix.webhooks.Webhook(secret).verify):
        try:
            verify(body, headers)
            results.append(True)
        except standardwebhooks.webhooks.WebhookVerificationError:
            results.append(False)
    return results[0], results[1]


def test_a_thousand_messages_verify_with_standardwebhooks_and_svix_including_rotation() -> None:
    rng = random.Random(10)
    old, new, stranger = (generate_webhook_secret() for _ in range(3))
    channel = WebhookChannel(timeout_s=5, allow_private=True)
    with http_receiver() as (base, state):
        plan = [(_payload(rng), [old] if i % 2 else [old, new]) for i in range(1000)]
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda p: _send(channel, base + "/ok", p[1], p[0]), plan))
    channel.close()
    assert all(r.ok and r.status_code == 200 for r in results), [r for r in results if not r.ok]
    assert len(state.received) == 1000
    # keep-alive: far fewer connections than requests
    assert len({r.client_port for r in state.received}) <= 50
    sent = {body: secrets for body, secrets in plan}
    for got in state.received:
        secrets = sent[got.body]
        assert got.headers["content-type"] == "application/json"
        assert len(got.headers["webhook-signature"].split(" ")) == len(secrets)
        for secret in secrets:  # during a rotation either secret verifies
            assert _verifies(secret, got.body, got.headers) == (True, True)
        assert new in secrets or _verifies(new, got.body, got.headers) == (False, False)
        assert _verifies(stranger, got.body, got.headers) == (False, False)
        assert _verifies(secrets[0], got.body + b" ", got.headers) == (False, False)


def test_timestamps_six_minutes_off_are_refused_by_both_libraries() -> None:
    secret = generate_webhook_secret()
    channel = WebhookChannel(timeout_s=5, allow_private=True)
    with http_receiver() as (base, state):
        now = int(time.time())
        for stamp in (now - 360, now + 360, now - 240):
            assert _send(channel, base + "/ok", [secret], b'{"a":1}', timestamp=stamp).ok
    old, future, recent = state.received
    assert _verifies(secret, old.body, old.headers) == (False, False)
    assert _verifies(secret, future.body, future.headers) == (False, False)
    assert _verifies(secret, recent.body, recent.headers) == (True, True)
    # the same message id on a repeat: receivers drop duplicates by webhook-id
    with http_receiver() as (base, state):
        for _ in range(2):
            _send(channel, base + "/ok", [secret], b"{}", message_id="msg_same")
    assert [r.headers["webhook-id"] for r in state.received] == ["msg_same", "msg_same"]


def test_failed_answers_carry_what_the_dispatcher_needs() -> None:
    secret = [generate_webhook_secret()]
    channel = WebhookChannel(timeout_s=0.5, allow_private=True)
    with http_receiver() as (base, _state):
        slow = _send(channel, base + "/slow", secret, b"{}")
        error = _send(channel, base + "/500", secret, b"{}")
        closed = _send(channel, base + "/close", secret, b"{}")
        gone = _send(channel, base + "/410", secret, b"{}")
        limited = _send(channel, base + "/429", secret, b"{}")
        limited_until = _send(channel, base + "/429date", secret, b"{}")
        fine = _send(channel, base + "/ok", secret, b"{}")
    assert not slow.ok and slow.status_code is None
    assert "timed out after 0.5 s" in (slow.error or "")
    assert 0.4 <= slow.latency_s < 2.0
    assert (error.ok, error.status_code) == (False, 500)
    assert error.error == "HTTP 500 Internal Server Error"
    assert error.response_excerpt is not None and len(error.response_excerpt) == 500
    assert error.response_excerpt.startswith("internal failure")
    assert not closed.ok and closed.status_code is None and closed.error
    assert (gone.ok, gone.status_code, gone.response_excerpt) == (False, 410, "gone")
    assert (limited.status_code, limited.retry_after_s) == (429, 7.0)
    assert limited_until.retry_after_s is not None and 110 <= limited_until.retry_after_s <= 121
    assert fine.ok and fine.error is None and fine.retry_after_s is None


def test_unreachable_target_is_a_failed_result_not_an_exception() -> None:
    with http_receiver() as (base, _state):
        pass  # the port is closed now
    result = _send(WebhookChannel(timeout_s=2, allow_private=True), base + "/ok",
                   [generate_webhook_secret()], b"{}")
    assert not result.ok and result.status_code is None and "ConnectError" in (result.error or "")


@pytest.mark.parametrize(("url", "problem"), [
    ("http://127.0.0.1:8080/hook", "loopback"),
    ("http://localhost/hook", "loopback"),
    ("http://10.1.2.3/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://169.254.169.254/latest/meta-data", "link-local"),
    ("http://[::1]/", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://224.0.0.1/", "multicast"),
    ("http://240.0.0.1/", "reserved"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://100.64.0.1/", "not globally routable"),
    ("ftp://example.com/", "http:// or https://"),
    ("file:///etc/passwd", "http:// or https://"),
    ("https://user:secret@93.184.215.14/", "credentials"),
    ("https://93.184.215.14:0/", "outside 1..65535"),
    ("https://93.184.215.14:70000/", "malformed"),
    ("https:///path", "no host"),
    ("", "1 to 2048"),
])
def test_ssrf_and_malformed_webhook_urls_are_refused(url: str, problem: str) -> None:
    with pytest.raises(BadInputError, match=problem):
        check_webhook_url(url, allow_private=False)


def test_private_targets_pass_when_allowed_and_public_literals_always() -> None:
    assert check_webhook_url(" http://127.0.0.1:8080/x ", allow_private=True) == \
        "http://127.0.0.1:8080/x"
    assert check_webhook_url("https://93.184.215.14/hook", allow_private=False)
    with pytest.raises(BadInputError, match="credentials"):
        check_webhook_url("http://u:p@127.0.0.1/", allow_private=True)


def test_channel_refuses_a_private_target_at_send_time_and_sends_nothing() -> None:
    channel = WebhookChannel(timeout_s=2, allow_private=False)
    with http_receiver() as (base, state):
        result = _send(channel, base + "/ok", [generate_webhook_secret()], b"{}")
    assert not result.ok and result.error is not None
    assert result.error.startswith("refused:") and "loopback" in result.error
    assert state.received == []


def test_secrets() -> None:
    secret = generate_webhook_secret()
    assert secret.startswith("whsec_") and check_webhook_secret(f" {secret} ") == secret
    assert generate_webhook_secret() != secret
    for bad, problem in [("abc", "starts with"), ("whsec_!!!", "base64"),
                         ("whsec_AAAA", "24 to 64 bytes")]:
        with pytest.raises(BadInputError, match=problem):
            check_webhook_secret(bad)
    with http_receiver() as (base, state):
        result = _send(WebhookChannel(2, True), base + "/ok", [], b"{}")
    assert not result.ok and "no signing secret" in (result.error or "") and not state.received


def test_the_stand_in_answers_429_to_unpaced_bursts() -> None:
    """The limit the next tests respect is real: without pacing it bites."""
    channel = WebhookChannel(timeout_s=5, allow_private=True)
    with http_receiver() as (base, state):
        results = [_send(channel, f"{base}/tg/1", [generate_webhook_secret()], b"{}")
                   for _ in range(5)]
    assert [r.status_code for r in results].count(429) >= 3 and state.too_many >= 3
    assert all(r.retry_after_s == 1.0 for r in results if r.status_code == 429)


@pytest.mark.slow
def test_paced_sixty_messages_to_three_chats_get_no_429() -> None:
    """Each chat is its own endpoint limited to 1/s (Telegram's per-chat limit); six
    threads send at once. About 20 s: 20 messages per chat at one a second."""
    channel = WebhookChannel(timeout_s=5, allow_private=True, pacer=Pacer())
    secret = [generate_webhook_secret()]
    with http_receiver() as (base, state):
        targets = [f"{base}/tg/chat{i % 3}" for i in range(60)]
        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(lambda t: channel.send(
                t, secret, uuid.uuid4().hex, int(time.time()), "s", "b", b"{}",
                max_per_second=1.0), targets))
    assert state.too_many == 0 and all(r.ok for r in results)
    assert len(state.received) == 60


def test_telegram_keys_pace_sixty_chats_under_thirty_per_second_overall() -> None:
    """Apprise's tgram:// cannot be pointed at localhost, so the pacer's Telegram keys
    (one bot, 60 chats) gate sends to the stand-in through the webhook channel."""
    pacer = Pacer()
    channel = WebhookChannel(timeout_s=5, allow_private=True)
    secret = [generate_webhook_secret()]
    lock = threading.Lock()
    with http_receiver() as (base, state):
        def one(chat: int) -> SendResult:
            pacer.wait(telegram_keys(f"tgram://123456:ABCDEF/{chat}"))
            return _send(channel, f"{base}/tg/{chat}", secret, b"{}")

        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(one, range(60)))
        elapsed = time.monotonic() - started
        with lock:
            assert state.too_many == 0
    assert all(r.ok for r in results)
    assert elapsed >= 1.0  # 60 messages at under 30/s cannot take less


def test_a_slot_further_than_the_pacing_bound_is_a_retry_not_a_long_sleep() -> None:
    channel = WebhookChannel(timeout_s=5, allow_private=True, max_pacing_wait_s=0.5)
    secret = [generate_webhook_secret()]
    with http_receiver() as (base, state):
        def send() -> SendResult:
            return channel.send(base + "/ok", secret, uuid.uuid4().hex, int(time.time()), "s",
                                "b", b"{}", max_per_second=0.1)  # one per 10 s

        first, started, second = send(), time.monotonic(), send()
    assert first.ok and time.monotonic() - started < 0.5
    assert not second.ok and second.retry_after_s == 0.5 and "paced" in (second.error or "")
    assert len(state.received) == 1


def test_refusing_private_targets_connects_to_the_address_it_checked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With the guard on, the channel resolves once, vets, and connects to that address
    keeping the name in Host: a DNS answer changed after the check cannot redirect it.
    (The vetted address is faked to be the loopback receiver: no public host here.)"""
    import signalfactory.adapters.channels.webhook as webhook
    from signalfactory.adapters.channels.addresses import ResolvedHost

    looked_up: list[str] = []

    def vetted(host: str, port: int, *, what: str = "target") -> ResolvedHost:
        looked_up.append(host)
        return ResolvedHost(host=host, port=port, address="127.0.0.1")

    monkeypatch.setattr(webhook, "resolve_public", vetted)
    channel = WebhookChannel(timeout_s=5, allow_private=False)
    with http_receiver() as (base, state):
        port = base.rsplit(":", 1)[1]
        result = _send(channel, f"http://hooks.invalid:{port}/ok", [generate_webhook_secret()],
                       b"{}")
    assert result.ok, result.error
    assert looked_up == ["hooks.invalid"]
    headers = {name.lower(): value for name, value in state.received[0].headers.items()}
    assert headers["host"] == f"hooks.invalid:{port}"
