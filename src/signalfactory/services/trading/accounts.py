"""Exchange accounts of tenants and their API keys.

Keys are sealed with the platform's secret box (AES-256-GCM) before they reach a repository
and opened only to build an exchange adapter; no listing, log line or audit entry carries
them (a slot shows the last four characters of its key). Each account has two slots so a new
key can be added while the old one still works: the second key waits as ``standby`` and is
promoted to ``active`` when the active key is revoked. Another tenant's account answers
exactly like a missing one.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from signalfactory.domain.errors import BadInputError, ConflictError, NotFoundError
from signalfactory.domain.trading.bots import AccountKind, ExchangeAccount
from signalfactory.domain.trading.records import (
    CREDENTIAL_ACTIVE,
    CREDENTIAL_REVOKED,
    CREDENTIAL_SLOTS,
    CREDENTIAL_STANDBY,
    Credentials,
    ExchangeCredential,
    NewExchangeAccount,
)
from signalfactory.services.delivery.ports import SecretBox
from signalfactory.services.platform import Platform
from signalfactory.services.ports import UnitOfWork
from signalfactory.services.trading import events

ACCOUNT_KINDS: tuple[AccountKind, ...] = ("paper", "ccxt")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,99}")
_EXCHANGE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_CURRENCY = re.compile(r"[A-Z0-9]{2,16}")
#: option names that look like secrets: they belong in the sealed credentials
_SECRET_OPTION = re.compile(r"(?i)(secret|password|passphrase|api_?key|token|private)")
MAX_KEY_CHARS = 512
MAX_OPTIONS_CHARS = 4000


@dataclass(frozen=True)
class CredentialSlot:
    """A slot as anyone may see it: never the key or secret."""

    slot: int
    status: str
    key_hint: str
    created_at: datetime
    changed_at: datetime


def key_hint(api_key: str) -> str:
    return "…" + api_key[-4:] if len(api_key) > 8 else "…"


def secret_box(platform: Platform) -> SecretBox:
    if platform.secret_box is None:
        raise BadInputError("exchange API keys need an encryption key: set "
                            "SIGNALFACTORY_DELIVERY_KEY (or _FILE) to 32 random bytes, "
                            "base64-encoded", rule="encryption-key")
    return platform.secret_box


def _slot(credential: ExchangeCredential) -> CredentialSlot:
    return CredentialSlot(credential.slot, credential.status, credential.key_hint,
                          credential.created_at, credential.changed_at)


def _check_name(name: str) -> str:
    name = name.strip()
    if not _NAME.fullmatch(name):
        raise BadInputError("account name must be 1..100 of letters, digits, space, '_', '.' "
                            "or '-', starting with a letter or digit", rule="name")
    return name


def _check_options(options: dict[str, object] | None) -> dict[str, object]:
    options = dict(options or {})
    for key in options:
        if _SECRET_OPTION.search(key):
            raise BadInputError(f"option {key!r} looks like a secret; pass keys and secrets as "
                                "credentials, which are stored encrypted", rule="options")
    try:
        text = json.dumps(options, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise BadInputError(f"options must be plain JSON ({exc})", rule="options") from None
    if len(text) > MAX_OPTIONS_CHARS:
        raise BadInputError(f"options must stay under {MAX_OPTIONS_CHARS} characters of JSON",
                            rule="options")
    return cast(dict[str, object], json.loads(text))


def _check_key(api_key: str, secret: str, password: str | None) -> Credentials:
    for what, value in (("API key", api_key), ("secret", secret), ("password", password)):
        if value is None:
            continue
        if not value or len(value) > MAX_KEY_CHARS or not value.isprintable() or (
                value.strip() != value):
            raise BadInputError(f"the {what} must be 1..{MAX_KEY_CHARS} printable characters "
                                "without surrounding spaces", rule="credentials")
    return Credentials(api_key=api_key, secret=secret, password=password or None)


def _seal(box: SecretBox, credentials: Credentials) -> bytes:
    return box.seal(json.dumps({"api_key": credentials.api_key, "secret": credentials.secret,
                                "password": credentials.password}).encode())


def _unseal(box: SecretBox, sealed: bytes) -> Credentials:
    values = json.loads(box.open(sealed))
    return Credentials(api_key=values["api_key"], secret=values["secret"],
                       password=values.get("password"))


def create_account(platform: Platform, tenant_id: int, *, name: str, kind: str,
                   exchange: str | None = None, quote_currency: str = "USDT",
                   options: dict[str, object] | None = None, initial_cash: float = 0.0,
                   api_key: str | None = None, secret: str | None = None,
                   password: str | None = None, actor: str = "system") -> ExchangeAccount:
    """Check and store an account; a ccxt account's key goes into slot 1 as ``active``."""
    name = _check_name(name)
    account_kind = next((k for k in ACCOUNT_KINDS if k == kind), None)
    if account_kind is None:
        raise BadInputError(f"account kind must be one of {', '.join(ACCOUNT_KINDS)}",
                            rule="kind")
    exchange = "paper" if account_kind == "paper" else (exchange or "").strip().lower()
    if not _EXCHANGE.fullmatch(exchange):
        raise BadInputError("a ccxt account names its exchange by ccxt id, e.g. 'binance'",
                            rule="exchange")
    quote = quote_currency.strip().upper()
    if not _CURRENCY.fullmatch(quote):
        raise BadInputError("quote currency must be 2..16 of A-Z and 0-9, e.g. USDT",
                            rule="quote_currency")
    if account_kind == "paper":
        if not (math.isfinite(initial_cash) and initial_cash > 0):
            raise BadInputError("a paper account needs a positive initial cash",
                                rule="initial_cash")
        if api_key or secret:
            raise BadInputError("a paper account takes no API key", rule="credentials")
    elif initial_cash:
        raise BadInputError("a ccxt account's cash is what the exchange holds; leave initial "
                            "cash at 0", rule="initial_cash")
    checked_options = _check_options(options)
    sealed: bytes | None = None
    credentials: Credentials | None = None
    if api_key is not None or secret is not None:
        credentials = _check_key(api_key or "", secret or "", password)
        sealed = _seal(secret_box(platform), credentials)
    now = platform.clock.now()
    with platform.database.write() as uow:
        account = uow.exchange_accounts.add(NewExchangeAccount(
            tenant_id=tenant_id, name=name, kind=account_kind, exchange=exchange,
            quote_currency=quote, options=checked_options, initial_cash=float(initial_cash)),
            now)
        if credentials is not None and sealed is not None:
            uow.exchange_accounts.put_credential(ExchangeCredential(
                account.id, 1, CREDENTIAL_ACTIVE, key_hint(credentials.api_key), sealed, now,
                now))
        events.record(platform, uow, actor=actor, action=events.ACCOUNT_CREATED,
                      subject=f"exchange_account:{account.id}", tenant_id=tenant_id,
                      details={"name": name, "kind": kind, "exchange": exchange,
                               "with_key": credentials is not None})
    return account


def get_account(platform: Platform, tenant_id: int | None, account_id: int) -> ExchangeAccount:
    with platform.database.read(primary=True) as uow:
        return account_in(uow, tenant_id, account_id)


def account_in(uow: UnitOfWork, tenant_id: int | None, account_id: int) -> ExchangeAccount:
    found = uow.exchange_accounts.get(tenant_id, account_id)
    if found is None:
        raise NotFoundError(f"no exchange account {account_id}")
    return found


def list_accounts(platform: Platform, tenant_id: int) -> list[ExchangeAccount]:
    with platform.database.read() as uow:
        return uow.exchange_accounts.find(tenant_id)


def credential_slots(platform: Platform, tenant_id: int, account_id: int
                     ) -> list[CredentialSlot]:
    with platform.database.read(primary=True) as uow:
        account_in(uow, tenant_id, account_id)
        return [_slot(c) for c in uow.exchange_accounts.credentials(account_id)]


def add_credentials(platform: Platform, tenant_id: int, account_id: int, *, api_key: str,
                    secret: str, password: str | None = None,
                    actor: str = "system") -> CredentialSlot:
    """Store a key in a free slot (empty or revoked): ``active`` when the account has no
    active key, else ``standby`` (promoted when the active one is revoked)."""
    credentials = _check_key(api_key, secret, password)
    sealed = _seal(secret_box(platform), credentials)
    now = platform.clock.now()
    with platform.database.write() as uow:
        account = account_in(uow, tenant_id, account_id)
        if account.kind != "ccxt":
            raise BadInputError("a paper account takes no API key", rule="credentials")
        stored = {c.slot: c for c in uow.exchange_accounts.credentials(account_id)}
        free = [s for s in CREDENTIAL_SLOTS
                if s not in stored or stored[s].status == CREDENTIAL_REVOKED]
        if not free:
            raise ConflictError("both key slots are in use: revoke one of the keys first",
                                rule="credentials")
        has_active = any(c.status == CREDENTIAL_ACTIVE for c in stored.values())
        credential = ExchangeCredential(
            account_id, free[0], CREDENTIAL_STANDBY if has_active else CREDENTIAL_ACTIVE,
            key_hint(credentials.api_key), sealed, now, now)
        uow.exchange_accounts.put_credential(credential)
        events.record(platform, uow, actor=actor, action=events.CREDENTIAL_ADDED,
                      subject=f"exchange_account:{account_id}", tenant_id=tenant_id,
                      details={"slot": credential.slot, "status": credential.status,
                               "key_hint": credential.key_hint})
    return _slot(credential)


def revoke_credentials(platform: Platform, tenant_id: int, account_id: int, slot: int, *,
                       actor: str = "system") -> list[CredentialSlot]:
    """Revoke a slot's key; when it was the active one, the standby key becomes active.
    Returns the account's slots afterwards."""
    if slot not in CREDENTIAL_SLOTS:
        raise BadInputError(f"slot must be one of {CREDENTIAL_SLOTS}", rule="slot")
    now = platform.clock.now()
    with platform.database.write() as uow:
        account_in(uow, tenant_id, account_id)
        stored = {c.slot: c for c in uow.exchange_accounts.credentials(account_id)}
        target = stored.get(slot)
        if target is None or target.status == CREDENTIAL_REVOKED:
            raise ConflictError(f"slot {slot} holds no key to revoke", rule="slot")
        uow.exchange_accounts.set_credential_status(account_id, slot, CREDENTIAL_REVOKED, now)
        promoted = None
        if target.status == CREDENTIAL_ACTIVE:
            promoted = next((c for c in stored.values()
                             if c.slot != slot and c.status == CREDENTIAL_STANDBY), None)
            if promoted is not None:
                uow.exchange_accounts.set_credential_status(account_id, promoted.slot,
                                                            CREDENTIAL_ACTIVE, now)
        events.record(platform, uow, actor=actor, action=events.CREDENTIAL_REVOKED,
                      subject=f"exchange_account:{account_id}", tenant_id=tenant_id,
                      details={"slot": slot, "key_hint": target.key_hint,
                               "promoted_slot": promoted.slot if promoted else None})
        if promoted is not None:
            events.record(platform, uow, actor=actor, action=events.CREDENTIAL_PROMOTED,
                          subject=f"exchange_account:{account_id}", tenant_id=tenant_id,
                          details={"slot": promoted.slot, "key_hint": promoted.key_hint})
        slots = [_slot(c) for c in uow.exchange_accounts.credentials(account_id)]
    return slots


def active_credentials(platform: Platform, uow: UnitOfWork,
                       account: ExchangeAccount) -> Credentials | None:
    """The account's active key, opened (for the exchange adapter only)."""
    active = next((c for c in uow.exchange_accounts.credentials(account.id)
                   if c.status == CREDENTIAL_ACTIVE), None)
    if active is None:
        return None
    return _unseal(secret_box(platform), active.sealed)
