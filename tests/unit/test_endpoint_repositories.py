"""The in-memory endpoint and campaign repositories keep the shared contract."""

from __future__ import annotations

from signalfactory.testing import InMemoryDatabase
from tests.endpoint_repository_contract import (
    check_campaign_repository,
    check_endpoint_repository,
)


def test_memory_endpoint_repository() -> None:
    check_endpoint_repository(InMemoryDatabase())


def test_memory_campaign_repository() -> None:
    check_campaign_repository(InMemoryDatabase())
