"""The read-only guard: the operator's flag seen by every process sharing the home, which
driver errors mean the primary is gone, and the mode ending by itself on a probe."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
import sqlalchemy.exc

from signalfactory.adapters.storage.read_only import ReadOnlyGuard, is_unreachable
from signalfactory.domain.errors import ReadOnlyError
from signalfactory.testing import memory_platform


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    return sa.create_engine(f"sqlite:///{tmp_path / 'sf.db'}")


def test_the_operator_flag_is_seen_by_another_process(tmp_path: Path, engine: sa.Engine) -> None:
    flag = tmp_path / "home" / "read-only"
    here = ReadOnlyGuard(flag, engine, flag_check_seconds=0)
    elsewhere = ReadOnlyGuard(flag, engine, flag_check_seconds=0)
    assert here.reason() is None and elsewhere.reason() is None
    here.set_operator("failover")
    assert elsewhere.reason() == "an operator switched the platform to read-only: failover"
    elsewhere.set_operator(None)
    assert not flag.exists() and here.reason() is None


def _driver_error(message: str) -> sqlalchemy.exc.OperationalError:
    return sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception(message))


def test_unreachable_means_gone_not_busy() -> None:
    assert is_unreachable(_driver_error("connection failed: ... Connection refused"))
    assert is_unreachable(_driver_error("server closed the connection unexpectedly"))
    assert not is_unreachable(_driver_error("database is locked"))
    assert not is_unreachable(_driver_error("sorry, too many clients already"))
    assert not is_unreachable(ValueError("connection refused"))


def test_the_mode_ends_on_the_first_probe_that_answers(tmp_path: Path,
                                                       engine: sa.Engine) -> None:
    guard = ReadOnlyGuard(tmp_path / "read-only", engine, retry_seconds=3600)
    guard.mark_down(_driver_error("Connection refused"))
    assert guard.reason() == "the primary database is unreachable (Connection refused)"
    assert guard.primary_down, "no probe before retry_seconds"
    guard.retry_seconds = 0
    guard.mark_down(_driver_error("Connection refused"))  # the next probe is due at once
    assert guard.reason() is None
    assert (guard.entered, guard.left) == (1, 1)


def test_the_memory_database_has_the_mode_too() -> None:
    platform = memory_platform()
    platform.database.set_read_only("maintenance")
    with pytest.raises(ReadOnlyError, match="maintenance"), platform.database.write():
        pass
    assert platform.database.health()["read_only"].startswith("degraded: read-only")
    platform.database.set_read_only(None)
    with platform.database.write():
        pass
