"""Uploaded Python strategies: the sandbox pool (warm reuse, replacement after a breach,
determinism, the same answers as in-process), the worker's OS isolation, and every path
that evaluates a stored strategy (API upload and scan, signals, live evaluation, backtest)
running the upload in the sandbox and recording the run."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from signalfactory.adapters.sandbox.pool import ProcessSandbox
from signalfactory.adapters.sandbox.template_client import TEMPLATE_ENV
from signalfactory.adapters.sandbox.worker import WorkerConfig, isolate
from signalfactory.adapters.strategies.loading import load_strategy
from signalfactory.domain.bars import BarSeries, BarUniverse
from signalfactory.domain.errors import TemporaryError
from signalfactory.domain.sandbox import SandboxError, SandboxLimits, SandboxProgram
from signalfactory.domain.timeframes import Timeframe
from signalfactory.services.backtests.options import BacktestRequest
from signalfactory.services.backtests.run import run_backtest
from signalfactory.services.marketdata.bars import BarsWritten
from signalfactory.services.marketdata.sample import store_sample
from signalfactory.services.platform import Platform
from signalfactory.services.signals import live
from signalfactory.services.signals.evaluation import run_stored
from signalfactory.services.strategies.catalog import get_strategy
from tests.api_harness import BACKENDS, ApiHarness, module_platform
from tests.sandbox_strategies import RANDOM, SMA_CROSS

LOOP = SMA_CROSS.replace("        fast = sma(", "        while True:\n            pass\n"
                                               "        fast = sma(")


def bars(n_symbols: int = 4, n_bars: int = 400, seed: int = 1) -> BarUniverse:
    rng = np.random.default_rng(seed)
    series = []
    for i in range(n_symbols):
        close = 50.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, n_bars)))
        ts = (1_600_000_000 + 86_400 * np.arange(n_bars, dtype=np.int64)) * 10**9
        series.append(BarSeries(f"S{i}", ts, close, close * 1.01, close * 0.99, close,
                                np.full(n_bars, 1e4)))
    return BarUniverse.from_series(series)


SECRET = "SIGNALFACTORY_SANDBOX_TEST_SECRET"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[ProcessSandbox]:
    os.environ[SECRET] = "hunter2"  # in the server's environment when the pool starts
    pool = ProcessSandbox(SandboxLimits(cpu_seconds=1, memory_mb=512, wall_seconds=10), 2)
    try:
        pool.warm_up()
        yield pool
    finally:
        pool.close()
        del os.environ[SECRET]


def _pids(pool: ProcessSandbox) -> set[int]:
    return {w.pid for ws in pool._idle.values() for w in ws}


def test_the_sandbox_answers_like_the_same_code_in_process(sandbox: ProcessSandbox,
                                                          tmp_path: Path) -> None:
    u = bars()
    path = tmp_path / "sma.py"
    path.write_text(SMA_CROSS)
    expected = load_strategy(f"{path}:SmaCross", {"fast": 5}).evaluate(u)
    got = sandbox.evaluate(SandboxProgram(SMA_CROSS, "SmaCross", {"fast": 5}), u).evaluation
    for side in ("entry", "exit", "short_entry", "short_exit"):
        np.testing.assert_array_equal(getattr(got, side), getattr(expected, side))
    fired = np.flatnonzero(expected.entry | expected.exit)
    assert fired.size > 10
    np.testing.assert_array_equal(got.score[fired], expected.score[fired])
    assert got.values_at(int(fired[0])) == expected.values_at(int(fired[0]))


def test_warm_workers_are_reused_and_a_breach_replaces_its_worker(
        sandbox: ProcessSandbox) -> None:
    u = bars(2, 100)
    program = SandboxProgram(SMA_CROSS, "SmaCross", {"fast": 3})
    info = sandbox.load(program)
    assert (info.name, info.required_lookback) == ("sma_cross_py", 30)
    spawned, pids = sandbox.spawned, _pids(sandbox)
    results = [sandbox.evaluate(program, u) for _ in range(3)]
    assert not any(r.fresh_worker for r in results), "the loaded worker serves every call"
    (worker,) = sandbox._idle[program.key]
    assert worker.supplied == {"ts", "close"}, "only the columns the strategy reads are sent"
    assert sandbox.spawned == spawned and _pids(sandbox) == pids
    with pytest.raises(SandboxError) as stopped:
        sandbox.evaluate(SandboxProgram(LOOP, "SmaCross"), u)
    assert stopped.value.limit == "cpu" and "CPU time limit (1 s)" in str(stopped.value)
    again = sandbox.evaluate(program, u)
    assert not again.fresh_worker, "a breach elsewhere leaves this program's worker alone"
    # a third program with the pool full replaces the least recently used idle worker
    third = sandbox.evaluate(SandboxProgram(SMA_CROSS, "SmaCross", {"fast": 4}), u)
    assert third.fresh_worker and len(_pids(sandbox)) <= sandbox.pool_size


def test_a_run_is_deterministic_for_the_same_input(sandbox: ProcessSandbox) -> None:
    program = SandboxProgram(RANDOM, "Coin")
    u = bars(3, 200)
    first = sandbox.evaluate(program, u).evaluation
    second = sandbox.evaluate(program, u).evaluation
    np.testing.assert_array_equal(first.entry, second.entry)
    np.testing.assert_array_equal(first.exit, second.exit)
    other = sandbox.evaluate(program, bars(3, 200, seed=2)).evaluation
    assert not np.array_equal(first.entry, other.entry) or not np.array_equal(
        first.exit, other.exit), "another input draws another seed"


def test_workers_see_none_of_the_servers_environment(sandbox: ProcessSandbox) -> None:
    sandbox.load(SandboxProgram(SMA_CROSS, "SmaCross"))
    pids = _pids(sandbox)
    assert pids
    for pid in pids:
        # what the template was started with (the workers cleared even that)
        initial = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        names = {item.split(b"=")[0].decode() for item in initial if item}
        assert names <= set(TEMPLATE_ENV), names
        assert b"hunter2" not in b"".join(initial)


def test_the_worker_checks_the_source_again(sandbox: ProcessSandbox) -> None:
    """Code that never passed an upload (a tampered row) is refused by the worker itself."""
    with pytest.raises(SandboxError) as refused:
        sandbox.load(SandboxProgram(SMA_CROSS.replace("import numpy as np",
                                                      "import numpy as np\nimport os"),
                                    "SmaCross"))
    assert refused.value.limit == "refused" and "[import]" in str(refused.value)


def test_many_threads_share_the_pool(sandbox: ProcessSandbox) -> None:
    program = SandboxProgram(SMA_CROSS, "SmaCross")
    u = bars(3, 150)
    expected = int(sandbox.evaluate(program, u).evaluation.entry.sum())
    counts: list[int] = []

    def call() -> None:
        counts.append(int(sandbox.evaluate(program, u).evaluation.entry.sum()))

    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert counts == [expected] * 6


@pytest.mark.skipif(os.geteuid() != 0, reason="the namespace, chroot and user switch need "
                                              "root; without it the audit hook and limits "
                                              "remain (tested by the escape suite)")
def test_an_isolated_worker_has_no_network_files_user_or_children(tmp_path: Path) -> None:
    """The OS layer alone, with no audit hook: what a strategy that escaped Python finds."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    empty = tmp_path / "root"
    empty.mkdir(mode=0o555)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            layers = isolate(WorkerConfig(cpu_seconds=2, memory_mb=256, open_files=16,
                                          empty_root=str(empty), read_roots=(),
                                          template_pid=os.getppid(), nobody=(65534, 65534)),
                             write_end)
            found = [f"layers={sorted(k for k, v in layers.items() if v)}"]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1)
                found.append("connected")
            except OSError as exc:
                found.append(f"connect:{exc.errno}")
            found.append(f"root={list(Path('/').iterdir())}")
            found.append(f"uid={os.getuid()}")
            try:
                with open("/x", "w") as handle:  # noqa: PTH123
                    handle.write("x")
                found.append("wrote")
            except OSError as exc:
                found.append(f"write:{exc.errno}")
            try:
                child = os.fork()
                if child == 0:
                    os._exit(0)
                found.append("forked")
            except OSError as exc:
                found.append(f"fork:{exc.errno}")
            try:
                threading.Thread(target=lambda: None).start()
                found.append("thread")
            except RuntimeError:
                found.append("thread:refused")
            os.write(write_end, "|".join(found).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end) as report:
        found = report.read().split("|")
    listener.close()
    import errno

    assert found[0] == "layers=['chroot', 'netns', 'nobody']"
    assert found[1] in (f"connect:{errno.ENETUNREACH}", f"connect:{errno.ECONNREFUSED}")
    assert found[2:4] == ["root=[]", "uid=65534"]
    assert found[4].startswith("write:") and found[5] == f"fork:{errno.EAGAIN}"
    assert found[6] == "thread:refused"


# -- every evaluation path, through the API and the services ------------------------------

shared_platform = pytest.fixture(scope="module", params=BACKENDS)(module_platform)


@pytest.fixture(scope="module")
def loaded(shared_platform: Platform) -> Platform:
    store_sample(shared_platform, symbols=5, bars=300, seed=7)
    return shared_platform


@pytest.fixture
def api(loaded: Platform) -> Iterator[ApiHarness]:
    with ApiHarness(loaded) as harness:
        yield harness


def test_upload_through_the_api_then_every_path_runs_it_in_the_sandbox(
        api: ApiHarness) -> None:
    tenant = api.tenant("python", tier="premium")
    headers = api.auth(api.key(tenant, "trader"))
    body = {"name": "my_sma", "source": SMA_CROSS, "parameters": {"fast": 5},
            "description": "uploaded"}
    created = api.client.post("/api/v1/strategies", json=body, headers=headers)
    assert created.status_code == 201, created.text
    stored = created.json()
    digest = hashlib.sha256(SMA_CROSS.encode()).hexdigest()
    assert (stored["kind"], stored["code_hash"], stored["class_path"], stored["source"]) == (
        "python", digest, "SmaCross", SMA_CROSS)
    assert stored["parameters"] == {"fast": 5} and stored["version"] == 1
    again = api.client.post("/api/v1/strategies", json=body, headers=headers)
    assert again.status_code == 200 and again.json()["version"] == 1

    listed = api.client.get("/api/v1/strategies", headers=headers).json()["items"]
    assert next(i for i in listed if i["name"] == "my_sma")["source"] is None, "lists are lean"
    one = api.client.get("/api/v1/strategies/my_sma", headers=headers).json()
    assert one["source"] == SMA_CROSS and one["code_hash"] == digest
    bad = api.client.post("/api/v1/strategies", headers=headers, json={
        "name": "bad", "source": SMA_CROSS.replace("import numpy as np", "import os")})
    assert bad.status_code == 422
    assert bad.json()["rule"] == "import" and "line 1, column 1" in bad.json()["detail"]
    both = api.client.post("/api/v1/strategies", headers=headers,
                           json={"name": "x", "rule": "entry: close > 1", "source": "x"})
    assert both.status_code == 422
    assert api.client.get("/api/v1/strategies", headers=headers).json()["items"] == listed

    scan = api.client.post("/api/v1/scans", json={"strategy": "my_sma"}, headers=headers)
    assert scan.status_code == 201 and scan.json()["status"] == "succeeded", scan.text
    platform = api.platform
    with platform.database.read(primary=True) as uow:
        version = get_strategy(uow, tenant, "my_sma")
    report = run_stored(platform, version)
    assert report.status == "succeeded" and report.signals_found > 0, report
    page = api.client.get("/api/v1/signals", params={"strategy": "my_sma", "limit": 5},
                          headers=headers).json()["items"]
    assert page and {s["code_hash"] for s in page} == {digest}

    with platform.database.read(primary=True) as uow:
        ids = [i.id for i in uow.instruments.find(tag=None, symbols=None)][:2]
        last = int(uow.bars.load(Timeframe.parse("1d"), {i: str(i) for i in ids},
                                 np.array(ids, dtype=np.int64), None).ts.max())
    lived = live.evaluate_new_bars(platform, BarsWritten(Timeframe.parse("1d"),
                                                        dict.fromkeys(ids, last), 0, "test"))
    assert lived is not None and "my_sma" not in lived.failed

    result = run_backtest(platform, BacktestRequest(tenant_id=tenant, strategy="my_sma",
                                                    symbols=("SAAA",)))
    assert result.backtest.code_hash == digest

    with platform.database.read(primary=True) as uow:
        runs = [r for _i, r in uow.sandbox_runs.recent(tenant, limit=50)]
    assert {r.purpose for r in runs} >= {"scan", "signals", "live", "backtest"}
    assert all(r.code_hash == digest and r.strategy_version_id == version.version_id
               for r in runs)
    assert all(r.outcome == "succeeded" and r.bars > 0 and r.first_bar is not None
               and r.last_bar is not None and r.duration_ms > 0 for r in runs)


def test_a_dead_template_is_replaced_and_its_workers_forgotten() -> None:
    pool = ProcessSandbox(SandboxLimits(cpu_seconds=2, memory_mb=512, wall_seconds=5), 1)
    try:
        program = SandboxProgram(SMA_CROSS, "SmaCross")
        u = bars(2, 80)
        pool.evaluate(program, u)
        template = pool._template
        assert template is not None
        os.kill(template._process.pid, 9)  # the template process this pool started
        template._process.wait(5)
        again = pool.evaluate(program, u)
        assert again.fresh_worker and pool._template is not template
    finally:
        pool.close()


def test_a_closed_pool_starts_nothing() -> None:
    pool = ProcessSandbox(SandboxLimits(), 1)
    pool.close()
    with pytest.raises(TemporaryError, match="shut down"):
        pool.load(SandboxProgram(SMA_CROSS, "SmaCross"))
    assert pool._template is None and pool._runtime is None
