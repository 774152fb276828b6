"""Message templates (sandboxed Jinja2) and the pacer's keys and windows."""

from __future__ import annotations

import time

import pytest

from signalfactory.adapters.channels.pacing import PaceKey, Pacer, rate_item, target_keys
from signalfactory.adapters.templates import check_template, render_message
from signalfactory.domain.delivery import RenderedMessage, TemplateRenderError
from signalfactory.domain.errors import BadInputError

SIGNAL = {"type": "signal", "signal": {
    "symbol": "AAPL", "side": "buy", "strategy": "sma_cross", "price": 189.5,
    "timeframe": "1d", "score": 0.8, "bar_ts": "2024-01-02T00:00:00Z"}}


def test_default_templates_per_kind() -> None:
    assert render_message("webhook", "ignored {{ x }}", SIGNAL) == RenderedMessage(
        subject="BUY AAPL (sma_cross)", body="")
    apprise = render_message("apprise", None, SIGNAL)
    assert apprise == RenderedMessage(subject="BUY AAPL (sma_cross)",
                                      body="BUY AAPL at 189.5 on 1d (sma_cross, score 0.8)")
    email = render_message("email", None, SIGNAL)
    assert email.body == apprise.body and email.html is not None
    assert "<strong>BUY AAPL</strong>" in email.html
    campaign = render_message("email", None, {"subject": "News", "body": "a <b>\nc"})
    assert (campaign.subject, campaign.body) == ("News", "a <b>\nc")
    assert campaign.html is not None and "a &lt;b&gt;<br>c" in campaign.html
    digest = render_message("apprise", None, {"signals": [SIGNAL["signal"]] * 2})
    assert digest.subject == "2 signals" and digest.body.count("- BUY AAPL at 189.5") == 2


def test_a_subscription_template_overrides_the_default() -> None:
    plain = render_message("email", "{{ signal.symbol }}: {{ signal.side }} <now>", SIGNAL)
    assert plain == RenderedMessage(subject="BUY AAPL (sma_cross)",
                                    body="AAPL: buy <now>", html=None)  # e-mail escapes it
    blocks = render_message("email", "{% block subject %}Hey {{ signal.symbol }}{% endblock %}"
                            "{% block text %}t{% endblock %}"
                            "{% block html %}<i>{{ '<script>' }}</i>{% endblock %}", SIGNAL)
    assert blocks == RenderedMessage(subject="Hey AAPL", body="t",
                                     html="<i>&lt;script&gt;</i>")
    only_subject = render_message("apprise", "{% block subject %}S{% endblock %}", SIGNAL)
    assert only_subject.subject == "S" and only_subject.body.startswith("BUY AAPL at")


@pytest.mark.parametrize(("template", "problem"), [
    ("{{ ''.__class__.__mro__ }}", "line 1: attribute '__"),
    ("ok\n{{ x['__globals__'] }}", "line 2: attribute '__globals__'"),
    ("{{ lipsum.__globals__.os }}", "attribute '__globals__'"),
    ("{% if %}", "line 1: Expected an expression"),
    ("a\nb\n{{ x|no_such_filter }}", "line 3: No filter named 'no_such_filter'"),
    ("{% block footer %}{% endblock %}", "unknown: footer"),
    ("{{ payload.update({}) }}", "access to attribute 'update' of 'dict' object is unsafe"),
    ("x" * 20_001, "at most 20000 characters"),
])
def test_bad_templates_are_refused_with_the_line(template: str, problem: str) -> None:
    with pytest.raises(BadInputError, match=problem.replace("(", r"\(").replace("[", r"\[")):
        check_template(template)


def test_good_templates_pass_the_check() -> None:
    text = "{% block subject %}{{ signal.symbol }}{% endblock %}{{ signal.values.rsi }}"
    assert check_template(text) == text


def test_render_failures_at_send_time_are_template_errors() -> None:
    with pytest.raises(TemplateRenderError, match="ZeroDivisionError"):
        render_message("apprise", "{{ 1 / 0 }}", SIGNAL)
    with pytest.raises(TemplateRenderError, match="sandbox"):
        render_message("apprise", "{{ payload.clear() }}", SIGNAL)
    with pytest.raises(TemplateRenderError, match="rendered"):
        render_message("apprise", "{% for i in range(20000) %}0123456789{% endfor %}", SIGNAL)
    # a sandbox-blocked attribute renders as nothing, never as the object
    assert render_message("apprise", "[{{ ''.__class__ }}]", SIGNAL).body == "[]"


def test_rate_windows_are_never_faster_than_declared() -> None:
    assert (rate_item(1).amount, rate_item(1).get_expiry()) == (1, 1)
    assert (rate_item(0.3).amount, rate_item(0.3).get_expiry()) == (1, 4)
    assert (rate_item(2.5).amount, rate_item(2.5).get_expiry()) == (2, 1)
    assert (rate_item(30).amount, rate_item(30).get_expiry()) == (28, 1)
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="positive"):
            rate_item(bad)


def test_target_keys_hide_credentials_and_add_telegram_limits() -> None:
    assert target_keys("https://example.com/hook", None) == []
    keys = target_keys("tgram://123:SECRET/-100/-200", 5)
    assert [k.per_second for k in keys] == [5, 30.0, 1.0, 1.0]
    assert all("SECRET" not in k.key for k in keys)
    assert len({k.key for k in keys}) == 4


def test_pacer_waits_instead_of_failing() -> None:
    pacer = Pacer()
    key = [PaceKey("k", 1.0)]
    started = time.monotonic()
    assert pacer.wait(key) < 0.05
    waited = pacer.wait(key)
    assert 0.9 <= waited <= 1.5 and time.monotonic() - started >= 0.9
