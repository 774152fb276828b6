"""Dashboard sign-in: an API key exchanged for a server-side session, and one-time links.

The browser holds only a random session token in an HTTP-only cookie; the database holds the
token's SHA-256, the key it acts as and the CSRF token its forms must echo. The key itself is
never stored anywhere. Revoking the key ends its sessions at once (every request joins the
session with its key). A one-time sign-in link works the same way with ``kind="link"``: it
is deleted when used and becomes a session.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from signalfactory.domain.accounts import KeyRecord, NewWebSession, Principal
from signalfactory.domain.api_keys import ROLES, is_well_formed
from signalfactory.domain.errors import BadInputError
from signalfactory.services.accounts import tenants as accounts
from signalfactory.services.platform import Platform
from signalfactory.services.ports import UnitOfWork

#: the dashboard's session cookie (HTTP-only, SameSite=Strict); the API accepts it too
SESSION_COOKIE = "sf_session"
#: the name of the key a sign-in link acts as (minted once per tenant and role, never shown)
LINK_KEY_NAME = "dashboard sign-in link"


class SessionRefusedError(BadInputError):
    """No, an unknown, an expired or a revoked session or link; ``reason`` labels it."""

    code = "unauthorized"

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class IssuedSession:
    """A session just started: ``token`` goes into the cookie and is forgotten here."""

    token: str
    csrf_token: str
    expires_at: datetime
    principal: Principal


@dataclass(frozen=True)
class ActiveSession:
    principal: Principal
    csrf_token: str
    expires_at: datetime


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _principal(key: KeyRecord) -> Principal:
    return Principal(tenant_id=key.tenant_id, tenant_name=key.tenant_name, tier=key.tier,
                     role=key.role, key_id=key.id, key_prefix=key.prefix)


def _store(uow: UnitOfWork, kind: str, key_id: int, now: datetime,
           lifetime: timedelta) -> tuple[str, str]:
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    uow.web_sessions.create(NewWebSession(kind=kind, token_digest=token_digest(token),
                                          key_id=key_id, csrf_token=csrf, created_at=now,
                                          expires_at=now + lifetime))
    return token, csrf


def session_lifetime(platform: Platform) -> timedelta:
    return timedelta(hours=platform.settings.web_session_hours)


def sign_in(platform: Platform, secret: str) -> IssuedSession:
    """Check the key as the API does and start a session acting as it.

    ``KeyRefusedError`` (a ``BadInputError``) when the key is malformed, unknown or revoked.
    """
    secret = secret.strip()
    if not is_well_formed(secret):
        raise accounts.KeyRefusedError(
            "that is not an API key (wrong length, characters or checksum); paste the whole "
            "key, it looks like sf_live_...", reason="malformed_key")
    principal = accounts.authenticate(platform, secret)
    if principal.key_id is None:  # authenticate always names the stored key
        raise accounts.KeyRefusedError("the API key is not known", reason="unknown_key")
    now = platform.clock.now()
    lifetime = session_lifetime(platform)
    with platform.database.write() as uow:
        uow.web_sessions.purge(now)
        token, csrf = _store(uow, "session", principal.key_id, now, lifetime)
    return IssuedSession(token, csrf, now + lifetime, principal)


def active_session(platform: Platform, token: str) -> ActiveSession:
    """The session a cookie names; ``SessionRefusedError`` when it is unknown, expired, or
    its key was revoked. Reads the primary: a sign-out or revocation counts at once."""
    with platform.database.read(primary=True) as uow:
        found = uow.web_sessions.find(token_digest(token), "session")
    if found is None:
        raise SessionRefusedError("you are not signed in (or were signed out); sign in "
                                  "again", reason="unknown_session")
    if found.expires_at <= platform.clock.now():
        raise SessionRefusedError("your sign-in expired; sign in again",
                                  reason="expired_session")
    if found.key.revoked_at is not None:
        raise SessionRefusedError(f"the API key {found.key.prefix}... of this sign-in was "
                                  "revoked; sign in with another key", reason="revoked_key")
    return ActiveSession(_principal(found.key), found.csrf_token, found.expires_at)


def sign_out(platform: Platform, token: str) -> bool:
    with platform.database.write() as uow:
        return uow.web_sessions.delete(token_digest(token), "session")


def issue_sign_in_link(platform: Platform, tenant_name: str = "default",
                       role: str = "admin") -> str:
    """A one-time token that signs a browser in as ``role`` of the tenant (for the local
    user of ``signalfactory up``). It acts as a key named ``LINK_KEY_NAME`` whose secret was
    never shown to anyone; revoke that key to end every session made from links."""
    if role not in ROLES:
        raise BadInputError(f"role {role!r} is not known; use one of {', '.join(ROLES)}")
    now = platform.clock.now()
    with platform.database.write() as uow:
        tenant = accounts.tenant_by_name(uow, tenant_name)
        key = next((k for k in accounts.list_keys(uow, tenant.id)
                    if k.name == LINK_KEY_NAME and k.role == role and k.revoked_at is None),
                   None)
        key_id = key.id if key is not None else accounts.create_key(
            uow, tenant.id, role, LINK_KEY_NAME, now=now)[1]
        token, _ = _store(uow, "link", key_id, now,
                          timedelta(minutes=platform.settings.web_link_minutes))
    return token


def redeem_link(platform: Platform, token: str) -> IssuedSession:
    """Use a sign-in link once: it is deleted and a session starts in the same transaction."""
    now = platform.clock.now()
    lifetime = session_lifetime(platform)
    with platform.database.write() as uow:
        found = uow.web_sessions.find(token_digest(token), "link")
        if found is None:
            raise SessionRefusedError("this sign-in link is not valid or was used already; "
                                      "print a new one with `signalfactory web link`",
                                      reason="unknown_link")
        uow.web_sessions.delete(token_digest(token), "link")
        if found.expires_at <= now or found.key.revoked_at is not None:
            # the deletion above is kept: an expired link is of no use to anyone
            expired = SessionRefusedError("this sign-in link expired; print a new one with "
                                          "`signalfactory web link`", reason="expired_link")
        else:
            expired = None
            session, csrf = _store(uow, "session", found.key.id, now, lifetime)
    if expired is not None:
        raise expired
    return IssuedSession(session, csrf, now + lifetime, _principal(found.key))
