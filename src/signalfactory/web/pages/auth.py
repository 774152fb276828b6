"""Signing in and out: an API key (or a one-time link) for an HTTP-only session cookie.

The key is posted once, checked exactly as the API checks it, and forgotten: the browser
keeps only a random session token in an HTTP-only, ``SameSite=Strict`` cookie. The sign-in
form carries a CSRF token of its own (double-submit: a cookie and a field that must match),
so another site cannot sign a browser into someone else's account.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from signalfactory.domain.errors import BadInputError
from signalfactory.services.accounts import web_sessions
from signalfactory.services.accounts.web_sessions import SESSION_COOKIE
from signalfactory.services.platform import Platform
from signalfactory.web.deps import get_platform
from signalfactory.web.forms import form_fields, same_token
from signalfactory.web.rendering import redirect, render
from signalfactory.web.session import safe_next

router = APIRouter(include_in_schema=False)

SIGNIN_CSRF_COOKIE = "sf_signin"


def _secure(request: Request, platform: Platform) -> bool:
    configured = platform.settings.web_secure_cookies
    return configured if configured is not None else request.url.scheme == "https"


def _set_session(response: Response, request: Request, platform: Platform,
                 issued: web_sessions.IssuedSession) -> None:
    max_age = int((issued.expires_at - datetime.now(issued.expires_at.tzinfo)).total_seconds())
    response.set_cookie(SESSION_COOKIE, issued.token, max_age=max(1, max_age), path="/",
                        httponly=True, samesite="strict", secure=_secure(request, platform))
    response.delete_cookie(SIGNIN_CSRF_COOKIE, path="/signin")


def _form(request: Request, *, next_url: str, error: str = "", status_code: int = 200,
          notice: str = "") -> Response:
    token = secrets.token_urlsafe(24)
    response = render(request, "signin.html", {"csrf": token, "next": next_url,
                                               "error": error, "notice": notice},
                      status_code=status_code)
    response.set_cookie(SIGNIN_CSRF_COOKIE, token, path="/signin", httponly=True,
                        samesite="strict", secure=_secure(request, get_platform(request)))
    return response


@router.get("/signin")
def signin_page(request: Request, next: str = "/") -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:  # signed in already: straight on
        try:
            web_sessions.active_session(get_platform(request), token)
            return redirect(safe_next(next))
        except web_sessions.SessionRefusedError:
            pass
    return _form(request, next_url=safe_next(next))


@router.post("/signin")
async def signin(request: Request) -> Response:
    platform = get_platform(request)
    fields = await form_fields(request)
    next_url = safe_next(fields.get("next"))
    if not same_token(fields.get("csrf"), request.cookies.get(SIGNIN_CSRF_COOKIE)):
        return _form(request, next_url=next_url, status_code=403,
                     error="the sign-in form expired (or cookies are blocked); try again")
    key = fields.get("key", "").strip()
    if not key:
        return _form(request, next_url=next_url, status_code=422,
                     error="paste your API key (sf_live_...)")
    try:
        issued = await run_in_threadpool(web_sessions.sign_in, platform, key)
    except BadInputError as exc:
        return _form(request, next_url=next_url, status_code=401, error=str(exc))
    response = redirect(next_url)
    _set_session(response, request, platform, issued)
    return response


@router.get("/signin/link/{token}")
def signin_link(request: Request, token: str) -> Response:
    platform = get_platform(request)
    try:
        issued = web_sessions.redeem_link(platform, token[:200])
    except BadInputError as exc:
        return _form(request, next_url="/", status_code=401, error=str(exc))
    response = redirect("/")
    _set_session(response, request, platform, issued)
    return response


@router.post("/signout")
async def signout(request: Request) -> Response:
    platform = get_platform(request)
    fields = await form_fields(request)
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        try:
            session = await run_in_threadpool(web_sessions.active_session, platform, token)
        except web_sessions.SessionRefusedError:
            session = None
        # A sign-out needs the page's CSRF token: another site cannot sign anyone out.
        if session is not None and not same_token(fields.get("csrf"), session.csrf_token):
            return redirect("/")
        await run_in_threadpool(web_sessions.sign_out, platform, token)
    response = _form(request, next_url="/", notice="You are signed out.")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
