"""The in-memory trading repositories keep the shared contract."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from signalfactory.services.ports import Database
from signalfactory.testing import InMemoryDatabase
from tests.trading_repository_contract import ALL_CHECKS


@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda c: c.__name__)
def test_memory_trading_repositories(check: Callable[[Database], None]) -> None:
    check(InMemoryDatabase())
