"""Ports of backtests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from signalfactory.domain.backtest.curve_codec import ChunkedRows, EncodedCurve
from signalfactory.domain.backtest.stored import (
    BacktestSummary,
    EquityCurve,
    StoredBacktest,
    TradeRecord,
)


class BacktestRepository(Protocol):
    """Stored backtests with their trades and equity curves.

    A backtest is written once, with everything it has, and never updated (its id is the
    hash of what decides its numbers). Trades and curves are read by backtest id: callers
    first check the backtest belongs to the tenant with `get`.
    """

    def add(self, backtest: StoredBacktest, trades: Sequence[TradeRecord],
            curves: Sequence[EquityCurve]) -> bool:
        """Store the backtest unless one with its id exists (two runs of the same request
        may race); True when this call stored it."""
        ...

    def stage_chunk(self, parent_job_id: str, index: int, trades: Sequence[TradeRecord],
                    curves: Sequence[EncodedCurve]) -> None:
        """Hold chunk ``index``'s trades (in order) and curves of the split backtest job
        ``parent_job_id`` until `add_from_chunks`, replacing what that chunk held."""
        ...

    def add_from_chunks(self, backtest: StoredBacktest, curves: Sequence[EquityCurve],
                        chunked: ChunkedRows) -> bool:
        """`add` with the trades and curves the chunks hold (chunk by chunk, in order, each
        checked against the counts in ``chunked``) besides ``curves``; then the chunks hold
        nothing (also when the id was stored before and this call stored nothing)."""
        ...

    def exists(self, tenant_id: int, backtest_id: str) -> bool: ...

    def get(self, tenant_id: int, backtest_id: str) -> StoredBacktest | None:
        """The tenant's backtest; None for an unknown id or another tenant's."""
        ...

    def trades(self, backtest_id: str, *, symbol: str | None = None,
               limit: int | None = None) -> list[TradeRecord]:
        """Trades in the order they were stored (entry order), optionally of one symbol and
        at most ``limit`` of them."""
        ...

    def equity_curve(self, backtest_id: str, symbol: str) -> EquityCurve | None:
        """The curve of ``symbol``'s account ("": the portfolio or universe aggregate)."""
        ...

    def list_recent(self, tenant_id: int, *, limit: int, offset: int) -> list[BacktestSummary]:
        """The tenant's backtests, newest first (ties by id)."""
        ...
