"""Stored backtests: the deterministic id, writing a result once, reading it back.

A result is written in ONE transaction (the summary row, its trades, its equity curves) and
never updated: its id is the sha256 of the canonical JSON of everything that decides the
numbers (`backtest_id`), so a second run of the same request finds the row and returns it, and
two runs racing on the same id store it once (insert-if-absent on the primary key).

Equity curves are stored one row per curve, not one row per bar: ``ts`` as int64 nanoseconds,
delta-encoded (regular bars compress to almost nothing), and ``equity`` as float64, each
little-endian and zlib-compressed (`ENCODING`).
"""

from __future__ import annotations

import hashlib
import json
import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from signalfactory.adapters.storage.tables import backtest_equity, backtest_trades, backtests
from signalfactory.domain.errors import NotFoundError

ENCODING = "zlib:delta-i64,f64"
#: bump when the engine's semantics change, so old stored numbers are not reused for new runs
ENGINE_VERSION = 1
TRADE_COLUMNS = ("symbol", "entry_ts", "exit_ts", "size", "entry_price", "exit_price", "pnl",
                 "return", "fees", "exit_reason")


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False,
                      default=str)


def backtest_id(identity: Mapping[str, Any]) -> str:
    """sha256 hex of the canonical JSON of ``identity`` (engine version added)."""
    return hashlib.sha256(canonical_json({"engine": ENGINE_VERSION, **identity})
                          .encode("utf-8")).hexdigest()


def finite_or_none(value: Any) -> Any:
    """JSON has no NaN or infinity (PostgreSQL refuses them): those become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.floating):
        return finite_or_none(float(value))
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    return value


def ns_to_datetime(ns: int) -> datetime:
    seconds, rest = divmod(int(ns), 1_000_000_000)
    return datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=rest // 1000)


def datetime_to_ns(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp()) * 1_000_000_000 + value.microsecond * 1000


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def encode_curve(ts: np.ndarray, equity: np.ndarray) -> tuple[bytes, bytes]:
    t = np.ascontiguousarray(ts, dtype="<i8")
    deltas = np.diff(t, prepend=np.int64(0)).astype("<i8")
    return (zlib.compress(deltas.tobytes(), 6),
            zlib.compress(np.ascontiguousarray(equity, dtype="<f8").tobytes(), 6))


def decode_curve(ts_blob: bytes, equity_blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    deltas = np.frombuffer(zlib.decompress(ts_blob), dtype="<i8")
    return (np.cumsum(deltas).astype(np.int64),
            np.frombuffer(zlib.decompress(equity_blob), dtype="<f8").astype(np.float64))


@dataclass(frozen=True)
class Curve:
    symbol: str  # "" for the portfolio / universe aggregate
    ts: np.ndarray
    equity: np.ndarray


@dataclass(frozen=True)
class BacktestRecord:
    """Everything one computed backtest stores."""

    id: str
    tenant_id: int
    mode: str
    config: dict[str, Any]
    data_range: dict[str, Any]
    strategy_name: str
    strategy_version: int | None
    code_hash: str
    metrics: dict[str, Any]
    per_symbol: list[dict[str, Any]]
    final_equity: float
    trades: Sequence[Mapping[str, Any]]  # TRADE_COLUMNS; *_ts as int ns
    curves: Sequence[Curve]
    duration_seconds: float


def _insert_ignoring_existing(conn: Connection) -> Any:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    return insert


def save(conn: Connection, record: BacktestRecord) -> bool:
    """Store the result unless a result with this id exists; True when this call stored it."""
    insert = _insert_ignoring_existing(conn)
    stmt = insert(backtests).values(
        id=record.id, tenant_id=record.tenant_id, status="succeeded", mode=record.mode,
        config=finite_or_none(record.config), data_range=finite_or_none(record.data_range),
        strategy_name=record.strategy_name[:100], strategy_version=record.strategy_version,
        code_hash=record.code_hash, metrics=finite_or_none(record.metrics),
        per_symbol=finite_or_none(record.per_symbol), final_equity=float(record.final_equity),
        n_trades=len(record.trades), duration_seconds=float(record.duration_seconds),
        created_at=datetime.now(UTC),
    ).on_conflict_do_nothing(index_elements=["id"]).returning(backtests.c.id)
    if conn.execute(stmt).first() is None:
        return False  # stored before (same id = same numbers): nothing to add
    rows = [{"backtest_id": record.id, "seq": seq, "symbol": t["symbol"],
             "entry_ts": ns_to_datetime(t["entry_ts"]), "exit_ts": ns_to_datetime(t["exit_ts"]),
             "size": float(t["size"]), "entry_price": float(t["entry_price"]),
             "exit_price": float(t["exit_price"]), "pnl": float(t["pnl"]),
             "return": float(t["return"]), "fees": float(t["fees"]),
             "exit_reason": t["exit_reason"]}
            for seq, t in enumerate(record.trades)]
    for start in range(0, len(rows), 5000):
        conn.execute(backtest_trades.insert(), rows[start:start + 5000])
    curves = []
    for curve in record.curves:
        ts_blob, eq_blob = encode_curve(curve.ts, curve.equity)
        curves.append({"backtest_id": record.id, "symbol": curve.symbol,
                       "n_points": int(curve.ts.shape[0]), "encoding": ENCODING,
                       "ts": ts_blob, "equity": eq_blob})
    for start in range(0, len(curves), 500):
        conn.execute(backtest_equity.insert(), curves[start:start + 500])
    return True


def exists(conn: Connection, tenant_id: int, id_: str) -> bool:
    return conn.execute(sa.select(backtests.c.id).where(
        backtests.c.id == id_, backtests.c.tenant_id == tenant_id)).first() is not None


def _trade_out(row: Any) -> dict[str, Any]:
    return {"symbol": row.symbol, "entry_ts": _iso(row.entry_ts), "exit_ts": _iso(row.exit_ts),
            "size": row.size, "entry_price": row.entry_price, "exit_price": row.exit_price,
            "pnl": row.pnl, "return": row._mapping["return"], "fees": row.fees,
            "exit_reason": row.exit_reason}


def read(conn: Connection, tenant_id: int, id_: str, *,
         trades_limit: int | None = None) -> dict[str, Any]:
    """The stored result as a JSON-able dict; another tenant's id is NotFoundError."""
    row = conn.execute(sa.select(backtests).where(backtests.c.id == id_,
                                                  backtests.c.tenant_id == tenant_id)).first()
    if row is None:
        raise NotFoundError(f"no backtest {id_}")
    query = (sa.select(backtest_trades).where(backtest_trades.c.backtest_id == id_)
             .order_by(backtest_trades.c.seq))
    if trades_limit is not None:
        query = query.limit(trades_limit)
    trades = [_trade_out(r) for r in conn.execute(query)]
    return {
        "id": row.id, "status": row.status, "mode": row.mode,
        "strategy": {"name": row.strategy_name, "version": row.strategy_version,
                     "code_hash": row.code_hash},
        "config": row.config, "data_range": row.data_range, "metrics": row.metrics,
        "final_equity": row.final_equity, "n_trades": row.n_trades, "trades": trades,
        "per_symbol": row.per_symbol, "created_at": _iso(row.created_at),
        "duration_seconds": row.duration_seconds, "error": row.error,
    }


def read_curve(conn: Connection, id_: str, symbol: str) -> tuple[np.ndarray, np.ndarray] | None:
    row = conn.execute(sa.select(backtest_equity.c.ts, backtest_equity.c.equity).where(
        backtest_equity.c.backtest_id == id_, backtest_equity.c.symbol == symbol)).first()
    return None if row is None else decode_curve(row.ts, row.equity)


def read_trades_ns(conn: Connection, id_: str, symbol: str | None) -> list[dict[str, Any]]:
    """Trades with times as int ns (what the report wants), optionally of one symbol."""
    query = (sa.select(backtest_trades).where(backtest_trades.c.backtest_id == id_)
             .order_by(backtest_trades.c.seq))
    if symbol is not None:
        query = query.where(backtest_trades.c.symbol == symbol)
    out = []
    for r in conn.execute(query):
        item = _trade_out(r)
        item["entry_ts"] = datetime_to_ns(r.entry_ts)
        # the report marks no exit for a trade still open at the end
        item["exit_ts"] = None if r.exit_reason == "open" else datetime_to_ns(r.exit_ts)
        out.append(item)
    return out


def list_recent(conn: Connection, tenant_id: int, *, limit: int = 100,
                offset: int = 0) -> list[dict[str, Any]]:
    """The tenant's backtests, newest first, without trades."""
    rows = conn.execute(
        sa.select(backtests.c.id, backtests.c.mode, backtests.c.strategy_name,
                  backtests.c.strategy_version, backtests.c.final_equity,
                  backtests.c.n_trades, backtests.c.metrics, backtests.c.created_at,
                  backtests.c.data_range)
        .where(backtests.c.tenant_id == tenant_id)
        .order_by(backtests.c.created_at.desc(), backtests.c.id).limit(limit).offset(offset))
    return [{"id": r.id, "mode": r.mode,
             "strategy": {"name": r.strategy_name, "version": r.strategy_version},
             "timeframe": r.data_range.get("timeframe"),
             "symbols": len(r.data_range.get("symbols", [])),
             "from": r.data_range.get("from"), "to": r.data_range.get("to"),
             "final_equity": r.final_equity, "n_trades": r.n_trades,
             "total_return": (r.metrics or {}).get("total_return"),
             "created_at": _iso(r.created_at)} for r in rows]
