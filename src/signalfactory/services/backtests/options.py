"""What a backtest request says, and how its CLI-style options become an engine config.

The same request object serves the CLI (options), the API (a JSON body) and the job (its
payload); `BacktestRequest.to_payload` / `from_payload` carry it through the job queue without
the tenant, which the job takes from its own row.

Options, as the CLI spells them:

- ``--fill close|next_open``; ``--fees 0.001`` (fraction of traded value per order) and
  ``--fee-fixed 1.0`` (cash per order); ``--slippage BPS``; ``--cash 10000``;
- ``--size all | FRACTION | cash:AMOUNT | units:N | risk:PCT`` (``all`` = 1, ``0.25`` or
  ``25%`` = a quarter of equity, ``risk:0.01`` or ``risk:1%`` = risk 1 % of equity per trade
  with ``--atr-period`` x ``--atr-multiple`` as the stop distance);
- ``--units whole|fractional``; ``--direction long|short|both``;
- ``--stop-loss``, ``--take-profit``, ``--trailing-stop`` as fractions of the entry price;
- ``--from`` / ``--to`` as dates (``--to`` includes its whole day) or ISO timestamps;
- ``--max-positions N`` turns a universe run into one portfolio with shared cash.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from signalfactory.domain.backtest import BacktestConfig
from signalfactory.domain.errors import BadInputError

if TYPE_CHECKING:
    from signalfactory.domain.jobs import JsonObject  # the jobs' records: not for a command

SIZE_HELP = "use all, a fraction such as 0.5 or 50%, cash:AMOUNT, units:N or risk:PCT"
CALENDARS = ("stock", "crypto")


@dataclass(frozen=True)
class BacktestRequest:
    tenant_id: int
    strategy: str | None = None
    rule: str | None = None
    symbols: tuple[str, ...] = ()
    universe: str | None = None
    start: str | None = None  # --from
    end: str | None = None  # --to
    timeframe: str | None = None
    fill: str = "close"
    fees: float = 0.0
    fee_fixed: float = 0.0
    slippage: float = 0.0
    cash: float = 10_000.0
    size: str = "all"
    units: str = "whole"
    direction: str = "long"
    stop_loss: float | None = None
    take_profit: float | None = None
    trailing_stop: float | None = None
    max_positions: int | None = None
    atr_period: int = 14
    atr_multiple: float = 1.0
    close_at_end: bool = False
    calendar: str | None = None  # stock | crypto | None: crypto when every instrument is
    parameters: Mapping[str, Any] | None = field(default=None)

    def to_payload(self) -> JsonObject:
        """JSON-able form for a job payload (the tenant is the job's own)."""
        data = asdict(self)
        data.pop("tenant_id")
        data["symbols"] = list(self.symbols)
        data["parameters"] = dict(self.parameters) if self.parameters else None
        return data

    @classmethod
    def from_payload(cls, tenant_id: int, payload: Mapping[str, Any]) -> BacktestRequest:
        known = {f.name for f in fields(cls)} - {"tenant_id"}
        unknown = sorted(set(payload) - known)
        if unknown:
            raise BadInputError(f"backtest payload: unknown field {unknown[0]!r}")
        from pydantic import TypeAdapter, ValidationError

        data = {**dict(payload), "tenant_id": tenant_id}
        data["symbols"] = tuple(data.get("symbols") or ())
        try:  # the payload crossed a queue: check its types as the API checked the body
            request: BacktestRequest = TypeAdapter(cls).validate_python(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "payload"
            raise BadInputError(f"backtest payload: {where}: {first['msg']}") from None
        return request


def parse_size(text: str) -> tuple[str, float]:
    """(sizing, value) from ``all | FRACTION | cash:AMOUNT | units:N | risk:PCT``."""
    raw = text.strip().lower()
    if raw in ("all", "all-in", "1"):
        return "fraction", 1.0
    kind, sep, rest = raw.partition(":")
    if not sep:
        kind, rest = "fraction", raw
    if kind not in ("fraction", "cash", "units", "risk"):
        raise BadInputError(f"--size {text!r} is not valid; {SIZE_HELP}", rule="size")
    percent = rest.endswith("%") and kind in ("fraction", "risk")
    try:
        value = float(rest[:-1] if percent else rest)
    except ValueError:
        raise BadInputError(f"--size {text!r} is not valid; {SIZE_HELP}", rule="size") from None
    if percent:
        value /= 100.0
    if not math.isfinite(value) or value <= 0:
        raise BadInputError(f"--size {text!r} must be a positive number; {SIZE_HELP}",
                            rule="size")
    return kind, value


def parse_when(value: str | None, option: str, *, end_of_day: bool = False) -> datetime | None:
    """A date or ISO timestamp (UTC when no zone is given); a bare date with ``end_of_day``
    means the last instant of that day."""
    if value is None or value == "":
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise BadInputError(f"{option} {value!r} is not a date; use YYYY-MM-DD or an ISO "
                            "timestamp", rule=option.lstrip("-")) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if not 1900 <= when.year <= 2200:  # bar times are int64 nanoseconds: keep well inside
        raise BadInputError(f"{option} {value!r} is outside the years 1900..2200",
                            rule=option.lstrip("-"))
    date_only = len(value.strip()) <= 10
    if end_of_day and date_only:
        when = when + timedelta(days=1) - timedelta(microseconds=1)
    return when


def window(request: BacktestRequest) -> tuple[datetime | None, datetime | None]:
    start = parse_when(request.start, "--from")
    end = parse_when(request.end, "--to", end_of_day=True)
    if start is not None and end is not None and start > end:
        raise BadInputError(f"--from {request.start} is after --to {request.end}; swap them",
                            rule="from")
    return start, end


def _number(value: object, option: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadInputError(f"{option} must be a finite number, got {value!r}",
                            rule=option.lstrip("-"))
    return float(value)


def build_config(request: BacktestRequest) -> BacktestConfig:
    """The engine's config; BadInputError names the option to fix."""
    if request.fill not in ("close", "next_open"):
        raise BadInputError(f"--fill {request.fill!r} is not valid; use close or next_open",
                            rule="fill")
    if request.direction not in ("long", "short", "both"):
        raise BadInputError(f"--direction {request.direction!r} is not valid; use long, short "
                            "or both", rule="direction")
    if request.units not in ("whole", "fractional"):
        raise BadInputError(f"--units {request.units!r} is not valid; use whole or fractional",
                            rule="units")
    fees = _number(request.fees, "--fees")
    if fees < 0:
        raise BadInputError(f"--fees {fees} is negative; fees are a fraction of traded value "
                            "such as 0.001 (0.1 %)", rule="fees")
    if _number(request.fee_fixed, "--fee-fixed") < 0:
        raise BadInputError("--fee-fixed is negative; use 0 or a cash amount per order",
                            rule="fees")
    if _number(request.slippage, "--slippage") < 0:
        raise BadInputError("--slippage is negative; use 0 or more basis points",
                            rule="slippage")
    if _number(request.cash, "--cash") <= 0:
        raise BadInputError("--cash must be a positive amount", rule="cash")
    if request.max_positions is not None and not 1 <= request.max_positions <= 100_000:
        raise BadInputError("--max-positions must be between 1 and 100000",
                            rule="max_positions")
    if not 1 <= request.atr_period <= 10_000:
        raise BadInputError("--atr-period must be between 1 and 10000", rule="atr_period")
    if request.calendar is not None and request.calendar not in CALENDARS:
        raise BadInputError(f"--calendar {request.calendar!r} is not valid; use stock or "
                            "crypto", rule="calendar")
    for name in ("stop_loss", "take_profit", "trailing_stop"):
        value = getattr(request, name)
        if value is not None:
            _number(value, "--" + name.replace("_", "-"))
    sizing, size_value = parse_size(request.size)
    return BacktestConfig(
        direction=request.direction,  # type: ignore[arg-type]  # checked above
        fill=request.fill,  # type: ignore[arg-type]
        initial_cash=float(request.cash), fee_pct=fees, fee_fixed=float(request.fee_fixed),
        slippage_bps=float(request.slippage), sizing=sizing,  # type: ignore[arg-type]
        size_value=size_value, atr_multiple=_number(request.atr_multiple, "--atr-multiple"),
        whole_units=request.units == "whole", stop_loss=request.stop_loss,
        take_profit=request.take_profit, trailing_stop=request.trailing_stop,
        close_at_end=bool(request.close_at_end))
