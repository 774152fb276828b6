"""The SQL endpoint and campaign repositories keep the shared contract (SQLite, PostgreSQL)."""

from __future__ import annotations

from signalfactory.services.platform import Platform
from tests.endpoint_repository_contract import (
    check_campaign_repository,
    check_endpoint_repository,
)


def test_sql_endpoint_repository(platform: Platform) -> None:
    check_endpoint_repository(platform.database)


def test_sql_campaign_repository(platform: Platform) -> None:
    check_campaign_repository(platform.database)
