"""The jobs API on both backends: tenant-scoped reads and cancel, roles, problems, metrics,
and readiness naming the broker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from signalfactory.services.jobs import registry as job_service
from signalfactory.workers.runner import EmbeddedRunner
from tests.api_harness import ApiHarness, build_api_platform
from tests.helpers import engine_of
from tests.jobs_tasks import create_tables, reset_logging

JOBS = "/api/v1/jobs"


@pytest.fixture
def api(sf_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiHarness]:
    monkeypatch.setenv("SIGNALFACTORY_TASK_MODULES", "tests.jobs_tasks")
    monkeypatch.delenv("SIGNALFACTORY_BROKER_URL", raising=False)
    platform = build_api_platform(monkeypatch)
    create_tables(engine_of(platform))
    try:
        with ApiHarness(platform) as harness:
            yield harness
    finally:
        platform.close()


def test_jobs_are_read_and_cancelled_within_the_tenant(api: ApiHarness) -> None:
    acme, other = api.tenant("acme"), api.tenant("other")
    viewer, trader = api.key(acme, "viewer"), api.key(acme, "trader")
    outsider = api.key(other, "admin")
    p = api.platform
    done = job_service.submit(p, "test.slow", {"steps": 1, "delay": 0}, tenant_id=acme)
    EmbeddedRunner(p).run_until_idle()
    mine = job_service.submit(p, "test.slow", {"steps": 1}, tenant_id=acme)
    theirs = job_service.submit(p, "test.slow", {"steps": 1}, tenant_id=other)

    listed = api.client.get(JOBS, headers=api.auth(viewer)).json()
    assert listed["count"] == 2 and {j["id"] for j in listed["items"]} == {done.id, mine.id}
    assert listed["items"][0]["id"] == mine.id  # newest first
    queued = api.client.get(JOBS, params={"status": "queued"}, headers=api.auth(viewer)).json()
    assert [j["id"] for j in queued["items"]] == [mine.id]
    body = api.client.get(f"{JOBS}/{done.id}", headers=api.auth(viewer)).json()
    assert body["status"] == "succeeded" and body["progress"] == 1.0
    assert body["result"]["steps"] == 1 and body["attempts"] == 1 and body["error"] is None
    assert "lease_owner" not in body and "tenant_id" not in body

    # Another tenant's job is indistinguishable from a missing one, for reads and cancels.
    for path in (f"{JOBS}/{theirs.id}", f"{JOBS}/{uuid.uuid4()}"):
        assert api.client.get(path, headers=api.auth(trader)).status_code == 404
    assert api.client.post(f"{JOBS}/{theirs.id}/cancel",
                           headers=api.auth(trader)).status_code == 404
    assert job_service.get_job(p, theirs.id).status == "queued"
    assert [j["id"] for j in api.client.get(JOBS, headers=api.auth(outsider)).json()["items"]
            ] == [theirs.id]

    assert api.client.post(f"{JOBS}/{mine.id}/cancel", headers=api.auth(viewer)
                           ).status_code == 403
    cancelled = api.client.post(f"{JOBS}/{mine.id}/cancel", headers=api.auth(trader))
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    conflict = api.client.post(f"{JOBS}/{done.id}/cancel", headers=api.auth(trader))
    assert conflict.status_code == 409
    assert conflict.headers["content-type"].startswith("application/problem+json")
    assert "already succeeded" in conflict.json()["detail"]


def test_bad_requests_are_problems_not_errors(api: ApiHarness) -> None:
    key = api.key(api.tenant("acme"), "trader")
    assert api.client.get(JOBS).status_code == 401
    assert api.client.get(f"{JOBS}/not-a-job-id", headers=api.auth(key)).status_code == 422
    assert api.client.get(JOBS, params={"status": "exploded"},
                          headers=api.auth(key)).status_code == 422
    assert api.client.get(JOBS, params={"limit": 0}, headers=api.auth(key)).status_code == 422
    # NUL cannot reach PostgreSQL (it refuses it in text): a 422, not a 500
    assert api.client.get(JOBS, params={"kind": "a\x00b"},
                          headers=api.auth(key)).status_code == 422


def test_metrics_show_job_gauges(api: ApiHarness) -> None:
    job_service.submit(api.platform, "test.slow", {"steps": 1})
    job_service.submit(api.platform, "test.slow", {"steps": 1})
    text = api.client.get("/metrics").text
    assert 'signalfactory_jobs_queued{kind="test.slow"} 2.0' in text
    assert "signalfactory_dead_letter_jobs 0.0" in text
    assert "signalfactory_jobs_running 0.0" in text


@pytest.mark.parametrize("backend", ["sqlite"])
def test_readiness_names_an_unreachable_broker(sf_env: dict[str, str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNALFACTORY_BROKER_URL", "redis://127.0.0.1:1/0")
    reset_logging()
    platform = build_api_platform(monkeypatch)
    try:
        with ApiHarness(platform) as harness:
            response = harness.client.get("/readyz")
    finally:
        platform.close()
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["broker"] and body["checks"]["broker"].startswith("unreachable")
