"""Exchange adapters and order sessions for bots.

Adapters are kept per account in the process's trading runtime and reused across ticks (a
ccxt client loads its markets once), and rebuilt when the account's active key changes.
"""

from __future__ import annotations

from signalfactory.domain.errors import BadInputError
from signalfactory.domain.trading.bots import Bot, ExchangeAccount
from signalfactory.domain.trading.records import CREDENTIAL_ACTIVE
from signalfactory.services.platform import Platform
from signalfactory.services.trading.accounts import account_in, active_credentials
from signalfactory.services.trading.execution import Session, StageTimes
from signalfactory.services.trading.ports import Exchange


def exchange_for(platform: Platform, account: ExchangeAccount) -> Exchange:
    """The account's adapter (cached per process; a new active key builds a new one)."""
    if platform.exchanges is None:
        raise BadInputError("this process cannot trade: its platform has no exchange factory",
                            rule="exchange")
    with platform.database.read(primary=True) as uow:
        stored = uow.exchange_accounts.credentials(account.id)
        active = next((c for c in stored if c.status == CREDENTIAL_ACTIVE), None)
        version = (account.id, active.slot if active else 0,
                   active.changed_at.isoformat() if active else "")
        cache = platform.trading.exchanges
        cached = cache.get(account.id)
        if cached is not None and cached[0] == version:
            return cached[1]
        credentials = active_credentials(platform, uow, account)
    if account.kind == "ccxt" and credentials is None:
        raise BadInputError(f"exchange account {account.id} has no active API key: add one",
                            rule="credentials")
    exchange = platform.exchanges(account, credentials)
    if cached is not None:
        cached[1].close()
    cache[account.id] = (version, exchange)
    return exchange


def open_session(platform: Platform, bot: Bot, *, timer: StageTimes | None = None,
                 fetch_balance: bool = True) -> Session:
    """A session for the bot's orders: its account's adapter and markets, and (ccxt) the
    account's free quote balance for the capital ledger."""
    with platform.database.read(primary=True) as uow:
        account = account_in(uow, bot.tenant_id, bot.account_id)
    exchange = exchange_for(platform, account)
    markets = exchange.markets()
    cash = None
    if account.kind != "paper" and fetch_balance:
        cash = float(exchange.balances().get(account.quote_currency, 0.0))
    return Session(platform=platform, bot=bot, account=account, exchange=exchange,
                   markets=markets, account_cash=cash, timer=timer)


def close_exchanges(platform: Platform) -> None:
    """Close every cached adapter (a worker stopping)."""
    cache = platform.trading.exchanges
    for _version, exchange in list(cache.values()):
        exchange.close()
    cache.clear()
