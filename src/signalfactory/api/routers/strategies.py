"""Strategies over HTTP: list, read, validate a rule, add a version (a rule, or uploaded
Python source that runs only in the sandbox)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, Field
from starlette.convertors import Convertor, register_url_convertor

from signalfactory.api.auth import PrincipalDep, TraderDep
from signalfactory.api.cached import cached_response
from signalfactory.api.deps import PlatformDep
from signalfactory.api.schemas import AUTH_RESPONSES, Problem, RequestModel
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.rules import check_rule
from signalfactory.domain.strategies import StrategyParam
from signalfactory.domain.strategies.source_check import MAX_SOURCE_BYTES
from signalfactory.domain.strategies.stored import StoredStrategy
from signalfactory.services.accounts.quotas import enforce_quota
from signalfactory.services.strategies.catalog import (
    RESERVED_NAMES,
    add_strategy,
    get_strategy,
    list_strategies,
    prepare_upload,
    store_builtins_once,
)
from signalfactory.services.strategies.preview import finite_or_none, preview_rule

router = APIRouter(prefix="/api/v1", responses=AUTH_RESPONSES)

STRATEGY_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such strategy (or version)"}}

PYTHON_EXAMPLE = """import numpy as np
from signalfactory.domain.rules import Evaluation
from signalfactory.domain.strategies import PythonStrategy


class Momentum(PythonStrategy):
    name = "momentum"
    defaults = {"lookback": 20}

    @property
    def required_lookback(self):
        return int(self.parameters["lookback"])

    def evaluate(self, universe):
        n = self.required_lookback
        close = universe.close
        past = np.full_like(close, np.nan)
        past[n:] = close[:-n]
        for start in universe.offsets[:-1]:
            past[start:start + n] = np.nan
        with np.errstate(invalid="ignore"):
            return Evaluation.from_arrays(universe, entry=close > past, exit=close < past,
                                          values={"past": past}, lookback=n)
"""

RULE_EXAMPLE = ("entry: crosses_above(sma(close, 10), sma(close, 30)) and rsi(close, 14) < 70\n"
                "exit: crosses_below(sma(close, 10), sma(close, 30))")


class StrategyOut(BaseModel):
    id: int
    name: str
    kind: str
    version: int
    rule_text: str | None
    class_path: str | None
    parameters: dict[str, Any]
    timeframe: str
    code_hash: str
    created_by: str
    created_at: str | None
    builtin: bool
    description: str
    versions: int
    source: str | None = Field(default=None, description="Uploaded Python source (runs only "
                                                         "in the sandbox; left out of lists); "
                                                         "class_path names its class and "
                                                         "code_hash is its sha256")

    @classmethod
    def of(cls, s: StoredStrategy, *, with_source: bool = True) -> StrategyOut:
        return cls(id=s.id, name=s.name, kind=s.kind, version=s.version,
                   rule_text=s.rule_text, class_path=s.class_path,
                   parameters=dict(s.parameters), timeframe=s.timeframe,
                   code_hash=s.code_hash, created_by=s.created_by,
                   created_at=s.created_at.isoformat() if s.created_at else None,
                   builtin=s.builtin, description=s.description, versions=s.versions,
                   source=s.source if with_source else None)


class StrategyList(BaseModel):
    items: list[StrategyOut]


class RuleIn(RequestModel):
    rule: str = Field(min_length=1, max_length=20_000, examples=[RULE_EXAMPLE])


class StrategyIn(RequestModel):
    """A rule (``rule``) or uploaded Python (``source``, optionally ``class_name`` and
    ``parameters``): exactly one of ``rule`` and ``source``."""

    name: str = Field(min_length=1, max_length=100, examples=["my_sma_cross"])
    rule: str | None = Field(default=None, min_length=1, max_length=20_000,
                             examples=[RULE_EXAMPLE])
    source: str | None = Field(
        default=None, min_length=1, max_length=4 * MAX_SOURCE_BYTES, examples=[PYTHON_EXAMPLE],
        description="Python source of a strategy class (see the README's Python strategies): "
                    "checked at upload (imports, names, attributes; the error names the line "
                    "and the rule), loaded in the sandbox, stored with its sha256, and only "
                    "ever run in the sandbox")
    class_name: str | None = Field(default=None, max_length=100, pattern=r"^[A-Za-z_]\w*$",
                                   description="The class to run when the source defines "
                                               "several")
    parameters: dict[str, StrategyParam] | None = Field(
        default=None, max_length=50, description="Keyword arguments of the class")
    timeframe: str = Field(default="1d", max_length=8, examples=["1d"])
    description: str = Field(default="", max_length=2000)


class PreviewIn(RequestModel):
    rule: str = Field(min_length=1, max_length=20_000, examples=[RULE_EXAMPLE])
    symbol: str = Field(min_length=1, max_length=64, pattern=r"^[^\x00]+$", examples=["SAAA"])
    timeframe: str = Field(default="1d", max_length=8, pattern=r"^[0-9A-Za-z]+$")
    bars: int = Field(default=500, ge=10, le=5000, description="The last N bars")


class PreviewBar(BaseModel):
    time: int = Field(description="Unix seconds (UTC)")
    open: float
    high: float
    low: float
    close: float


class PreviewSignal(BaseModel):
    time: int = Field(description="Unix seconds (UTC) of the bar")
    side: str
    score: float | None
    price: float


class PreviewOut(BaseModel):
    symbol: str
    timeframe: str
    bars: list[PreviewBar]
    signals: list[PreviewSignal]


class ValidationOut(BaseModel):
    valid: bool
    canonical: str
    lookback: int


@router.get("/strategies", response_model=StrategyList, tags=["strategies"],
            summary="Strategies visible to you: built-ins and your own, newest versions")
def get_strategies(principal: PrincipalDep, platform: PlatformDep) -> Response:
    store_builtins_once(platform)

    def load() -> StrategyList:
        with platform.database.read() as uow:
            items = list_strategies(uow, principal.tenant_id)
        # the list leaves uploaded sources out (up to 200 kB each); GET one shows it
        return StrategyList(items=[StrategyOut.of(s, with_source=False) for s in items])

    return cached_response(platform, "strategies", ("list",), load,
                           tenant_id=principal.tenant_id)


class _StrategyName(Convertor[str]):
    """A path segment naming a strategy: any but the API's own words (``validate``), so that
    ``GET /strategies/validate`` is the 405 of that POST-only resource, not a strategy."""

    regex = "(?!(?:" + "|".join(sorted(RESERVED_NAMES)) + ")$)[^/]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("strategy_name", _StrategyName())


@router.get("/strategies/{name:strategy_name}", response_model=StrategyOut, tags=["strategies"],
            summary="One strategy (newest version, or ?version=N)",
            responses=STRATEGY_NOT_FOUND)
def get_one_strategy(principal: PrincipalDep, platform: PlatformDep,
                     name: str = Path(max_length=100),
                     version: int | None = Query(default=None, ge=1, le=2**31 - 1)
                     ) -> Response:
    def load() -> StrategyOut:
        with platform.database.read() as uow:
            return StrategyOut.of(get_strategy(uow, principal.tenant_id, name, version))

    return cached_response(platform, "strategies", ("one", name.strip().lower(), version),
                           load, tenant_id=principal.tenant_id)


@router.post("/strategies/validate", response_model=ValidationOut, tags=["strategies"],
             summary="Check a rule; errors give the position and what was expected",
             responses={422: {"description": "The rule is invalid; `position` says where"}})
def validate_rule(body: RuleIn, _principal: PrincipalDep) -> ValidationOut:
    checked = check_rule(body.rule)
    return ValidationOut(valid=True, canonical=checked.canonical_text, lookback=checked.lookback)


@router.post("/strategies/preview", response_model=PreviewOut, tags=["strategies"],
             summary="The signals a rule would give on one symbol's last bars (nothing stored)",
             responses={404: {"model": Problem, "description": "Unknown symbol"},
                        422: {"description": "The rule is invalid (`position` says where), "
                                             "or the symbol has no bars of that timeframe"}})
def preview(body: PreviewIn, _principal: PrincipalDep, platform: PlatformDep) -> PreviewOut:
    window = preview_rule(platform, body.rule, body.symbol, body.timeframe, body.bars)
    u = window.bars
    seconds = (u.ts // 1_000_000_000).tolist()
    bars = [PreviewBar(time=t, open=o, high=h, low=lo, close=c) for t, o, h, lo, c in zip(
        seconds, u.open.tolist(), u.high.tolist(), u.low.tolist(), u.close.tolist(),
        strict=True)]
    return PreviewOut(symbol=window.symbol, timeframe=window.timeframe, bars=bars, signals=[
        PreviewSignal(time=r.ts // 1_000_000_000, side=r.side,
                      score=None if r.score is None else finite_or_none(r.score),
                      price=r.price) for r in window.signals])


@router.post("/strategies", response_model=StrategyOut, status_code=201, tags=["strategies"],
             summary="Add a rule or Python strategy, or a new version of one",
             responses={200: {"model": StrategyOut,
                              "description": "The same code is already the newest version: "
                                             "nothing new was stored"},
                        422: {"model": Problem,
                              "description": "Refused: the rule or source is invalid; for "
                                             "Python the detail names the line and the rule "
                                             "broken (e.g. [import], [dunder])"}})
def create_strategy(body: StrategyIn, principal: TraderDep, platform: PlatformDep,
                    response: Response) -> StrategyOut:
    if (body.rule is None) == (body.source is None):
        raise BadInputError("give exactly one of 'rule' (a rule text) and 'source' (Python)",
                            rule="strategy")
    if body.source is None and (body.class_name is not None or body.parameters):
        raise BadInputError("class_name and parameters belong to a Python source",
                            rule="strategy")
    upload = None
    if body.source is not None:  # checked and loaded in the sandbox before any transaction
        upload = prepare_upload(platform, principal.tenant_id, body.name, body.source,
                                class_name=body.class_name, parameters=body.parameters,
                                timeframe=body.timeframe)
    with platform.database.write() as uow:
        # A new version of an existing strategy takes no quota; a new strategy does.
        if uow.strategies.strategy_id(principal.tenant_id,
                                      body.name.strip().lower()) is None:
            enforce_quota(uow, principal, "strategies")
        item, created = add_strategy(uow, principal.tenant_id, body.name, rule_text=body.rule,
                                     timeframe=body.timeframe, description=body.description,
                                     created_by=principal.key_prefix or "api", upload=upload)
    platform.cache.invalidate("strategies")
    if not created:
        response.status_code = 200
    return StrategyOut.of(item)
