"""Exchange adapters and order sessions for bots.

A ccxt account's adapter is kept per process in the trading runtime and reused across ticks
(a ccxt client loads its markets once); a new active key builds a new one. A paper account's
exchange lives in memory, so it is built for each session from the stored state (balances
from its bots' positions, resting orders) with the prices the session trades at.
"""

from __future__ import annotations

from signalfactory.domain.errors import BadInputError
from signalfactory.domain.timeframes import Timeframe
from signalfactory.domain.trading.bots import Bot, ExchangeAccount
from signalfactory.domain.trading.costs import CostModel
from signalfactory.domain.trading.exchange import ExchangeOrder
from signalfactory.domain.trading.orders import OPEN, PARTIALLY_FILLED
from signalfactory.domain.trading.quotes import PriceSource
from signalfactory.domain.trading.records import CREDENTIAL_ACTIVE, PaperBook
from signalfactory.services.platform import Platform
from signalfactory.services.ports import UnitOfWork
from signalfactory.services.trading.accounts import account_in, active_credentials
from signalfactory.services.trading.execution import (
    Session,
    StageTimes,
    base_currency,
)
from signalfactory.services.trading.market import latest_quotes
from signalfactory.services.trading.ports import Exchange, ExchangeFactory


def factory_of(platform: Platform) -> ExchangeFactory:
    if platform.exchanges is None:
        raise BadInputError("this process cannot trade: its platform has no exchange factory",
                            rule="exchange")
    return platform.exchanges


def ccxt_exchange(platform: Platform, account: ExchangeAccount) -> Exchange:
    """The ccxt account's adapter (cached per process; a new active key builds a new one)."""
    factory = factory_of(platform)
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
    if credentials is None:
        raise BadInputError(f"exchange account {account.id} has no active API key: add one",
                            rule="credentials")
    exchange = factory(account, credentials)
    if cached is not None:
        cached[1].close()
    cache[account.id] = (version, exchange)
    return exchange


def paper_book(uow: UnitOfWork, account: ExchangeAccount, bot: Bot,
               prices: PriceSource) -> PaperBook:
    """A paper account as stored: quote cash and base holdings from its bots' positions
    (the exchange's view: a short's proceeds count as cash), resting orders."""
    quote = account.initial_cash
    balances: dict[str, float] = {}
    for other in uow.bots.find(account_id=account.id):
        for p in uow.positions.find(bot_id=other.id):
            quote += p.realised_pnl - p.quantity * p.average_price
            if p.quantity:
                base = base_currency(p.symbol) or p.symbol
                balances[base] = balances.get(base, 0.0) + p.quantity
    balances[account.quote_currency] = quote
    resting = tuple(
        ExchangeOrder(exchange_order_id=o.exchange_order_id, client_order_id=o.client_order_id,
                      symbol=o.symbol, side=o.side, type=o.type, amount=o.quantity,
                      filled=o.filled_quantity, average_price=o.average_price, status=OPEN,
                      fee=o.fee, updated_at=o.updated_at, price=o.limit_price)
        for o in uow.orders.find(account_id=account.id, statuses=[OPEN, PARTIALLY_FILLED],
                                 limit=10_000)
        if o.exchange_order_id is not None)
    costs = CostModel(fee_pct=bot.fee_pct, fee_fixed=bot.fee_fixed,
                      slippage_bps=bot.slippage_bps)
    return PaperBook(balances=balances, prices=prices, costs=costs, open_orders=resting,
                     allow_short=bot.direction != "long")


def open_session(platform: Platform, bot: Bot, *, prices: PriceSource | None = None,
                 timer: StageTimes | None = None, fetch_balance: bool = True) -> Session:
    """A session for the bot's orders: its account's adapter and markets, and (ccxt) the
    account's free quote balance for the capital ledger. ``prices``: what a paper exchange
    fills at (default: the newest stored closes of the bot's symbols)."""
    with platform.database.read(primary=True) as uow:
        account = account_in(uow, bot.tenant_id, bot.account_id)
        if account.kind == "paper":
            factory = factory_of(platform)
            if prices is None:
                runtime = uow.bots.runtime(bot.id)
                prices = latest_quotes(uow, Timeframe.parse(bot.timeframe), bot.symbols,
                                       runtime.last_bar_ns if runtime else 0)
            exchange = factory(account, None, paper=paper_book(uow, account, bot, prices))
    if account.kind != "paper":
        exchange = ccxt_exchange(platform, account)
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
