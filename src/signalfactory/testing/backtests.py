"""The backtest repository in memory."""

from __future__ import annotations

from collections.abc import Sequence

from signalfactory.domain.backtest.stored import (
    BacktestSummary,
    EquityCurve,
    StoredBacktest,
    TradeRecord,
)
from signalfactory.testing.memory import MemoryState


class BacktestStore:
    """Stored backtests by id, their trades in stored order, their curves by (id, symbol)."""

    def __init__(self) -> None:
        self.backtests: dict[str, StoredBacktest] = {}
        self.trades: dict[str, list[TradeRecord]] = {}
        self.curves: dict[tuple[str, str], EquityCurve] = {}


class MemoryBacktestRepository:
    def __init__(self, state: MemoryState) -> None:
        self._store = state.store("backtests", BacktestStore)

    def add(self, backtest: StoredBacktest, trades: Sequence[TradeRecord],
            curves: Sequence[EquityCurve]) -> bool:
        if backtest.id in self._store.backtests:
            return False
        self._store.backtests[backtest.id] = backtest
        self._store.trades[backtest.id] = list(trades)
        for curve in curves:  # copies: the caller's arrays may change after the commit
            self._store.curves[backtest.id, curve.symbol] = EquityCurve(
                curve.symbol, curve.ts.copy(), curve.equity.copy())
        return True

    def exists(self, tenant_id: int, backtest_id: str) -> bool:
        return self.get(tenant_id, backtest_id) is not None

    def get(self, tenant_id: int, backtest_id: str) -> StoredBacktest | None:
        found = self._store.backtests.get(backtest_id)
        return found if found is not None and found.tenant_id == tenant_id else None

    def trades(self, backtest_id: str, *, symbol: str | None = None,
               limit: int | None = None) -> list[TradeRecord]:
        found = [t for t in self._store.trades.get(backtest_id, [])
                 if symbol is None or t.symbol == symbol]
        return found if limit is None else found[:limit]

    def equity_curve(self, backtest_id: str, symbol: str) -> EquityCurve | None:
        curve = self._store.curves.get((backtest_id, symbol))
        return None if curve is None else EquityCurve(symbol, curve.ts.copy(),
                                                      curve.equity.copy())

    def list_recent(self, tenant_id: int, *, limit: int, offset: int) -> list[BacktestSummary]:
        mine = sorted((b for b in self._store.backtests.values() if b.tenant_id == tenant_id),
                      key=lambda b: b.id)
        mine.sort(key=lambda b: b.created_at, reverse=True)  # stable: ties keep id order
        return [BacktestSummary(
            id=b.id, mode=b.mode, strategy_name=b.strategy_name,
            strategy_version=b.strategy_version, timeframe=b.data_range.timeframe,
            n_symbols=len(b.data_range.symbols), start=b.data_range.start,
            end=b.data_range.end, final_equity=b.final_equity, n_trades=b.n_trades,
            total_return=b.metric("total_return"), created_at=b.created_at)
            for b in mine[offset:offset + limit]]
