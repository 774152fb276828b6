"""Stored backtests in SQL: the summary row, its trades, its equity curves.

A backtest is written in ONE transaction and never updated; two runs racing on the same id
store it once (insert-if-absent on the primary key).

Equity curves are stored one row per curve, not one row per bar: ``ts`` as int64 nanoseconds,
delta-encoded (regular bars compress to almost nothing), and ``equity`` as float64, each
little-endian and zlib-compressed (`ENCODING`, `signalfactory.domain.backtest.curve_codec`).

A split backtest's chunks hold their trades and curves in ``backtest_chunk_trades`` and
``backtest_chunk_equity`` (`stage_chunk`, in the transaction that counts the chunk done); the
parent stores the backtest by copying them in SQL (`add_from_chunks`), in the same one
transaction, so no trade travels through the parent's Python.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from signalfactory.adapters.storage.tables_core import (
    backtest_chunk_equity,
    backtest_chunk_trades,
    backtest_equity,
    backtest_trades,
    backtests,
)
from signalfactory.domain.backtest.curve_codec import (
    ENCODING,
    ChunkedRows,
    EncodedCurve,
    decode_curve,
)
from signalfactory.domain.backtest.stored import (
    BacktestSummary,
    DataRange,
    EquityCurve,
    Scalar,
    Scalars,
    StoredBacktest,
    TradeRecord,
    json_scalar,
)
from signalfactory.domain.errors import OperationalError
from signalfactory.domain.timestamps import datetime_to_ns, ns_to_datetime

if TYPE_CHECKING:
    from sqlalchemy.dialects.postgresql import Insert as PgInsert
    from sqlalchemy.dialects.sqlite import Insert as SqliteInsert

_TRADE_BATCH = 5000
_CURVE_BATCH = 500


def _utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _scalars(doc: object) -> Scalars:
    return {str(k): json_scalar(v) for k, v in doc.items()} if isinstance(doc, Mapping) else {}


def _doc(values: Scalars) -> dict[str, Scalar]:
    return dict(values)


def _insert_into(conn: Connection, table: sa.Table) -> PgInsert | SqliteInsert:
    """The dialect's own INSERT (for ON CONFLICT); its module is imported only for its
    dialect, so a command on SQLite does not load PostgreSQL's."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


class SqlBacktestRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add(self, backtest: StoredBacktest, trades: Sequence[TradeRecord],
            curves: Sequence[EquityCurve]) -> bool:
        if not self._add_row(backtest):
            return False  # stored before (same id = same numbers): nothing to add
        self._insert_trades(backtest_trades, {"backtest_id": backtest.id}, trades)
        self._insert_curves(backtest_equity, {"backtest_id": backtest.id},
                            [EncodedCurve.of(c) for c in curves])
        return True

    def stage_chunk(self, parent_job_id: str, index: int, trades: Sequence[TradeRecord],
                    curves: Sequence[EncodedCurve]) -> None:
        key = {"parent_job_id": parent_job_id, "idx": index}
        for table in (backtest_chunk_trades, backtest_chunk_equity):
            self.conn.execute(sa.delete(table).where(table.c.parent_job_id == parent_job_id,
                                                     table.c.idx == index))
        self._insert_trades(backtest_chunk_trades, key, trades)
        self._insert_curves(backtest_chunk_equity, key, curves)

    def add_from_chunks(self, backtest: StoredBacktest, curves: Sequence[EquityCurve],
                        chunked: ChunkedRows) -> bool:
        stored = self._add_row(backtest)
        if stored:
            self._copy_chunks(backtest.id, chunked)
            self._insert_curves(backtest_equity, {"backtest_id": backtest.id},
                                [EncodedCurve.of(c) for c in curves])
        # stored now, or before by a run racing on the same id: the chunks' rows are spent
        for table in (backtest_chunk_trades, backtest_chunk_equity):
            self.conn.execute(sa.delete(table).where(
                table.c.parent_job_id == chunked.parent_job_id))
        return stored

    def _copy_chunks(self, backtest_id: str, chunked: ChunkedRows) -> None:
        parent = chunked.parent_job_id
        t, e = backtest_chunk_trades.c, backtest_chunk_equity.c
        held = [self._held(table, parent, len(chunked.trades))
                for table in (backtest_chunk_trades, backtest_chunk_equity)]
        for index, counts in enumerate(zip(*held, strict=True)):
            said = (chunked.trades[index], chunked.curves[index])
            if counts != said:
                raise OperationalError(
                    f"chunk {index + 1} of split job {parent} holds {counts[0]} trades and "
                    f"{counts[1]} curves, its result says {said[0]} and {said[1]}; run the "
                    "backtest again")
        trade_columns = ["symbol", "entry_ts", "exit_ts", "size", "entry_price", "exit_price",
                         "pnl", "return", "fees", "exit_reason"]
        curve_columns = ["symbol", "n_points", "encoding", "ts", "equity"]
        bid = sa.literal(backtest_id, sa.String(64))
        offset = 0
        for index, n_trades in enumerate(chunked.trades):
            # seq runs on over the chunks in instrument order: the single box's numbering
            self.conn.execute(sa.insert(backtest_trades).from_select(
                ["backtest_id", "seq", *trade_columns],
                sa.select(bid, t.seq + offset, *(t[c] for c in trade_columns))
                .where(t.parent_job_id == parent, t.idx == index)))
            offset += n_trades
        self.conn.execute(sa.insert(backtest_equity).from_select(
            ["backtest_id", *curve_columns],
            sa.select(bid, *(e[c] for c in curve_columns)).where(e.parent_job_id == parent)))

    def _held(self, table: sa.Table, parent_job_id: str, chunks: int) -> list[int]:
        """How many rows each chunk holds in ``table``."""
        counts = [0] * chunks
        rows = self.conn.execute(sa.select(table.c.idx, sa.func.count()).where(
            table.c.parent_job_id == parent_job_id).group_by(table.c.idx)).all()
        for index, count in rows:
            if not 0 <= index < chunks:
                raise OperationalError(f"split job {parent_job_id} holds rows of chunk "
                                       f"{index + 1} of {chunks}; run the backtest again")
            counts[index] = int(count)
        return counts

    def _add_row(self, backtest: StoredBacktest) -> bool:
        b = backtest
        stmt = _insert_into(self.conn, backtests).values(
            id=b.id, tenant_id=b.tenant_id, status=b.status, mode=b.mode,
            config=_doc(b.config), data_range=b.data_range.to_json(),
            strategy_name=b.strategy_name, strategy_version=b.strategy_version,
            code_hash=b.code_hash, metrics=_doc(b.metrics),
            per_symbol=[_doc(s) for s in b.per_symbol], final_equity=b.final_equity,
            n_trades=b.n_trades, duration_seconds=b.duration_seconds,
            created_at=b.created_at, error=b.error,
        ).on_conflict_do_nothing(index_elements=["id"]).returning(backtests.c.id)
        return self.conn.execute(stmt).first() is not None

    def _insert_trades(self, table: sa.Table, key: dict[str, object],
                       trades: Sequence[TradeRecord]) -> None:
        rows = [{**key, "seq": seq, "symbol": t.symbol,
                 "entry_ts": ns_to_datetime(t.entry_ts), "exit_ts": ns_to_datetime(t.exit_ts),
                 "size": t.size, "entry_price": t.entry_price, "exit_price": t.exit_price,
                 "pnl": t.pnl, "return": t.return_, "fees": t.fees,
                 "exit_reason": t.exit_reason}
                for seq, t in enumerate(trades)]
        for start in range(0, len(rows), _TRADE_BATCH):
            self.conn.execute(table.insert(), rows[start:start + _TRADE_BATCH])

    def _insert_curves(self, table: sa.Table, key: dict[str, object],
                       curves: Sequence[EncodedCurve]) -> None:
        rows = [{**key, "symbol": c.symbol, "n_points": c.n_points, "encoding": ENCODING,
                 "ts": c.ts, "equity": c.equity} for c in curves]
        for start in range(0, len(rows), _CURVE_BATCH):
            self.conn.execute(table.insert(), rows[start:start + _CURVE_BATCH])

    def exists(self, tenant_id: int, backtest_id: str) -> bool:
        return self.conn.execute(sa.select(backtests.c.id).where(
            backtests.c.id == backtest_id, backtests.c.tenant_id == tenant_id)).first() \
            is not None

    def get(self, tenant_id: int, backtest_id: str) -> StoredBacktest | None:
        row = self.conn.execute(sa.select(backtests).where(
            backtests.c.id == backtest_id, backtests.c.tenant_id == tenant_id)).first()
        if row is None:
            return None
        return StoredBacktest(
            id=row.id, tenant_id=row.tenant_id, mode=row.mode, config=_scalars(row.config),
            data_range=DataRange.from_json(row.data_range), strategy_name=row.strategy_name,
            strategy_version=row.strategy_version, code_hash=row.code_hash,
            metrics=_scalars(row.metrics),
            per_symbol=tuple(_scalars(s) for s in row.per_symbol or ()),
            final_equity=row.final_equity, n_trades=row.n_trades,
            created_at=_utc(row.created_at), duration_seconds=row.duration_seconds,
            status=row.status, error=row.error)

    def trades(self, backtest_id: str, *, symbol: str | None = None,
               limit: int | None = None) -> list[TradeRecord]:
        query = (sa.select(backtest_trades).where(backtest_trades.c.backtest_id == backtest_id)
                 .order_by(backtest_trades.c.seq))
        if symbol is not None:
            query = query.where(backtest_trades.c.symbol == symbol)
        if limit is not None:
            query = query.limit(limit)
        return [_trade(r) for r in self.conn.execute(query).mappings()]

    def equity_curve(self, backtest_id: str, symbol: str) -> EquityCurve | None:
        row = self.conn.execute(sa.select(backtest_equity.c.ts, backtest_equity.c.equity).where(
            backtest_equity.c.backtest_id == backtest_id,
            backtest_equity.c.symbol == symbol)).first()
        if row is None:
            return None
        ts, equity = decode_curve(row.ts, row.equity)
        return EquityCurve(symbol, ts, equity)

    def list_recent(self, tenant_id: int, *, limit: int, offset: int) -> list[BacktestSummary]:
        rows = self.conn.execute(
            sa.select(backtests.c.id, backtests.c.mode, backtests.c.strategy_name,
                      backtests.c.strategy_version, backtests.c.final_equity,
                      backtests.c.n_trades, backtests.c.metrics, backtests.c.created_at,
                      backtests.c.data_range)
            .where(backtests.c.tenant_id == tenant_id)
            .order_by(backtests.c.created_at.desc(), backtests.c.id).limit(limit).offset(offset))
        return [_summary(r) for r in rows.mappings()]


def _trade(m: RowMapping) -> TradeRecord:
    return TradeRecord(symbol=m["symbol"], entry_ts=datetime_to_ns(m["entry_ts"]),
                       exit_ts=datetime_to_ns(m["exit_ts"]), size=m["size"],
                       entry_price=m["entry_price"], exit_price=m["exit_price"],
                       pnl=m["pnl"], return_=m["return"], fees=m["fees"],
                       exit_reason=m["exit_reason"])


def _summary(m: RowMapping) -> BacktestSummary:
    data = m["data_range"] if isinstance(m["data_range"], Mapping) else {}
    total_return = json_scalar((m["metrics"] or {}).get("total_return"))
    start, end, timeframe = data.get("from"), data.get("to"), data.get("timeframe")
    return BacktestSummary(
        id=m["id"], mode=m["mode"], strategy_name=m["strategy_name"],
        strategy_version=m["strategy_version"],
        timeframe=None if timeframe is None else str(timeframe),
        n_symbols=len(data.get("symbols", [])), start=None if start is None else str(start),
        end=None if end is None else str(end), final_equity=m["final_equity"],
        n_trades=m["n_trades"],
        total_return=float(total_return) if isinstance(total_return, int | float) else None,
        created_at=_utc(m["created_at"]))
