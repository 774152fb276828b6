"""Dashboard sessions on the in-memory ports, the navigation by role, and the page helpers."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from signalfactory.domain.accounts import Principal
from signalfactory.services.accounts import tenants as accounts
from signalfactory.services.accounts import web_sessions
from signalfactory.testing import memory_platform
from signalfactory.testing.clock import FixedClock
from signalfactory.web.navigation import menu_for
from signalfactory.web.rendering import number, percent, when
from signalfactory.web.session import safe_next

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def _platform_with_key(role: str = "trader") -> tuple[object, str, int]:
    platform = memory_platform(clock=FixedClock(NOW))
    with platform.database.write() as uow:
        new, key_id = accounts.create_key(uow, 1, role, "t", now=NOW)
    return platform, new.secret, key_id


def test_a_session_acts_as_its_key_until_signed_out() -> None:
    platform, secret, key_id = _platform_with_key()
    issued = web_sessions.sign_in(platform, secret)  # type: ignore[arg-type]
    assert issued.token != secret and issued.expires_at == NOW + timedelta(hours=12)
    active = web_sessions.active_session(platform, issued.token)  # type: ignore[arg-type]
    assert active.principal.key_id == key_id and active.principal.role == "trader"
    assert active.csrf_token == issued.csrf_token
    with platform.database.read() as uow:  # type: ignore[attr-defined]
        assert uow.web_sessions.find(issued.token, "session") is None  # only the digest
    assert web_sessions.sign_out(platform, issued.token)  # type: ignore[arg-type]
    with pytest.raises(web_sessions.SessionRefusedError, match="not signed in"):
        web_sessions.active_session(platform, issued.token)  # type: ignore[arg-type]


def test_bad_keys_expiry_and_revocation_are_refused() -> None:
    platform, secret, key_id = _platform_with_key()
    with pytest.raises(accounts.KeyRefusedError, match="not an API key"):
        web_sessions.sign_in(platform, "sf_live_nope")  # type: ignore[arg-type]
    issued = web_sessions.sign_in(platform, secret)  # type: ignore[arg-type]
    later = dataclasses.replace(platform, clock=FixedClock(NOW + timedelta(hours=12)))
    with pytest.raises(web_sessions.SessionRefusedError, match="expired"):
        web_sessions.active_session(later, issued.token)
    with platform.database.write() as uow:  # type: ignore[attr-defined]
        uow.accounts.revoke_key(key_id, NOW)
    with pytest.raises(web_sessions.SessionRefusedError, match="revoked"):
        web_sessions.active_session(platform, issued.token)  # type: ignore[arg-type]
    with pytest.raises(accounts.KeyRefusedError, match="revoked"):
        web_sessions.sign_in(platform, secret)  # type: ignore[arg-type]


def test_a_link_is_used_once_and_expires() -> None:
    platform = memory_platform(clock=FixedClock(NOW))
    token = web_sessions.issue_sign_in_link(platform, "default", "admin")
    issued = web_sessions.redeem_link(platform, token)
    assert issued.principal.role == "admin" and issued.principal.tenant_id == 1
    with pytest.raises(web_sessions.SessionRefusedError, match="used already"):
        web_sessions.redeem_link(platform, token)
    stale = web_sessions.issue_sign_in_link(platform, "default", "admin")
    later = dataclasses.replace(platform, clock=FixedClock(NOW + timedelta(minutes=16)))
    with pytest.raises(web_sessions.SessionRefusedError, match="expired"):
        web_sessions.redeem_link(later, stale)
    with pytest.raises(web_sessions.SessionRefusedError, match="used already"):
        web_sessions.redeem_link(platform, stale)  # an expired link is gone, too
    with pytest.raises(Exception, match="role 'root'"):
        web_sessions.issue_sign_in_link(platform, "default", "root")


def test_the_menu_follows_the_role() -> None:
    def labels(role: str) -> list[str]:
        principal = Principal(1, "t", "free", role, 1, "p")
        return [i.label for s in menu_for(principal) for i in s.items]

    assert "Admin" not in labels("viewer") and "Admin" not in labels("trader")
    assert labels("admin")[-1] == "Admin" and labels("viewer")[0] == "Overview"


def test_page_helpers_escape_and_format() -> None:
    assert str(when("<b>")) == "&lt;b&gt;"
    shown = str(when(datetime(2026, 3, 2, 9, 30, tzinfo=UTC)))
    assert shown == ('<time datetime="2026-03-02T09:30:00Z" title="2026-03-02 09:30 UTC">'
                     "2026-03-02 09:30 UTC</time>")
    assert "1970-01-01 00:00" in str(when(0))
    assert percent(0.1234, 1) == "12.3%" and percent(-0.5, 0, True) == "-50%"
    assert percent(float("nan")) == "–" and number(None) == "–" and number(1234) == "1,234"
    for unsafe in ("//evil.example", "https://evil.example", "\\\\evil", "", None):
        assert safe_next(unsafe) == "/"
    assert safe_next("/jobs?status=failed") == "/jobs?status=failed"
