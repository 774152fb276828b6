"""A backtest as it is stored and read back: the summary, its trades, its equity curves.

These are the record types of the backtest repository (``services/backtests/ports.py``) and
what the service returns; the API's pydantic models and the CLI's output are built from them.
They are already in their stored form: numbers are plain Python ``int``/``float``, and values
JSON cannot hold (NaN, infinity: an undefined ratio) are ``None`` (`json_scalars`), so a
record reads back from any repository exactly as it was written.

The id of a backtest is the sha256 of the canonical JSON of everything that decides its
numbers (`backtest_id`): the same request maps to the same id, so a second run finds the
stored result instead of computing it again.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from signalfactory.domain.timestamps import ns_to_datetime

#: bump when the engine's semantics change, so old stored numbers are not reused for new runs
ENGINE_VERSION = 2

Scalar = str | float | bool | None
"""A value of a stored settings or metrics document (``int`` is a ``float`` to the checker)."""
Scalars = Mapping[str, Scalar]
JsonValue = Scalar | list["JsonValue"] | dict[str, "JsonValue"]
"""What the JSON output of a backtest holds (the CLI's ``--json``, a job's result)."""

#: the fields of a trade as the API and the CLI show it (``return`` is `TradeRecord.return_`)
TRADE_COLUMNS = ("symbol", "entry_ts", "exit_ts", "size", "entry_price", "exit_price", "pnl",
                 "return", "fees", "exit_reason")


def canonical_json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False,
                      default=str)


def backtest_id(identity: Mapping[str, object]) -> str:
    """sha256 hex of the canonical JSON of ``identity`` (engine version added)."""
    return hashlib.sha256(canonical_json({"engine": ENGINE_VERSION, **identity})
                          .encode("utf-8")).hexdigest()


def json_scalar(value: object) -> Scalar:
    """``value`` as JSON can store it: numpy numbers become Python ones, NaN and infinity
    become None (JSON has neither; PostgreSQL refuses them)."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        value = float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, str | bool | int | float):
        return value
    raise TypeError(f"not a scalar: {type(value).__name__}")


def json_scalars(values: Mapping[str, object]) -> dict[str, Scalar]:
    return {key: json_scalar(value) for key, value in values.items()}


def iso(ns: int) -> str:
    """ISO 8601 UTC text of a nanosecond time, as the API and the CLI show times."""
    return ns_to_datetime(ns).isoformat()


@dataclass(frozen=True)
class TradeRecord:
    """One round trip. A trade still open at the end exits at the last bar's time (the mark)
    with ``exit_reason`` ``open``."""

    symbol: str
    entry_ts: int  # ns since the epoch
    exit_ts: int
    size: float  # negative: short
    entry_price: float
    exit_price: float
    pnl: float
    return_: float
    fees: float
    exit_reason: str

    @property
    def is_open(self) -> bool:
        return self.exit_reason == "open"

    def to_json(self) -> dict[str, JsonValue]:
        return {"symbol": self.symbol, "entry_ts": iso(self.entry_ts),
                "exit_ts": iso(self.exit_ts), "size": self.size,
                "entry_price": self.entry_price, "exit_price": self.exit_price,
                "pnl": self.pnl, "return": self.return_, "fees": self.fees,
                "exit_reason": self.exit_reason}


@dataclass(frozen=True, eq=False)
class EquityCurve:
    """Equity over time of one symbol's account, or of the whole run (``symbol`` "": the
    portfolio, or a universe's equal-weighted aggregate)."""

    symbol: str
    ts: np.ndarray  # int64 ns, increasing
    equity: np.ndarray  # float64

    def __eq__(self, other: object) -> bool:  # arrays compare element-wise: compare exactly
        return (isinstance(other, EquityCurve) and self.symbol == other.symbol
                and np.array_equal(self.ts, other.ts)
                and np.array_equal(self.equity, other.equity))

    __hash__ = None  # type: ignore[assignment]  # mutable arrays inside


@dataclass(frozen=True)
class DataRange:
    """The bars a backtest read: timeframe, instruments, the traded window and a digest."""

    timeframe: str
    universe: str | None
    symbols: tuple[str, ...]
    skipped: tuple[str, ...]  # asked for but without bars in the window
    start: str  # ISO time of the first bar traded
    end: str  # ISO time of the last bar
    bars: int  # bars in the window
    history_bars: int  # bars read, the warm-up history included
    calendar: str
    bars_per_year: float
    sha256: str  # of the symbols and every bar read

    def to_json(self) -> dict[str, JsonValue]:
        """The stored document; its keys are part of the backtest id: never rename them."""
        return {"timeframe": self.timeframe, "universe": self.universe,
                "symbols": list(self.symbols), "skipped": list(self.skipped),
                "from": self.start, "to": self.end, "bars": self.bars,
                "history_bars": self.history_bars, "calendar": self.calendar,
                "bars_per_year": self.bars_per_year, "sha256": self.sha256}

    @classmethod
    def from_json(cls, doc: Mapping[str, object]) -> DataRange:
        universe = doc.get("universe")
        return cls(timeframe=str(doc["timeframe"]),
                   universe=None if universe is None else str(universe),
                   symbols=_strings(doc.get("symbols")), skipped=_strings(doc.get("skipped")),
                   start=str(doc["from"]), end=str(doc["to"]), bars=_int(doc["bars"]),
                   history_bars=_int(doc["history_bars"]), calendar=str(doc["calendar"]),
                   bars_per_year=_float(doc["bars_per_year"]), sha256=str(doc["sha256"]))


def _strings(value: object) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list | tuple) else ()


def _int(value: object) -> int:
    if isinstance(value, int | float | str):
        return int(value)
    raise TypeError(f"not a number: {value!r}")


def _float(value: object) -> float:
    if isinstance(value, int | float | str):
        return float(value)
    raise TypeError(f"not a number: {value!r}")


@dataclass(frozen=True)
class StoredBacktest:
    """A computed backtest without its trades and curves (stored once, never updated)."""

    id: str
    tenant_id: int
    mode: str  # single | universe | portfolio
    config: Scalars  # the engine settings, as they enter the id
    data_range: DataRange
    strategy_name: str
    strategy_version: int | None
    code_hash: str
    metrics: Scalars
    per_symbol: tuple[Scalars, ...]  # "symbol" and that symbol's figures
    final_equity: float
    n_trades: int
    created_at: datetime
    duration_seconds: float
    status: str = "succeeded"
    error: str | None = None

    def metric(self, name: str) -> float | None:
        value = self.metrics.get(name)
        return float(value) if isinstance(value, int | float) else None

    def setting(self, name: str) -> Scalar:
        return self.config.get(name)


@dataclass(frozen=True)
class BacktestSummary:
    """A line of the list of a tenant's backtests."""

    id: str
    mode: str
    strategy_name: str
    strategy_version: int | None
    timeframe: str | None
    n_symbols: int
    start: str | None
    end: str | None
    final_equity: float
    n_trades: int
    total_return: float | None
    created_at: datetime


@dataclass(frozen=True)
class BacktestResult:
    """A stored backtest with (some of) its trades, as the service returns it."""

    backtest: StoredBacktest
    trades: Sequence[TradeRecord]  # in entry order; may be cut at a limit (see n_trades)
    reused: bool = False  # found stored under the same id: nothing was computed

    @property
    def id(self) -> str:
        return self.backtest.id

    def to_json(self) -> dict[str, JsonValue]:
        """The result as the CLI prints it (``--json``); the API's body has the same
        fields but ``reused``."""
        b = self.backtest
        return {
            "id": b.id, "status": b.status, "mode": b.mode,
            "strategy": {"name": b.strategy_name, "version": b.strategy_version,
                         "code_hash": b.code_hash},
            "config": dict(b.config), "data_range": b.data_range.to_json(),
            "metrics": dict(b.metrics), "final_equity": b.final_equity,
            "n_trades": b.n_trades, "trades": [t.to_json() for t in self.trades],
            "per_symbol": [dict(s) for s in b.per_symbol],
            "created_at": b.created_at.isoformat(), "duration_seconds": b.duration_seconds,
            "error": b.error, "reused": self.reused,
        }
