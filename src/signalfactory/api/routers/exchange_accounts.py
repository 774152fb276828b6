"""Exchange accounts over HTTP at ``/api/v1/accounts`` (paper or ccxt) and their API keys.

The path does not collide with the tenant's own account routes (``/api/v1/me``,
``/api/v1/keys`` in ``account.py``). Keys are write-only: a request carries the key and
secret, every answer shows a slot's status and the last four characters of its key, never
the key or the secret (nor does any log line or audit entry). Reading needs any role; adding
accounts and keys needs ``trader``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field, SecretStr

from signalfactory.api.auth import PrincipalDep, TraderDep
from signalfactory.api.deps import PlatformDep
from signalfactory.api.schemas import AUTH_RESPONSES, Problem, RequestModel
from signalfactory.domain.trading.bots import ExchangeAccount
from signalfactory.services.trading import accounts as service

router = APIRouter(prefix="/api/v1", tags=["trading"], responses=AUTH_RESPONSES)

ACCOUNT_ID = Path(ge=1, le=2**31 - 1)
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such exchange account in this tenant"}}


class KeyIn(RequestModel):
    api_key: SecretStr = Field(min_length=1, max_length=service.MAX_KEY_CHARS)
    secret: SecretStr = Field(min_length=1, max_length=service.MAX_KEY_CHARS)
    password: SecretStr | None = Field(default=None, max_length=service.MAX_KEY_CHARS,
                                       description="Passphrase, for exchanges that use one")


class AccountIn(RequestModel):
    name: str = Field(min_length=1, max_length=100, examples=["binance-main"])
    kind: Literal["paper", "ccxt"]
    exchange: str | None = Field(default=None, max_length=64,
                                 description="ccxt exchange id (ccxt accounts), e.g. binance")
    quote_currency: str = Field(default="USDT", min_length=2, max_length=16)
    initial_cash: float = Field(default=0.0, ge=0, allow_inf_nan=False,
                                description="Paper accounts: starting cash")
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="Adapter options that are not secret")
    key: KeyIn | None = Field(default=None, description="ccxt accounts: the first API key")


class SlotOut(BaseModel):
    slot: int
    status: str = Field(description="active | standby | revoked")
    key_hint: str = Field(description="The key's last four characters")
    created_at: datetime
    changed_at: datetime

    @classmethod
    def of(cls, slot: service.CredentialSlot) -> SlotOut:
        return cls(slot=slot.slot, status=slot.status, key_hint=slot.key_hint,
                   created_at=slot.created_at, changed_at=slot.changed_at)


class AccountOut(BaseModel):
    id: int
    name: str
    kind: str
    exchange: str
    quote_currency: str
    initial_cash: float
    options: dict[str, Any]
    created_at: datetime
    keys: list[SlotOut] = Field(default_factory=list)

    @classmethod
    def of(cls, account: ExchangeAccount, slots: list[service.CredentialSlot] | None = None
           ) -> AccountOut:
        return cls(id=account.id, name=account.name, kind=account.kind,
                   exchange=account.exchange, quote_currency=account.quote_currency,
                   initial_cash=account.initial_cash, options=dict(account.options),
                   created_at=account.created_at, keys=[SlotOut.of(s) for s in slots or []])


class AccountList(BaseModel):
    items: list[AccountOut]


def _open(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


@router.post("/accounts", response_model=AccountOut, status_code=201,
             summary="Add an exchange account (paper, or ccxt with its first API key)")
def post_account(body: AccountIn, principal: TraderDep, platform: PlatformDep) -> AccountOut:
    account = service.create_account(
        platform, principal.tenant_id, name=body.name, kind=body.kind, exchange=body.exchange,
        quote_currency=body.quote_currency, options=body.options,
        initial_cash=body.initial_cash,
        api_key=_open(body.key.api_key) if body.key else None,
        secret=_open(body.key.secret) if body.key else None,
        password=_open(body.key.password) if body.key else None,
        actor=principal.audit_actor)
    return AccountOut.of(account, service.credential_slots(platform, principal.tenant_id,
                                                           account.id))


@router.get("/accounts", response_model=AccountList, summary="This tenant's exchange accounts")
def list_accounts(principal: PrincipalDep, platform: PlatformDep) -> AccountList:
    return AccountList(items=[AccountOut.of(a) for a in
                              service.list_accounts(platform, principal.tenant_id)])


@router.get("/accounts/{account_id}", response_model=AccountOut, responses=NOT_FOUND,
            summary="One exchange account with its key slots (never the keys)")
def get_account(principal: PrincipalDep, platform: PlatformDep,
                account_id: int = ACCOUNT_ID) -> AccountOut:
    account = service.get_account(platform, principal.tenant_id, account_id)
    return AccountOut.of(account, service.credential_slots(platform, principal.tenant_id,
                                                           account_id))


@router.post("/accounts/{account_id}/keys", response_model=SlotOut, status_code=201,
             responses=NOT_FOUND,
             summary="Add an API key: active, or standby beside the active one")
def post_key(body: KeyIn, principal: TraderDep, platform: PlatformDep,
             account_id: int = ACCOUNT_ID) -> SlotOut:
    return SlotOut.of(service.add_credentials(
        platform, principal.tenant_id, account_id, api_key=body.api_key.get_secret_value(),
        secret=body.secret.get_secret_value(), password=_open(body.password),
        actor=principal.audit_actor))


@router.delete("/accounts/{account_id}/keys/{slot}", response_model=list[SlotOut],
               responses=NOT_FOUND,
               summary="Revoke a key; a standby key is promoted when the active one goes")
def delete_key(principal: TraderDep, platform: PlatformDep, account_id: int = ACCOUNT_ID,
               slot: int = Path(ge=1, le=2)) -> list[SlotOut]:
    return [SlotOut.of(s) for s in service.revoke_credentials(
        platform, principal.tenant_id, account_id, slot, actor=principal.audit_actor)]
