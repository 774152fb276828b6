"""The escape suite: hostile Python strategies uploaded through the API, each refused at
upload or stopped at run time with an error naming what stopped it, while the platform
keeps serving (a liveness request during the run, a normal sandboxed scan after it).

Limits are small here (CPU 1 s, memory 256 MB) so the whole suite stays short; the wall
clock (8 s) stays well above the CPU limit so that a busy machine cannot turn a CPU stop
into a wall-clock one (the wall clock has its own case, with a CPU allowance above it).

Every case adds a row to ``build/sandbox-escapes.md`` (written at the end of the module;
with -s it is printed too): how many were refused, and how each one was stopped.
"""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from signalfactory.adapters.sandbox.pool import ProcessSandbox
from signalfactory.bootstrap import build_platform
from signalfactory.services.marketdata.sample import store_sample
from signalfactory.services.platform import Platform
from signalfactory.services.signals.evaluation import run_stored
from signalfactory.services.strategies.catalog import get_strategy
from signalfactory.settings import Settings
from tests.api_harness import ApiHarness
from tests.integration.sandbox_hostile import CASES, Hostile, strategy

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "build" / "sandbox-escapes.md"
ROWS = ROOT / "build" / "sandbox-escapes" / os.environ.get("PYTEST_XDIST_TESTRUNUID",
                                                          uuid.uuid4().hex)
BENIGN = strategy(
    """
    fast = pd.Series(universe.close).rolling(5).mean().to_numpy()
    slow = pd.Series(universe.close).rolling(20).mean().to_numpy()
    starts = np.zeros(universe.close.shape[0], dtype=bool)
    starts[universe.offsets[:-1]] = True
    with np.errstate(invalid="ignore"):
        above = fast > slow
    """,
    members="required_lookback = 20",
    result="Evaluation.from_arrays(universe, entry=above & ~starts, exit=~above)")


@dataclass(frozen=True)
class Outcome:
    stage: str
    stopped_by: str
    detail: str


class Suite:
    def __init__(self, api: ApiHarness, db_path: Path, slow: ProcessSandbox) -> None:
        self.api = api
        self.db_path = db_path
        self.slow = slow
        tenant = api.tenant("escapes", tier="enterprise")
        self.tenant = tenant
        self.headers = api.auth(api.key(tenant, "trader"))
        created = self.post("/api/v1/strategies", {"name": "benign", "source": BENIGN})
        assert created.status_code == 201, created.text

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.api.client.post(path, json=body, headers=self.headers)

    def attempt(self, case: Hostile) -> Outcome:
        name = f"hostile-{case.id}"
        source = case.source.replace("{db_path}", str(self.db_path))
        uploaded = self.post("/api/v1/strategies", {"name": name, "source": source})
        if uploaded.status_code == 422:
            body = uploaded.json()
            return Outcome("upload", str(body.get("rule")), str(body["detail"]))
        assert uploaded.status_code == 201, uploaded.text
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(self._run, name, case)
            # the server answers while the hostile strategy runs
            assert self.api.client.get("/livez").status_code == 200
            running.result()
        with self.api.platform.database.read(primary=True) as uow:
            version = get_strategy(uow, self.tenant, name).version_id
            runs = uow.sandbox_runs.recent(self.tenant, strategy_version_id=version)
        assert runs, "every sandbox run is recorded"
        _id, last = runs[0]
        assert last.outcome == "failed", last
        return Outcome("run", last.limit_hit or "error", last.error or "")

    def _run(self, name: str, case: Hostile) -> None:
        if case.limits is None:
            scan = self.post("/api/v1/scans", {"strategy": name})
            assert scan.status_code == 201, scan.text
            assert scan.json()["status"] == "failed", scan.json()
            return
        platform = dataclasses.replace(self.api.platform, sandbox=self.slow)
        with platform.database.read(primary=True) as uow:
            stored = get_strategy(uow, self.tenant, name)
        assert run_stored(platform, stored).status == "failed"

    def still_serving(self) -> None:
        assert self.api.client.get("/livez").status_code == 200
        assert self.api.client.get("/readyz").status_code == 200
        scan = self.post("/api/v1/scans", {"strategy": "benign"})
        assert scan.status_code == 201 and scan.json()["status"] == "succeeded", scan.text


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    home = tmp_path_factory.mktemp("escapes")
    db_path = home / "sf.db"
    settings = Settings(home=home / "home", database_url=f"sqlite:///{db_path}",
                        sandbox_cpu_seconds=1, sandbox_memory_mb=256,
                        sandbox_wall_seconds=8, sandbox_pool_size=2)
    platform: Platform = build_platform(settings, migrate_db=True)
    slow = ProcessSandbox(next(c.limits for c in CASES if c.limits is not None), 1)
    try:
        store_sample(platform, symbols=6, bars=300, seed=5)
        with ApiHarness(platform) as api:
            yield Suite(api, db_path, slow)
    finally:
        slow.close()
        platform.close()
        _write_report()


def _write_report() -> None:
    rows = [json.loads(p.read_text()) for p in sorted(ROWS.glob("*.json"))]
    if not rows:
        return
    order = {c.id: i for i, c in enumerate(CASES)}
    rows.sort(key=lambda r: order.get(r["id"], 0))
    by_stage = {stage: sum(1 for r in rows if r["stage"] == stage) for stage in ("upload", "run")}
    mechanisms: dict[str, int] = {}
    for r in rows:
        key = f"{r['stage']}: {r['stopped_by']}"
        mechanisms[key] = mechanisms.get(key, 0) + 1
    lines = [f"# Sandbox escape suite: {len(rows)} hostile strategies, "
             f"{sum(r['stopped'] for r in rows)} stopped",
             "", f"Refused at upload: {by_stage['upload']}; stopped at run time: "
                 f"{by_stage['run']}.", "",
             "| stopped by | count |", "|---|---|",
             *(f"| {k} | {v} |" for k, v in sorted(mechanisms.items())), "",
             "| case | what it tries | stage | stopped by | message |", "|---|---|---|---|---|",
             *(f"| {r['id']} | {r['what']} | {r['stage']} | {r['stopped_by']} | "
               f"{r['detail'][:140].replace('|', '/')} |" for r in rows)]
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n" + "\n".join(lines))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_strategy_is_stopped(suite: Suite, case: Hostile) -> None:
    outcome = suite.attempt(case)
    stopped = (outcome.stage == case.stage and outcome.stopped_by == case.stopped_by
               and case.fragment.lower() in outcome.detail.lower())
    ROWS.mkdir(parents=True, exist_ok=True)
    (ROWS / f"{case.id}.json").write_text(json.dumps(
        {"id": case.id, "what": case.what, "stopped": stopped, **dataclasses.asdict(outcome)}))
    assert (outcome.stage, outcome.stopped_by) == (case.stage, case.stopped_by), outcome
    assert case.fragment.lower() in outcome.detail.lower(), outcome
    suite.still_serving()


def test_the_suite_is_big_enough() -> None:
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)
    assert {c.stage for c in CASES} == {"upload", "run"}
