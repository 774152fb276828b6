"""The signal repository in memory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from signalfactory.domain.signals import (
    InsertedSignal,
    NewSignal,
    SignalQuery,
    SignalRow,
    StoredSignal,
)
from signalfactory.domain.strategies.stored import BuiltinInterest
from signalfactory.testing.memory import MemoryState
from signalfactory.testing.strategies import strategy_store

SignalKey = tuple[int, int, str, datetime, str]


@dataclass
class SignalStore:
    """Stored signals by id, and the identity index that makes inserts idempotent.

    ``symbols`` names instruments (filled by every insert; a test may add instruments that
    have no signal yet).
    """

    signals: dict[int, tuple[NewSignal, datetime]] = field(default_factory=dict)
    identity: dict[SignalKey, int] = field(default_factory=dict)
    symbols: dict[int, str] = field(default_factory=dict)


def signal_store(state: MemoryState) -> SignalStore:
    return state.store("signals", SignalStore)


def _key(s: NewSignal) -> SignalKey:
    return s.strategy_version_id, s.instrument_id, s.timeframe, s.bar_ts, s.side


class MemorySignalRepository:
    def __init__(self, state: MemoryState) -> None:
        self.state = state
        self.store = signal_store(state)

    def insert_new(self, signals: Sequence[NewSignal]) -> list[InsertedSignal]:
        created = []
        for index, signal in enumerate(signals):
            if _key(signal) in self.store.identity:
                continue
            new_id = len(self.store.signals) + 1
            now = datetime.now(UTC)
            self.store.signals[new_id] = (signal, now)
            self.store.identity[_key(signal)] = new_id
            self.store.symbols[signal.instrument_id] = signal.symbol
            created.append(InsertedSignal(new_id, now, index))
        return created

    def page(self, query: SignalQuery) -> list[StoredSignal]:
        strategies = strategy_store(self.state)
        out: list[StoredSignal] = []
        for ident in sorted(self.store.signals, reverse=query.newest_first):
            if len(out) >= query.limit:
                break
            signal, created_at = self.store.signals[ident]
            version, _ = strategies.versions[signal.strategy_version_id]
            strategy, _ = strategies.strategies[version.strategy_id]
            symbol = self.store.symbols.get(signal.instrument_id, signal.symbol)
            if not (strategy.tenant_id == query.tenant_id or strategy.builtin):
                continue
            if ((query.after_id is not None and (ident >= query.after_id if query.newest_first
                                                 else ident <= query.after_id))
                    or (query.since is not None and signal.bar_ts < query.since)
                    or (query.symbol is not None and symbol != query.symbol)
                    or (query.strategy is not None and strategy.name != query.strategy)
                    or (query.side is not None and signal.side != query.side)
                    or (query.min_score is not None
                        and (signal.score is None or signal.score < query.min_score))):
                continue
            out.append(StoredSignal(
                id=ident, bar_ts=signal.bar_ts, symbol=symbol, side=signal.side,
                strategy=strategy.name, strategy_version=version.version,
                timeframe=signal.timeframe, score=signal.score, price=signal.price,
                values=dict(signal.values), created_at=created_at,
                code_hash=version.code_hash))
        return out

    def page_rows(self, query: SignalQuery) -> list[SignalRow]:
        return [SignalRow(id=s.id, bar_ts=s.bar_ts, symbol=s.symbol, side=s.side,
                          strategy=s.strategy, strategy_version=s.strategy_version,
                          timeframe=s.timeframe, score=s.score, price=s.price,
                          values={k: float(v) for k, v in s.values.items()},
                          created_at=s.created_at, code_hash=s.code_hash)
                for s in self.page(query)]

    def count_created_since(self, tenant_id: int, since: datetime) -> int:
        strategies = strategy_store(self.state)
        count = 0
        for signal, created_at in self.store.signals.values():
            version, _ = strategies.versions[signal.strategy_version_id]
            strategy, _ = strategies.strategies[version.strategy_id]
            if (strategy.tenant_id == tenant_id or strategy.builtin) and created_at >= since:
                count += 1
        return count

    def builtin_interest(self) -> BuiltinInterest:
        """What the stored subscriptions ask of the built-ins (as the SQL repository reads
        the subscriptions table)."""
        from signalfactory.testing.streaming import SubscriptionStore

        names: set[str] = set()
        for subscription in self.state.store("subscriptions", SubscriptionStore).rows.values():
            if not subscription.strategies:
                return BuiltinInterest(every=True)
            names.update(subscription.strategies)
        return BuiltinInterest(names=frozenset(names))
