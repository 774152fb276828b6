"""The backtest repository in memory."""

from __future__ import annotations

from collections.abc import Sequence

from signalfactory.domain.backtest.curve_codec import ChunkedRows, EncodedCurve
from signalfactory.domain.backtest.stored import (
    BacktestSummary,
    EquityCurve,
    StoredBacktest,
    TradeRecord,
)
from signalfactory.domain.errors import OperationalError
from signalfactory.testing.memory import MemoryState


class BacktestStore:
    """Stored backtests by id, their trades in stored order, their curves by (id, symbol)."""

    def __init__(self) -> None:
        self.backtests: dict[str, StoredBacktest] = {}
        self.trades: dict[str, list[TradeRecord]] = {}
        self.curves: dict[tuple[str, str], EquityCurve] = {}
        # a split backtest's rows held by its chunks: (parent job id, chunk index) ->
        self.chunks: dict[tuple[str, int], tuple[list[TradeRecord], list[EncodedCurve]]] = {}


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

    def stage_chunk(self, parent_job_id: str, index: int, trades: Sequence[TradeRecord],
                    curves: Sequence[EncodedCurve]) -> None:
        self._store.chunks[parent_job_id, index] = (list(trades), list(curves))

    def add_from_chunks(self, backtest: StoredBacktest, curves: Sequence[EquityCurve],
                        chunked: ChunkedRows) -> bool:
        held = [self._store.chunks.get((chunked.parent_job_id, i), ([], []))
                for i in range(len(chunked.trades))]
        for index, (trades, encoded) in enumerate(held):
            if (len(trades), len(encoded)) != (chunked.trades[index], chunked.curves[index]):
                raise OperationalError(f"chunk {index + 1} of split job "
                                       f"{chunked.parent_job_id} holds other rows than counted")
        for key in [k for k in self._store.chunks if k[0] == chunked.parent_job_id]:
            del self._store.chunks[key]
        return self.add(backtest, [t for trades, _ in held for t in trades],
                        [c.decode() for _, encoded in held for c in encoded] + list(curves))

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
