"""Apprise and e-mail channels against real peers on this machine: an SMTP server
(aiosmtpd), the Mosquitto broker (MQTT) and a local HTTP server for Apprise's json://."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest

from signalfactory.adapters.channels.apprise_channel import AppriseChannel, check_apprise_url
from signalfactory.adapters.channels.email import EmailChannel, check_email_target
from signalfactory.domain.errors import BadInputError
from tests.delivery_receivers import http_receiver, mqtt_subscriber, smtp_server

pytestmark = pytest.mark.timeout(60)
IN_CI = os.environ.get("CI", "").lower() == "true"


def _send(channel: AppriseChannel | EmailChannel, target: str, subject: str = "BUY AAPL",
          body: str = "BUY AAPL at 189.5", html: str | None = None) -> Any:
    return channel.send(target, [], f"msg_{uuid.uuid4().hex}", 1_700_000_000, subject, body,
                        b"{}", html=html)


def test_smtp_delivers_a_multipart_message_with_text_and_html() -> None:
    with smtp_server() as (port, inbox):
        target = (f"smtp://127.0.0.1:{port}?from=alerts@signalfactory.test"
                  "&to=trader@example.com,desk@example.com")
        result = _send(EmailChannel(timeout_s=5), target, body="BUY <AAPL>\nat 189.5")
        with_html = _send(EmailChannel(timeout_s=5), target, html="<p><b>BUY</b> AAPL</p>")
    assert result.ok and result.error is None and with_html.ok
    sender, recipients, raw = inbox.messages[0]
    assert sender == "alerts@signalfactory.test"
    assert recipients == ["trader@example.com", "desk@example.com"]
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    assert message.get_content_type() == "multipart/alternative"
    assert message["Subject"] == "BUY AAPL" and message["Message-ID"].endswith("@signalfactory>")
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None and html is not None
    assert text.get_content().replace("\r\n", "\n").strip() == "BUY <AAPL>\nat 189.5"
    assert "BUY &lt;AAPL&gt;<br>" in html.get_content()  # escaped from the text
    second = message_from_bytes(inbox.messages[1][2], policy=policy.default)
    assert isinstance(second, EmailMessage)
    body = second.get_body(("html",))
    assert body is not None and "<p><b>BUY</b> AAPL</p>" in body.get_content()


def test_smtp_refusals_are_reported_per_recipient() -> None:
    with smtp_server() as (port, inbox):
        base = f"smtp://127.0.0.1:{port}?from=alerts@signalfactory.test"
        partial = _send(EmailChannel(5), base + "&to=ok@example.com,nobody@refused.example")
        refused = _send(EmailChannel(5), base + "&to=nobody@refused.example")
    assert partial.ok and partial.failures == (
        "nobody@refused.example: SMTP 550 5.1.1 no such user",)
    assert not refused.ok and refused.error == "every recipient was refused"
    assert refused.failures == ("nobody@refused.example: SMTP 550 5.1.1 no such user",)
    assert len(inbox.messages) == 1


def test_smtp_server_down_is_a_failed_result() -> None:
    with smtp_server() as (port, _inbox):
        pass
    result = _send(EmailChannel(2), f"smtp://127.0.0.1:{port}?from=a@b.test&to=c@d.test")
    assert not result.ok and "ConnectionRefusedError" in (result.error or "")


@pytest.mark.parametrize(("target", "problem"), [
    ("mailto://x@y", "smtp://, smtp\\+starttls:// or smtps://"),
    ("smtp://127.0.0.1?to=a@b.test", "exactly one from="),
    ("smtp://127.0.0.1?from=a@b.test", "needs to="),
    ("smtp://127.0.0.1?from=a@b.test&to=not-an-address", "not an e-mail address"),
    ("smtp://?from=a@b.test&to=c@d.test", "no SMTP host"),
])
def test_bad_email_targets_are_refused(target: str, problem: str) -> None:
    with pytest.raises(BadInputError, match=problem):
        check_email_target(target)
    assert _send(EmailChannel(1), target).error.startswith("refused:")


def test_apprise_json_reaches_a_local_server() -> None:
    channel = AppriseChannel(timeout_s=5, allow_private=True)
    with http_receiver() as (base, state):
        target = base.replace("http://", "json://") + "/ok"
        result = _send(channel, target, subject="Daily report", body="3 signals today")
        failed = _send(channel, base.replace("http://", "json://") + "/500")
    assert result.ok and result.error is None
    posted = json.loads(state.received[0].body)
    assert (posted["title"], posted["message"]) == ("Daily report", "3 signals today")
    assert not failed.ok and len(failed.failures) == 1
    assert failed.failures[0].startswith("JSON json://127.0.0.1/...: FAILURE:")
    assert "500" in failed.failures[0] and failed.error == failed.failures[0]


def test_apprise_connection_failure_is_reported_with_apprise_own_words() -> None:
    with http_receiver() as (base, _state):
        pass
    result = _send(AppriseChannel(5, allow_private=True), base.replace("http://", "json://"))
    assert not result.ok
    assert "Connection error occurred sending JSON notification" in (result.error or "")


def test_apprise_mqtt_reaches_a_subscriber_on_mosquitto() -> None:
    topic = f"signalfactory/test-{uuid.uuid4().hex}"
    with mqtt_subscriber(topic) as got:
        result = _send(AppriseChannel(10, allow_private=True), f"mqtt://127.0.0.1:1883/{topic}",
                       subject="SELL MSFT", body="SELL MSFT at 410.2")
        assert result.ok, result.error
        # Apprise puts the title on the first line of a text-only service's message
        assert got.get(timeout=10) == b"SELL MSFT\r\nSELL MSFT at 410.2"


@pytest.mark.parametrize(("url", "allow_private", "problem"), [
    ("foo://bar", True, "unknown Apprise scheme 'foo'"),
    ("tgram://", True, "tgram:// plugin rejected the URL"),
    ("json://", True, "json:// plugin rejected the URL"),
    ("just text", True, "not an Apprise URL"),
    ("", True, "1 to 4096"),
    ("json://127.0.0.1/hook", False, "loopback"),
    ("mqtt://10.0.0.5/topic", False, "private"),
    ("ntfy://169.254.169.254/topic", False, "link-local"),
])
def test_bad_apprise_urls_are_refused(url: str, allow_private: bool, problem: str) -> None:
    with pytest.raises(BadInputError, match=problem):
        check_apprise_url(url, allow_private=allow_private)
    result = _send(AppriseChannel(1, allow_private=allow_private), url)
    assert not result.ok and (result.error or "").startswith("refused:")


def test_apprise_urls_apprise_accepts_pass_and_secrets_stay_out_of_errors() -> None:
    assert check_apprise_url(" tgram://123456789:ABCdef/-100200300 ") == \
        "tgram://123456789:ABCdef/-100200300"
    assert check_apprise_url("mailto://user:hunter2@example.com")
    with pytest.raises(BadInputError) as caught:
        check_apprise_url("json://user:hunter2@127.0.0.1/x", allow_private=False)
    assert "hunter2" not in str(caught.value)


def test_build_channels_is_cheap_and_gives_every_kind() -> None:
    """Constructing the channels loads neither httpx nor apprise (they load on first send)."""
    code = ("import sys\nfrom signalfactory.settings import Settings\n"
            "from signalfactory.bootstrap import build_channels\n"
            "channels = build_channels(Settings())\n"
            "print(sorted(channels), [c.kind for c in channels.values()],"
            " 'apprise' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True, env={**os.environ,
                                                      "SIGNALFACTORY_HOME": "/tmp/sf-chk"})
    assert out.stdout.strip() == ("['apprise', 'email', 'webhook'] "
                                  "['webhook', 'apprise', 'email'] False")
