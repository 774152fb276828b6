"""Exchange accounts and their credential slots in SQL (``ExchangeAccountRepository``).

Credentials arrive sealed; this module stores and returns the sealed bytes as they are and
never sees clear text.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from signalfactory.adapters.storage.jobs import as_utc, dialect_insert
from signalfactory.adapters.storage.tables_trading import exchange_accounts, exchange_credentials
from signalfactory.domain.errors import ConflictError
from signalfactory.domain.trading.bots import AccountKind, ExchangeAccount
from signalfactory.domain.trading.records import ExchangeCredential, NewExchangeAccount


def utc(value: datetime | None) -> datetime:
    """A NOT NULL time column as an aware UTC datetime."""
    found = as_utc(value)
    if found is None:
        raise ValueError("a NOT NULL time column came back empty")
    return found


_LOCK = (sa.select(exchange_accounts.c.id)
         .where(exchange_accounts.c.id == sa.bindparam("account_id")).with_for_update())


def _account(row: sa.RowMapping) -> ExchangeAccount:
    return ExchangeAccount(
        id=int(row["id"]), tenant_id=int(row["tenant_id"]), name=row["name"],
        kind=cast(AccountKind, row["kind"]), exchange=row["exchange"],
        quote_currency=row["quote_currency"], created_at=utc(row["created_at"]),
        options=dict(row["options"] or {}), initial_cash=float(row["initial_cash"]))


def _credential(row: sa.RowMapping) -> ExchangeCredential:
    return ExchangeCredential(
        account_id=int(row["account_id"]), slot=int(row["slot"]), status=row["status"],
        key_hint=row["key_hint"], sealed=bytes(row["sealed"]),
        created_at=utc(row["created_at"]), changed_at=utc(row["changed_at"]))


class SqlExchangeAccountRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add(self, account: NewExchangeAccount, now: datetime) -> ExchangeAccount:
        try:
            # A savepoint: a taken name leaves the caller's transaction usable.
            with self.conn.begin_nested():
                inserted = self.conn.execute(exchange_accounts.insert().values(
                    tenant_id=account.tenant_id, name=account.name, kind=account.kind,
                    exchange=account.exchange, quote_currency=account.quote_currency,
                    options=dict(account.options), initial_cash=account.initial_cash,
                    created_at=now))
                new_id = int(inserted.inserted_primary_key[0])  # type: ignore[index]
        except IntegrityError:
            raise ConflictError(f"an exchange account named {account.name!r} exists; choose "
                                "another name") from None
        found = self.get(account.tenant_id, new_id)
        if found is None:  # cannot happen inside one transaction; keeps the type honest
            raise ConflictError(f"exchange account {new_id} vanished while being stored")
        return found

    def get(self, tenant_id: int | None, account_id: int) -> ExchangeAccount | None:
        query = sa.select(exchange_accounts).where(exchange_accounts.c.id == account_id)
        if tenant_id is not None:
            query = query.where(exchange_accounts.c.tenant_id == tenant_id)
        row = self.conn.execute(query).mappings().first()
        return _account(row) if row is not None else None

    def find(self, tenant_id: int | None) -> list[ExchangeAccount]:
        query = sa.select(exchange_accounts).order_by(exchange_accounts.c.id)
        if tenant_id is not None:
            query = query.where(exchange_accounts.c.tenant_id == tenant_id)
        return [_account(r) for r in self.conn.execute(query).mappings()]

    def lock(self, account_id: int) -> None:
        if self.conn.dialect.name == "postgresql":
            self.conn.execute(_LOCK, {"account_id": account_id})

    def credentials(self, account_id: int) -> list[ExchangeCredential]:
        rows = self.conn.execute(
            sa.select(exchange_credentials)
            .where(exchange_credentials.c.account_id == account_id)
            .order_by(exchange_credentials.c.slot)).mappings()
        return [_credential(r) for r in rows]

    def put_credential(self, credential: ExchangeCredential) -> None:
        values = {"account_id": credential.account_id, "slot": credential.slot,
                  "status": credential.status, "key_hint": credential.key_hint,
                  "sealed": credential.sealed, "created_at": credential.created_at,
                  "changed_at": credential.changed_at}
        stmt = dialect_insert(self.conn, exchange_credentials).values(**values)
        self.conn.execute(stmt.on_conflict_do_update(
            index_elements=["account_id", "slot"],
            set_={k: v for k, v in values.items() if k not in ("account_id", "slot")}))

    def set_credential_status(self, account_id: int, slot: int, status: str,
                              now: datetime) -> None:
        self.conn.execute(exchange_credentials.update().where(
            exchange_credentials.c.account_id == account_id,
            exchange_credentials.c.slot == slot).values(status=status, changed_at=now))
