"""Who is calling: API key -> Principal (tenant, tier, role), then the per-key rate limit.

Routers declare ``PrincipalDep`` (any role), ``TraderDep`` or ``AdminDep``. Keys come from
``Authorization: Bearer <key>`` or ``X-API-Key``; a browser signed in to the dashboard sends
its session cookie instead (it acts as the key it signed in with), and must echo the
session's CSRF token in ``X-CSRF-Token`` on anything but GET/HEAD/OPTIONS. A key with a bad
checksum is refused before any database lookup. The principal is cached in the request scope,
so middleware that authenticated first (idempotency) and the dependency never look up or
count one request twice.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import Scope

from signalfactory.api.problems import ApiProblem
from signalfactory.domain.accounts import Principal
from signalfactory.domain.api_keys import is_well_formed
from signalfactory.observability.logging import bind_context
from signalfactory.observability.metrics import API_REFUSALS, count_refusal
from signalfactory.services.accounts import tenants as accounts
from signalfactory.services.accounts import web_sessions
from signalfactory.services.accounts.web_sessions import SESSION_COOKIE
from signalfactory.services.platform import Platform
from signalfactory.services.ports import UnitOfWork

__all__ = ["API_REFUSALS", "AdminDep", "CredentialsDep", "Principal", "PrincipalDep",
           "TraderDep", "authenticate_scope", "credentials", "key_from_headers",
           "principal_for_key", "rate_limited", "require_role", "unauthorized"]

STATE_PRINCIPAL = "principal"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
STATE_RESPONSE_HEADERS = "response_headers"
MALFORMED_KEY = ("the API key is malformed (wrong length, characters or checksum); copy the "
                 "whole key again, it looks like sf_live_...")


def unauthorized(detail: str, reason: str) -> ApiProblem:
    count_refusal(reason)
    return ApiProblem(401, detail, code="unauthorized",
                      headers={"WWW-Authenticate": 'Bearer realm="signalfactory"'})


def key_from_headers(headers: Mapping[str, str]) -> str | None:
    """The raw key from ``Authorization: Bearer`` or ``X-API-Key`` (lower-case header names)."""
    authorization = headers.get("authorization", "").strip()
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise unauthorized("the Authorization header must be 'Bearer <API key>'",
                               "malformed_key")
        return value.strip()
    api_key = headers.get("x-api-key", "").strip()
    return api_key or None


def principal_for_key(platform: Platform, secret: str) -> Principal:
    """Check a raw key and return who it belongs to; raises a 401 problem otherwise.

    Also usable outside HTTP routes (WebSocket and SSE handshakes). Does no rate limiting.
    """
    if not is_well_formed(secret):
        raise unauthorized(MALFORMED_KEY, "malformed_key")
    return _known_key(platform, secret, None)


def _known_key(platform: Platform, secret: str, uow: UnitOfWork | None) -> Principal:
    """``principal_for_key`` for a key whose shape was checked already."""
    try:
        return accounts.authenticate(platform, secret, uow)
    except accounts.KeyRefusedError as exc:
        raise unauthorized(str(exc), exc.reason) from None


def session_token(cookie_header: str) -> str | None:
    """The dashboard session token from a ``Cookie`` header, if there is one."""
    from http.cookies import CookieError, SimpleCookie

    if SESSION_COOKIE not in cookie_header:
        return None
    try:
        jar = SimpleCookie(cookie_header)
    except CookieError:
        return None
    morsel = jar.get(SESSION_COOKIE)
    return morsel.value if morsel is not None and morsel.value else None


def principal_for_session(platform: Platform, token: str, method: str,
                          csrf: str | None) -> Principal:
    """Who a dashboard session acts as; a 401 problem when it is not valid, a 403 when a
    state-changing request does not carry the session's CSRF token."""
    try:
        session = web_sessions.active_session(platform, token)
    except web_sessions.SessionRefusedError as exc:
        raise unauthorized(str(exc), exc.reason) from None
    if method.upper() not in SAFE_METHODS and not (
            csrf and secrets.compare_digest(csrf.encode(), session.csrf_token.encode())):
        count_refusal("csrf", session.principal.tenant_name, session.principal.key_prefix)
        raise ApiProblem(403, "this request came with the dashboard's session but without "
                              "its CSRF token (X-CSRF-Token); reload the page and retry",
                         code="csrf")
    return session.principal


def rate_limited(platform: Platform, principal: Principal,
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Count one request of the principal's key; a 429 problem when over its tier's
    window. ``headers`` receives the ``RateLimit-*`` headers to answer with."""
    decision = platform.rate_limiter.hit(principal.tier, "key", str(principal.key_prefix),
                                         str(principal.key_id))
    if headers is not None:
        headers.extend(decision.headers())
    if not decision.allowed:
        count_refusal("rate_limited", principal.tenant_name, principal.key_prefix)
        raise ApiProblem(429, f"rate limit of {decision.limit} requests per "
                              f"{decision.window} s for this key exceeded; retry in "
                              f"{decision.reset_after} s or upgrade the tier",
                         code="rate-limited",
                         headers={"Retry-After": str(decision.reset_after)})


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1")
            for k, v in scope.get("headers") or []}


def credentials(scope: Scope) -> tuple[str | None, str | None]:
    """The raw API key, or else the dashboard session token, an HTTP scope carries.

    Refuses (401 problem) a missing or malformed key without touching the database: the
    checks that are cheap enough for the event loop.
    """
    return _credentials(_headers(scope))


def _credentials(headers: Mapping[str, str]) -> tuple[str | None, str | None]:
    secret = key_from_headers(headers)
    if secret is not None:
        if not is_well_formed(secret):
            raise unauthorized(MALFORMED_KEY, "malformed_key")
        return secret, None
    token = session_token(headers.get("cookie", ""))
    if token is None:
        raise unauthorized("this endpoint needs an API key: send 'Authorization: Bearer "
                           "<key>' or 'X-API-Key: <key>'", "missing_key")
    return None, token


def authenticate_scope(platform: Platform, scope: Scope,
                       uow: UnitOfWork | None = None) -> Principal:
    """Authenticate an HTTP scope once: key -> principal -> rate limit; cached in the scope.

    Raises a 401 problem (no or bad key) or a 429 problem (rate limit exceeded). The
    ``RateLimit-*`` headers are left in the scope state for ``RequestContextMiddleware``.
    Every call that is not cached reads the key's row, so a revoked key is refused on its
    next request whichever process revoked it: in ``uow`` when given, a read of the primary
    the caller goes on reading in.
    """
    state: dict[str, object] = scope.setdefault("state", {})
    cached = state.get(STATE_PRINCIPAL)
    if isinstance(cached, Principal):
        return cached
    headers = _headers(scope)
    secret, token = _credentials(headers)
    if secret is not None:
        principal = _known_key(platform, secret, uow)  # _credentials checked its shape
    else:  # _credentials gives a session token when there is no key
        principal = principal_for_session(platform, token or "", scope.get("method", "GET"),
                                          headers.get(CSRF_HEADER))
    bind_context(tenant=principal.tenant_name, key_id=principal.key_id)
    earned: list[tuple[bytes, bytes]] = []
    state[STATE_RESPONSE_HEADERS] = earned
    rate_limited(platform, principal, earned)
    state[STATE_PRINCIPAL] = principal
    return principal


# Declared only so OpenAPI documents both ways of sending a key; the scope is what is read.
_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer sf_live_...")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False,
                        description="The same key in the X-API-Key header")


def authenticate(request: Request,
                 _bearer_doc: Annotated[HTTPAuthorizationCredentials | None,
                                        Security(_bearer)] = None,
                 _api_key_doc: Annotated[str | None, Security(_api_key)] = None) -> Principal:
    platform: Platform = request.app.state.platform
    return authenticate_scope(platform, request.scope)


async def credentials_checked(
        request: Request,
        _bearer_doc: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
        _api_key_doc: Annotated[str | None, Security(_api_key)] = None) -> None:
    """For hot reads that look the key up in their own worker-thread hop (calling
    ``authenticate_scope`` there, with their database read): documents the key as
    ``PrincipalDep`` does and refuses a missing or malformed one on the event loop, before
    the query is validated. Saves the thread hop a sync dependency costs per request."""
    credentials(request.scope)


def require_role(role: str) -> Callable[[Principal], Principal]:
    def check(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if not principal.has_role(role):
            count_refusal("role", principal.tenant_name, principal.key_prefix)
            raise ApiProblem(403, f"this needs the {role} role; the key "
                                  f"{principal.key_prefix}... has the {principal.role} role",
                             code="forbidden", required_role=role, role=principal.role)
        return principal

    check.__name__ = f"require_{role}"
    return check


PrincipalDep = Annotated[Principal, Depends(authenticate)]
TraderDep = Annotated[Principal, Depends(require_role("trader"))]
AdminDep = Annotated[Principal, Depends(require_role("admin"))]
#: the route calls ``authenticate_scope`` itself, in the thread that does its reads
CredentialsDep = Annotated[None, Depends(credentials_checked)]
