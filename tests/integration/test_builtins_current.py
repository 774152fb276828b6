"""A command checks the shipped strategies with one read and writes only when they changed
(``catalog.builtins_current``), on SQLite and PostgreSQL alike."""

from __future__ import annotations

import dataclasses

import pytest

from signalfactory.domain.strategies import BUILTIN_TEMPLATES
from signalfactory.domain.tenants import DEFAULT_TENANT_ID
from signalfactory.services.platform import Platform
from signalfactory.services.strategies.catalog import (
    builtins_current,
    ensure_builtins,
    get_strategy,
)


def _current(platform: Platform) -> bool:
    with platform.database.read(primary=True) as uow:
        return builtins_current(uow)


def test_builtins_are_current_once_stored_as_shipped(platform: Platform,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    assert not _current(platform)  # nothing stored yet
    with platform.database.write() as uow:
        ensure_builtins(uow)
    assert _current(platform)
    # A release that ships new defaults: the stored versions are no longer current, and
    # storing them adds a version, after which they are.
    shipped = BUILTIN_TEMPLATES["sma_cross"]
    newer = dataclasses.replace(shipped, params=tuple(
        dataclasses.replace(p, default=p.default + 1) if p.name == "fast" else p
        for p in shipped.params))
    monkeypatch.setitem(BUILTIN_TEMPLATES, "sma_cross", newer)
    assert not _current(platform)
    with platform.database.write() as uow:
        ensure_builtins(uow)
    assert _current(platform)
    with platform.database.read(primary=True) as uow:
        stored = get_strategy(uow, DEFAULT_TENANT_ID, "sma_cross")
    assert stored.version == 2 and stored.parameters["fast"] == 11
