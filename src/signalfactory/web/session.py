"""Who is looking at a page: the signed-in session (cookie) as a ``WebUser``.

A page that needs a sign-in declares ``WebUserDep``; without a valid session the browser is
sent to ``/signin?next=<page>``. What a user may do is decided by the API on every change;
``WebUser.can`` only decides which controls a page shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request

from signalfactory.domain.accounts import Principal
from signalfactory.services.accounts import web_sessions
from signalfactory.services.accounts.web_sessions import SESSION_COOKIE
from signalfactory.services.platform import Platform
from signalfactory.web.deps import get_platform
from signalfactory.web.navigation import NavSection, menu_for


class SignInRequiredError(Exception):
    """Raised by ``current_user``; answered with a redirect to the sign-in page."""

    def __init__(self, next_url: str, reason: str = "") -> None:
        super().__init__(reason)
        self.next_url = next_url
        self.reason = reason


@dataclass(frozen=True)
class WebUser:
    principal: Principal
    csrf: str

    def can(self, role: str) -> bool:
        return self.principal.has_role(role)

    @property
    def menu(self) -> list[NavSection]:
        return menu_for(self.principal)


def safe_next(url: str | None) -> str:
    """A local path to return to after signing in (never another site)."""
    if not url or not url.startswith("/") or url.startswith("//") or "\\" in url:
        return "/"
    return url


def current_user(request: Request) -> WebUser:
    platform: Platform = get_platform(request)
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise SignInRequiredError(here)
    try:
        session = web_sessions.active_session(platform, token)
    except web_sessions.SessionRefusedError as exc:
        raise SignInRequiredError(here, str(exc)) from None
    return WebUser(session.principal, session.csrf_token)


def sign_in_url(next_url: str) -> str:
    return "/signin" if next_url == "/" else f"/signin?next={quote(next_url, safe='')}"


WebUserDep = Annotated[WebUser, Depends(current_user)]
PlatformDep = Annotated[Platform, Depends(get_platform)]
