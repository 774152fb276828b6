"""Uploaded strategies in the services, on the in-memory platform (a real sandbox behind
it): upload checks, runs recorded in the memory repository, failures named and recorded."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from signalfactory.domain.errors import BadInputError
from signalfactory.domain.sandbox import SandboxRun
from signalfactory.services.marketdata.sample import store_sample
from signalfactory.services.platform import Platform
from signalfactory.services.signals.evaluation import run_stored
from signalfactory.services.strategies.catalog import add_strategy, prepare_upload
from signalfactory.settings import Settings
from signalfactory.testing.memory import InMemoryDatabase, memory_platform
from signalfactory.testing.sandbox import sandbox_run_store
from tests.sandbox_strategies import SMA_CROSS


@pytest.fixture(scope="module")
def platform() -> Iterator[Platform]:
    p = memory_platform(Settings(sandbox_cpu_seconds=1, sandbox_wall_seconds=10))
    try:
        store_sample(p, symbols=3, bars=200, seed=2)
        yield p
    finally:
        p.close()


def _runs(platform: Platform) -> list[SandboxRun]:
    assert isinstance(platform.database, InMemoryDatabase)
    return list(sandbox_run_store(platform.database.state).runs.values())


def test_upload_store_and_run_records_every_run(platform: Platform) -> None:
    upload = prepare_upload(platform, 1, "mem_sma", SMA_CROSS, parameters={"fast": 4})
    assert upload.info.required_lookback == 30 and upload.program.class_name == "SmaCross"
    with platform.database.write() as uow:
        stored, created = add_strategy(uow, 1, "mem_sma", upload=upload)
    assert created and stored.sandboxed and stored.kind == "python"
    with platform.database.write() as uow:
        _same, created = add_strategy(uow, 1, "mem_sma", upload=upload)
    assert not created, "the same source, class and parameters add no version"
    report = run_stored(platform, stored)
    assert report.status == "succeeded" and report.signals_written > 0
    (run,) = _runs(platform)
    assert (run.purpose, run.outcome, run.code_hash, run.instruments, run.bars) == (
        "signals", "succeeded", stored.code_hash, 3, 600)


def test_a_breach_is_recorded_and_named(platform: Platform) -> None:
    looping = SMA_CROSS.replace("        gap = fast - slow",
                                "        while True:\n            pass\n        gap = fast - slow")
    upload = prepare_upload(platform, 1, "spin", looping)
    with platform.database.write() as uow:
        stored, _ = add_strategy(uow, 1, "spin", upload=upload)
    report = run_stored(platform, stored)
    assert report.status == "failed" and "CPU time limit (1 s)" in (report.error or "")
    last = _runs(platform)[-1]
    assert (last.outcome, last.limit_hit) == ("failed", "cpu")


def test_uploads_are_refused_before_anything_is_stored(platform: Platform) -> None:
    with platform.database.read() as uow:
        before = len(uow.strategies.visible(1))
    with pytest.raises(BadInputError, match=r"\[builtin\]: line 27"):
        prepare_upload(platform, 1, "bad", SMA_CROSS.replace(
            "        gap = fast - slow", "        gap = fast - slow\n        exec('x')"))
    with pytest.raises(BadInputError, match="sandbox-load"):
        prepare_upload(platform, 1, "bad", SMA_CROSS, parameters={"nope": 1})
    with pytest.raises(BadInputError, match="built-in"):
        prepare_upload(platform, 1, "sma_cross", SMA_CROSS)
    with pytest.raises(BadInputError, match="rule strategy"), \
            platform.database.write() as uow:
        add_strategy(uow, 1, "ruled", rule_text="entry: close > 1")
        add_strategy(uow, 1, "ruled", upload=prepare_upload(platform, 1, "ruled", SMA_CROSS))
    with platform.database.read() as uow:
        assert len(uow.strategies.visible(1)) == before
