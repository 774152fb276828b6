"""Trading repositories in memory: exchange accounts and credentials, bots, orders and
fills, positions, trading states and kill switches, equity marks.

They keep the SQL repositories' contract (tests/trading_repository_contract.py runs the same
checks on both): the same unique keys, the same orderings, a terminal order never reopens.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from signalfactory.domain.errors import ConflictError, NotFoundError
from signalfactory.domain.trading.bots import ACTIVE, BOT, RUNNING, Bot, ExchangeAccount, KillSwitch
from signalfactory.domain.trading.orders import PENDING, TERMINAL_STATUSES, Fill, Order, Position
from signalfactory.domain.trading.records import (
    BotMark,
    BotRuntime,
    ExchangeCredential,
    NewBot,
    NewExchangeAccount,
    NewOrder,
    OrderUpdate,
    TradingState,
)
from signalfactory.testing.memory import MemoryState

Scope = tuple[str, int]


@dataclass
class TradingStore:
    accounts: dict[int, ExchangeAccount] = field(default_factory=dict)
    credentials: dict[tuple[int, int], ExchangeCredential] = field(default_factory=dict)
    bots: dict[int, Bot] = field(default_factory=dict)
    runtimes: dict[int, BotRuntime] = field(default_factory=dict)
    orders: dict[int, Order] = field(default_factory=dict)
    fills: dict[tuple[int, str], Fill] = field(default_factory=dict)
    positions: dict[tuple[int, str], Position] = field(default_factory=dict)
    states: dict[Scope, TradingState] = field(default_factory=dict)
    switches: dict[Scope, KillSwitch] = field(default_factory=dict)
    marks: dict[tuple[int, datetime], BotMark] = field(default_factory=dict)
    next_id: dict[str, int] = field(default_factory=dict)

    def new_id(self, kind: str) -> int:
        self.next_id[kind] = self.next_id.get(kind, 0) + 1
        return self.next_id[kind]


def _store(state: MemoryState) -> TradingStore:
    return state.store("trading", TradingStore)


class MemoryExchangeAccountRepository:
    def __init__(self, state: MemoryState) -> None:
        self.data = _store(state)

    def add(self, account: NewExchangeAccount, now: datetime) -> ExchangeAccount:
        if any(a.tenant_id == account.tenant_id and a.name == account.name
               for a in self.data.accounts.values()):
            raise ConflictError(f"an exchange account named {account.name!r} exists; choose "
                                "another name")
        row = ExchangeAccount(id=self.data.new_id("account"), tenant_id=account.tenant_id,
                              name=account.name, kind=account.kind, exchange=account.exchange,
                              quote_currency=account.quote_currency, created_at=now,
                              options=dict(account.options), initial_cash=account.initial_cash)
        self.data.accounts[row.id] = row
        return row

    def get(self, tenant_id: int | None, account_id: int) -> ExchangeAccount | None:
        found = self.data.accounts.get(account_id)
        if found is None or (tenant_id is not None and found.tenant_id != tenant_id):
            return None
        return found

    def find(self, tenant_id: int | None) -> list[ExchangeAccount]:
        return [a for _, a in sorted(self.data.accounts.items())
                if tenant_id is None or a.tenant_id == tenant_id]

    def lock(self, account_id: int) -> None:
        """A memory write transaction is exclusive already."""

    def credentials(self, account_id: int) -> list[ExchangeCredential]:
        return [c for (a, _), c in sorted(self.data.credentials.items()) if a == account_id]

    def put_credential(self, credential: ExchangeCredential) -> None:
        self.data.credentials[(credential.account_id, credential.slot)] = credential

    def set_credential_status(self, account_id: int, slot: int, status: str,
                              now: datetime) -> None:
        found = self.data.credentials.get((account_id, slot))
        if found is not None:
            self.data.credentials[(account_id, slot)] = dataclasses.replace(
                found, status=status, changed_at=now)


class MemoryBotRepository:
    def __init__(self, state: MemoryState) -> None:
        self.data = _store(state)

    def _with_state(self, bot: Bot) -> Bot:
        stored = self.data.states.get((BOT, bot.id))
        return dataclasses.replace(bot, state=stored.state if stored else ACTIVE)

    def add(self, bot: NewBot, now: datetime) -> Bot:
        if any(b.tenant_id == bot.tenant_id and b.name == bot.name
               for b in self.data.bots.values()):
            raise ConflictError(f"a bot named {bot.name!r} exists; choose another name")
        row = Bot(id=self.data.new_id("bot"), status="stopped", state=ACTIVE, created_at=now,
                  updated_at=now, **dataclasses.asdict(bot) | {"limits": bot.limits})
        self.data.bots[row.id] = row
        self.data.runtimes[row.id] = BotRuntime(
            bot_id=row.id, last_bar_ns=0, lease_owner=None,
            lease_until=None, started_at=None)
        return row

    def get(self, tenant_id: int | None, bot_id: int) -> Bot | None:
        found = self.data.bots.get(bot_id)
        if found is None or (tenant_id is not None and found.tenant_id != tenant_id):
            return None
        return self._with_state(found)

    def find(self, *, tenant_id: int | None = None, status: str | None = None,
             account_id: int | None = None) -> list[Bot]:
        return [self._with_state(b) for _, b in sorted(self.data.bots.items())
                if (tenant_id is None or b.tenant_id == tenant_id)
                and (status is None or b.status == status)
                and (account_id is None or b.account_id == account_id)]

    def set_status(self, bot_id: int, status: str, now: datetime) -> None:
        found = self.data.bots.get(bot_id)
        if found is None:
            return
        self.data.bots[bot_id] = dataclasses.replace(found, status=status, updated_at=now)
        if status == RUNNING:
            self._runtime_set(bot_id, started_at=now)

    def _runtime_set(self, bot_id: int, **changes: object) -> None:
        found = self.data.runtimes.get(bot_id)
        if found is not None:
            self.data.runtimes[bot_id] = dataclasses.replace(found, **changes)  # type: ignore[arg-type]

    def runtime(self, bot_id: int) -> BotRuntime | None:
        return self.data.runtimes.get(bot_id)

    def acquire_lease(self, bot_id: int, owner: str, until: datetime, now: datetime) -> bool:
        found = self.data.runtimes.get(bot_id)
        if found is None:
            return False
        free = (found.lease_owner is None or found.lease_owner == owner
                or (found.lease_until is not None and found.lease_until < now))
        if free:
            self._runtime_set(bot_id, lease_owner=owner, lease_until=until)
        return free

    def release_lease(self, bot_id: int, owner: str) -> None:
        found = self.data.runtimes.get(bot_id)
        if found is not None and found.lease_owner == owner:
            self._runtime_set(bot_id, lease_owner=None, lease_until=None)

    def set_progress(self, bot_id: int, last_bar_ns: int) -> None:
        found = self.data.runtimes.get(bot_id)
        if found is not None and found.last_bar_ns < last_bar_ns:
            self._runtime_set(bot_id, last_bar_ns=last_bar_ns)

    def set_reconciled(self, bot_id: int, now: datetime) -> None:
        self._runtime_set(bot_id, reconciled_at=now)


class MemoryOrderRepository:
    def __init__(self, state: MemoryState) -> None:
        self.data = _store(state)

    def add_pending(self, order: NewOrder, now: datetime) -> tuple[Order, bool]:
        found = self.by_client_id(order.account_id, order.client_order_id)
        if found is not None:
            return found, False
        row = Order(id=self.data.new_id("order"), tenant_id=order.tenant_id,
                    bot_id=order.bot_id, account_id=order.account_id,
                    client_order_id=order.client_order_id, symbol=order.symbol,
                    side=order.side, type=order.type, quantity=order.quantity,
                    limit_price=order.limit_price, status=order.status or PENDING,
                    created_at=now, updated_at=now, reason=order.reason, bar_ns=order.bar_ns,
                    reference_price=order.reference_price, reserved=order.reserved,
                    error=order.error)
        self.data.orders[row.id] = row
        return row, True

    def add_pending_many(self, orders: Sequence[NewOrder], now: datetime
                         ) -> list[tuple[Order, bool]]:
        return [self.add_pending(o, now) for o in orders]

    def update_many(self, updates: Sequence[tuple[int, OrderUpdate]], now: datetime
                    ) -> list[Order]:
        return [self.update(order_id, u, now) for order_id, u in updates]

    def get(self, tenant_id: int | None, order_id: int) -> Order | None:
        found = self.data.orders.get(order_id)
        if found is None or (tenant_id is not None and found.tenant_id != tenant_id):
            return None
        return found

    def by_client_id(self, account_id: int, client_order_id: str) -> Order | None:
        for order in self.data.orders.values():
            if order.account_id == account_id and order.client_order_id == client_order_id:
                return order
        return None

    def update(self, order_id: int, update: OrderUpdate, now: datetime) -> Order:
        found = self.data.orders.get(order_id)
        if found is None:
            raise NotFoundError(f"no order {order_id}")
        if found.status in TERMINAL_STATUSES:
            return found
        changes: dict[str, object] = {"status": update.status, "updated_at": now}
        for name, target in (("exchange_order_id", "exchange_order_id"),
                             ("filled_quantity", "filled_quantity"),
                             ("average_price", "average_price"), ("fee", "fee"),
                             ("error", "error")):
            value = getattr(update, name)
            if value is not None:
                changes[target] = value
        if update.status in TERMINAL_STATUSES:
            changes["reserved"] = 0.0
        row = dataclasses.replace(found, **changes)  # type: ignore[arg-type]
        self.data.orders[order_id] = row
        return row

    def find(self, *, tenant_id: int | None = None, bot_id: int | None = None,
             account_id: int | None = None, statuses: Sequence[str] | None = None,
             symbol: str | None = None, limit: int = 100, offset: int = 0) -> list[Order]:
        rows = [o for _, o in sorted(self.data.orders.items(), reverse=True)
                if (tenant_id is None or o.tenant_id == tenant_id)
                and (bot_id is None or o.bot_id == bot_id)
                and (account_id is None or o.account_id == account_id)
                and (statuses is None or o.status in statuses)
                and (symbol is None or o.symbol == symbol)]
        return rows[offset:offset + limit]

    def count_since(self, bot_id: int, since: datetime) -> int:
        return sum(1 for o in self.data.orders.values()
                   if o.bot_id == bot_id and o.created_at >= since)

    def reserved(self, *, account_id: int | None = None, bot_id: int | None = None) -> float:
        return float(sum(o.reserved for o in self.data.orders.values()
                         if o.status not in TERMINAL_STATUSES
                         and (account_id is None or o.account_id == account_id)
                         and (bot_id is None or o.bot_id == bot_id)))

    def add_fill(self, fill: Fill) -> bool:
        key = (fill.account_id, fill.trade_id)
        if key in self.data.fills:
            return False
        self.data.fills[key] = fill
        return True

    def add_fills(self, fills: Sequence[Fill]) -> list[bool]:
        return [self.add_fill(f) for f in fills]

    def fills(self, *, order_id: int | None = None, bot_id: int | None = None,
              account_id: int | None = None, limit: int = 1000) -> list[Fill]:
        rows = [f for f in self.data.fills.values()  # dicts keep insertion order: oldest first
                if (order_id is None or f.order_id == order_id)
                and (account_id is None or f.account_id == account_id)
                and (bot_id is None or self.data.orders[f.order_id].bot_id == bot_id)]
        return rows[:limit]

    def has_fill(self, account_id: int, trade_id: str) -> bool:
        return (account_id, trade_id) in self.data.fills


class MemoryPositionRepository:
    def __init__(self, state: MemoryState) -> None:
        self.data = _store(state)

    def get(self, bot_id: int, symbol: str) -> Position | None:
        return self.data.positions.get((bot_id, symbol))

    def find(self, *, tenant_id: int | None = None, bot_id: int | None = None,
             open_only: bool = False) -> list[Position]:
        return [p for (b, _), p in sorted(self.data.positions.items())
                if (tenant_id is None or (b in self.data.bots
                                          and self.data.bots[b].tenant_id == tenant_id))
                and (bot_id is None or b == bot_id)
                and (not open_only or p.quantity != 0)]

    def put(self, position: Position) -> None:
        self.data.positions[(position.bot_id, position.symbol)] = position

    def put_many(self, positions: Sequence[Position]) -> None:
        for position in positions:
            self.put(position)


class MemoryTradingStateRepository:
    def __init__(self, state: MemoryState) -> None:
        self.data = _store(state)

    def states(self, scopes: Sequence[Scope]) -> list[TradingState]:
        return [self.data.states[s] for s in sorted(set(scopes)) if s in self.data.states]

    def put_state(self, state: TradingState) -> None:
        self.data.states[(state.scope, state.scope_id)] = state

    def kill_switches(self, scopes: Sequence[Scope] | None = None) -> list[KillSwitch]:
        keys = sorted(self.data.switches) if scopes is None else sorted(set(scopes))
        return [self.data.switches[k] for k in keys if k in self.data.switches]

    def put_kill_switch(self, switch: KillSwitch) -> None:
        self.data.switches[(switch.scope, switch.scope_id)] = switch


class MemoryBotMarkRepository:
    def __init__(self, state: MemoryState) -> None:
        self.data = _store(state)

    def add(self, mark: BotMark) -> None:
        self.data.marks[(mark.bot_id, mark.ts)] = mark

    def series(self, bot_id: int, *, since: datetime | None = None,
               until: datetime | None = None) -> list[BotMark]:
        return [m for (b, ts), m in sorted(self.data.marks.items())
                if b == bot_id and (since is None or ts >= since)
                and (until is None or ts <= until)]

    def latest(self, bot_id: int) -> BotMark | None:
        found = self.series(bot_id)
        return found[-1] if found else None
