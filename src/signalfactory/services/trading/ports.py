"""Ports of trading. The exchange port has two adapters of the same shape:
``adapters.exchanges.paper.PaperExchange`` and ``adapters.exchanges.ccxt_exchange.CcxtExchange``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from signalfactory.domain.trading.bots import Bot, ExchangeAccount, KillSwitch
from signalfactory.domain.trading.exchange import (
    ExchangeOrder,
    ExchangeTrade,
    Market,
    OrderRequest,
)
from signalfactory.domain.trading.orders import Fill, Order, Position
from signalfactory.domain.trading.records import (
    BotMark,
    BotRuntime,
    Credentials,
    ExchangeCredential,
    NewBot,
    NewExchangeAccount,
    NewOrder,
    OrderUpdate,
    PaperBook,
    TradingState,
)

if TYPE_CHECKING:
    from signalfactory.services.ports import UnitOfWork


class Exchange(Protocol):
    """One exchange account. Errors: ``ExchangeRejectedError`` (never retried),
    ``ExchangeUnavailableError`` (retried by the caller's policy), ``ExchangeOperationalError``.

    ``create_order`` must be safe to call again with the same ``client_order_id`` after a lost
    response: callers first ``fetch_order(client_order_id=...)`` when in doubt.
    """

    @property
    def name(self) -> str: ...

    def markets(self) -> Mapping[str, Market]: ...

    def balances(self) -> Mapping[str, float]:
        """Free + locked amount per currency."""
        ...

    def create_order(self, request: OrderRequest) -> ExchangeOrder: ...

    def fetch_order(self, symbol: str, *, client_order_id: str | None = None,
                    exchange_order_id: str | None = None) -> ExchangeOrder | None:
        """The order, or None when the exchange has no order with that id."""
        ...

    def fetch_open_orders(self, symbol: str | None = None) -> Sequence[ExchangeOrder]: ...

    def cancel_order(self, symbol: str, *, client_order_id: str | None = None,
                     exchange_order_id: str | None = None) -> ExchangeOrder | None: ...

    def fetch_my_trades(self, symbol: str,
                        since: datetime | None = None) -> Sequence[ExchangeTrade]: ...

    def close(self) -> None: ...


class AuditRecorder(Protocol):
    """Appends one audit entry in the caller's unit of work (``services.audit.record``'s
    shape). Called as the last write of the transaction it records."""

    def __call__(self, uow: UnitOfWork, actor: str, action: str, subject: str,
                 details: Mapping[str, object] | None = None,
                 tenant_id: int | None = None) -> object: ...


class ExchangeFactory(Protocol):
    """Builds the exchange adapter of one account (``platform.exchanges``): paper accounts
    get the paper exchange, ccxt accounts the ccxt connector with the opened credentials."""

    def __call__(self, account: ExchangeAccount, credentials: Credentials | None, *,
                 paper: PaperBook | None = None) -> Exchange:
        """``paper``: a paper account's state and prices (required for paper accounts,
        whose exchange lives in memory for one tick and is rebuilt from the database)."""
        ...


# -- repositories (one per aggregate, bound to a unit of work) ------------------------------

class ExchangeAccountRepository(Protocol):
    """Exchange accounts of tenants and their two credential slots (sealed bytes only)."""

    def add(self, account: NewExchangeAccount, now: datetime) -> ExchangeAccount:
        """Store a new account (ConflictError when the tenant has one of that name)."""
        ...

    def get(self, tenant_id: int | None, account_id: int) -> ExchangeAccount | None:
        """The account, if it belongs to ``tenant_id`` (any tenant when None)."""
        ...

    def find(self, tenant_id: int | None) -> list[ExchangeAccount]:
        """Accounts of one tenant (every tenant when None), by id."""
        ...

    def lock(self, account_id: int) -> None:
        """Serialise capital reservations on this account until the unit of work ends
        (PostgreSQL: a row lock; SQLite's write transaction is already exclusive)."""
        ...

    def credentials(self, account_id: int) -> list[ExchangeCredential]:
        """The account's stored slots, by slot number."""
        ...

    def put_credential(self, credential: ExchangeCredential) -> None:
        """Store a slot (replacing what the slot held)."""
        ...

    def set_credential_status(self, account_id: int, slot: int, status: str,
                              now: datetime) -> None: ...


class BotRepository(Protocol):
    """Bots, their run status, and the runner's bookkeeping (lease, progress)."""

    def add(self, bot: NewBot, now: datetime) -> Bot:
        """Store a stopped bot (ConflictError when the tenant has one of that name)."""
        ...

    def get(self, tenant_id: int | None, bot_id: int) -> Bot | None: ...

    def find(self, *, tenant_id: int | None = None, status: str | None = None,
             account_id: int | None = None) -> list[Bot]:
        """Bots by id, optionally of one tenant, run status and account."""
        ...

    def set_status(self, bot_id: int, status: str, now: datetime) -> None:
        """``running`` (also records ``started_at``) or ``stopped``."""
        ...

    def runtime(self, bot_id: int) -> BotRuntime | None: ...

    def acquire_lease(self, bot_id: int, owner: str, until: datetime, now: datetime) -> bool:
        """Take or renew the runner lease: succeeds when the lease is free, expired or
        ``owner``'s own. One active runner per bot."""
        ...

    def release_lease(self, bot_id: int, owner: str) -> None:
        """Give the lease up if ``owner`` holds it."""
        ...

    def set_progress(self, bot_id: int, last_bar_ns: int) -> None:
        """Record the newest bar decided on (never moves back)."""
        ...

    def set_reconciled(self, bot_id: int, now: datetime) -> None: ...


class OrderRepository(Protocol):
    """Orders and their fills. An order is written ``pending`` before the exchange call;
    (account, client order id) and (account, trade id) are unique."""

    def add_pending(self, order: NewOrder, now: datetime) -> tuple[Order, bool]:
        """Insert a pending order; with its client order id already on the account store
        nothing and return that row. Returns ``(order, created)``."""
        ...

    def add_pending_many(self, orders: Sequence[NewOrder], now: datetime
                         ) -> list[tuple[Order, bool]]:
        """``add_pending`` for a batch in one statement (a client order id given twice: the
        second finds the first), in the batch's order. ``NewOrder.status`` may be
        ``rejected`` (a refusal stored as it is decided)."""
        ...

    def get(self, tenant_id: int | None, order_id: int) -> Order | None: ...

    def by_client_id(self, account_id: int, client_order_id: str) -> Order | None: ...

    def update(self, order_id: int, update: OrderUpdate, now: datetime) -> Order:
        """Apply what the exchange said; a terminal status also releases the reservation.
        A terminal order never changes status again."""
        ...

    def update_many(self, updates: Sequence[tuple[int, OrderUpdate]], now: datetime
                    ) -> list[Order]:
        """``update`` for a batch; returns the orders afterwards, in the batch's order."""
        ...

    def find(self, *, tenant_id: int | None = None, bot_id: int | None = None,
             account_id: int | None = None, statuses: Sequence[str] | None = None,
             symbol: str | None = None, limit: int = 100, offset: int = 0) -> list[Order]:
        """Orders newest first."""
        ...

    def count_since(self, bot_id: int, since: datetime) -> int:
        """Orders the bot created at or after ``since`` (the order-rate limit)."""
        ...

    def reserved(self, *, account_id: int | None = None, bot_id: int | None = None) -> float:
        """Cash set aside by orders that have not ended, on an account or of a bot."""
        ...

    def add_fill(self, fill: Fill) -> bool:
        """Store an exchange trade; False when (account, trade id) is already stored."""
        ...

    def add_fills(self, fills: Sequence[Fill]) -> list[bool]:
        """``add_fill`` for a batch in one statement: per fill, whether it was new."""
        ...

    def fills(self, *, order_id: int | None = None, bot_id: int | None = None,
              account_id: int | None = None, limit: int = 1000) -> list[Fill]:
        """Fills oldest first."""
        ...

    def has_fill(self, account_id: int, trade_id: str) -> bool: ...


class PositionRepository(Protocol):
    def get(self, bot_id: int, symbol: str) -> Position | None: ...

    def find(self, *, tenant_id: int | None = None, bot_id: int | None = None,
             open_only: bool = False) -> list[Position]:
        """Positions by bot and symbol; ``open_only`` leaves out flat ones."""
        ...

    def put(self, position: Position) -> None:
        """Insert or replace the bot's position in ``position.symbol``."""
        ...

    def put_many(self, positions: Sequence[Position]) -> None:
        """``put`` for a batch in one statement (one row per bot and symbol)."""
        ...


class TradingStateRepository(Protocol):
    """Trading states and kill switches per scope (``global``/0, ``tenant``/id, ``bot``/id)."""

    def states(self, scopes: Sequence[tuple[str, int]]) -> list[TradingState]:
        """The stored states of these scopes (a scope never set is absent: active)."""
        ...

    def put_state(self, state: TradingState) -> None: ...

    def kill_switches(self, scopes: Sequence[tuple[str, int]] | None = None
                      ) -> list[KillSwitch]:
        """Stored kill switches of these scopes (all when None)."""
        ...

    def put_kill_switch(self, switch: KillSwitch) -> None: ...


class BotMarkRepository(Protocol):
    """Equity marks per bot: the equity curve, PnL and drawdown are read from these."""

    def add(self, mark: BotMark) -> None:
        """Store a mark (replacing one of the same bot and time)."""
        ...

    def series(self, bot_id: int, *, since: datetime | None = None,
               until: datetime | None = None) -> list[BotMark]:
        """Marks oldest first."""
        ...

    def latest(self, bot_id: int) -> BotMark | None: ...
