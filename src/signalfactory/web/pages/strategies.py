"""Strategies: the list, one strategy with its versions, and the rule editor (validation as
you type through ``POST /api/v1/strategies/validate``, a preview on a chosen symbol through
``POST /api/v1/strategies/preview``, saving through ``POST /api/v1/strategies``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from signalfactory.domain.errors import NotFoundError
from signalfactory.domain.strategies.stored import StoredStrategy
from signalfactory.services.platform import Platform
from signalfactory.services.strategies.catalog import (
    get_strategy,
    list_strategies,
    list_versions,
    store_builtins_once,
)
from signalfactory.web.rendering import render
from signalfactory.web.session import PlatformDep, WebUserDep

router = APIRouter(include_in_schema=False)
RULE_EXAMPLE = ("entry: crosses_above(sma(close, 10), sma(close, 30)) and rsi(close, 14) < 70\n"
                "exit: crosses_below(sma(close, 10), sma(close, 30))")
#: symbols offered for previews (a datalist; any symbol may be typed)
SYMBOL_CHOICES = 500


def symbol_choices(platform: Platform) -> list[str]:
    with platform.database.read() as uow:
        return sorted(uow.instruments.symbols().values())[:SYMBOL_CHOICES]


@router.get("/strategies")
def strategies_page(request: Request, user: WebUserDep, platform: PlatformDep) -> Response:
    store_builtins_once(platform)
    with platform.database.read() as uow:
        items = list_strategies(uow, user.principal.tenant_id)
    own = [s for s in items if not s.builtin]
    return render(request, "strategies.html", {
        "user": user, "active": "strategies", "own": own,
        "builtins": [s for s in items if s.builtin]})


@router.get("/strategies/new")
def new_strategy(request: Request, user: WebUserDep, platform: PlatformDep,
                 copy: Annotated[str, Query(max_length=100)] = "") -> Response:
    source: StoredStrategy | None = None
    if copy:
        with platform.database.read() as uow:
            try:
                source = get_strategy(uow, user.principal.tenant_id, copy)
            except NotFoundError:
                source = None
    return render(request, "strategy_edit.html", {
        "user": user, "active": "strategies", "strategy": None,
        "rule": (source.rule_text if source and source.rule_text else RULE_EXAMPLE),
        "timeframe": source.timeframe if source else "1d",
        "description": source.description if source else "",
        "symbols": symbol_choices(platform)})


@router.get("/strategies/{name}")
def strategy_page(request: Request, user: WebUserDep, platform: PlatformDep,
                  name: Annotated[str, Path(max_length=100)],
                  version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None
                  ) -> Response:
    store_builtins_once(platform)
    with platform.database.read() as uow:
        try:
            current = get_strategy(uow, user.principal.tenant_id, name, version)
            versions = list_versions(uow, user.principal.tenant_id, name)
        except NotFoundError as exc:
            return render(request, "error.html", {"user": user, "active": "strategies",
                                                  "message": str(exc)}, status_code=404)
    return render(request, "strategy.html", {
        "user": user, "active": "strategies", "strategy": current,
        "versions": sorted(versions, key=lambda v: -v.version),
        "rule": current.rule_text or "", "timeframe": current.timeframe,
        "description": current.description, "symbols": symbol_choices(platform)})
