"""Celery workers (real subprocesses) on the Redis and RabbitMQ running on this machine.

The broker tests skip with the reason when a broker is unreachable, except under CI=true, where
an unreachable broker fails the run. Each test uses its own queue, deleted afterwards.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from signalfactory.bootstrap import build_platform
from signalfactory.domain.errors import BadInputError
from signalfactory.services.jobs import registry as job_service
from signalfactory.services.platform import Platform
from signalfactory.settings import Settings, load_settings, parse_queue_classes
from signalfactory.workers.celery_app import (
    build_beat_schedule,
    make_celery_app,
    sweep,
    worker_queues,
)
from tests.conftest import IN_CI
from tests.helpers import engine_of
from tests.integration.test_jobs_kill import (
    effects_of,
    kill_hard,
    runs_of,
    start_worker,
    stop_gently,
    wait_running,
)
from tests.jobs_tasks import create_tables

BROKERS = {
    "redis": os.environ.get("SIGNALFACTORY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
    "rabbitmq": os.environ.get("SIGNALFACTORY_TEST_AMQP_URL",
                               "amqp://guest:guest@127.0.0.1:5672//"),
}


def _broker_problem(url: str) -> str | None:
    from kombu.connection import Connection

    try:
        with Connection(url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
        return None
    except Exception as exc:  # any failure means "unreachable" here
        return f"{type(exc).__name__}: {exc}"


@pytest.fixture(params=sorted(BROKERS))
def broker_url(request: pytest.FixtureRequest) -> str:
    url = BROKERS[str(request.param)]
    problem = _broker_problem(url)
    if problem:
        message = f"{request.param} broker at {url} is unreachable ({problem})"
        if IN_CI:
            pytest.fail(message + "; CI=true requires it")
        pytest.skip(message)
    return url


@pytest.fixture
def celery_env(tmp_path: Path, broker_url: str,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    queue = f"sf-test-{uuid.uuid4().hex[:10]}"
    env = {"SIGNALFACTORY_HOME": str(tmp_path / "home"),
           "SIGNALFACTORY_DATABASE_URL": f"sqlite:///{tmp_path / 'sf.db'}",
           "SIGNALFACTORY_BROKER_URL": broker_url, "SIGNALFACTORY_CELERY_QUEUE": queue,
           "SIGNALFACTORY_TASK_MODULES": "tests.jobs_tasks",
           "SIGNALFACTORY_JOB_LEASE_SECONDS": "2", "SIGNALFACTORY_JOB_BACKOFF_SECONDS": "0",
           # Redis hands an unacknowledged message out again after this, checked each second.
           "SIGNALFACTORY_CELERY_VISIBILITY_TIMEOUT": "4",
           "SIGNALFACTORY_CELERY_RESTORE_INTERVAL": "1", "SIGNALFACTORY_LOG_FORMAT": "json"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield env
    from kombu.connection import Connection

    with Connection(broker_url, connect_timeout=3) as conn:
        for name in (queue, f"{queue}.realtime", f"{queue}.bulk"):
            conn.default_channel.queue_delete(name)


@pytest.fixture
def cp(celery_env: dict[str, str]) -> Iterator[Platform]:
    platform = build_platform(migrate_db=True)
    create_tables(engine_of(platform))
    try:
        yield platform
    finally:
        platform.close()


def test_celery_app_is_configured_for_at_least_once_delivery(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNALFACTORY_BROKER_URL", "redis://127.0.0.1:6379/15")
    monkeypatch.setenv("SIGNALFACTORY_SCHEDULES", '[{"name": "collect-daily", "cron": '
                       '"0 22 * * 1-5", "kind": "collect", "payload": {"symbols": ["AAA"]}}]')
    settings = load_settings()
    conf = make_celery_app(settings).conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["visibility_timeout"] > settings.job_lease_seconds
    schedule = build_beat_schedule(settings)
    entry = schedule["schedule:collect-daily"]
    assert entry["args"] == ("collect-daily",)
    cron = entry["schedule"]
    assert cron.hour == {22} and cron.minute == {0} and cron.day_of_week == {1, 2, 3, 4, 5}
    assert schedule["signalfactory-sweep"]["schedule"] == settings.job_sweep_seconds
    # Scheduling runs on the real-time queue; a worker prefers real-time, then default, bulk.
    assert entry["options"]["queue"] == "signalfactory.realtime"
    assert conf.broker_transport_options["queue_order_strategy"] == "priority"
    assert worker_queues(settings) == ["signalfactory.realtime", "signalfactory",
                                       "signalfactory.bulk"]
    assert worker_queues(settings, ["bulk"]) == ["signalfactory.bulk"]
    with pytest.raises(BadInputError, match="realtime, default, bulk"):
        parse_queue_classes("realtime,fast")
    with pytest.raises(ValueError, match="CELERY_ROUTES"):
        Settings(celery_routes={"scan": "urgent"})


def test_celery_worker_runs_retries_cancels_and_dead_letters(
        cp: Platform, celery_env: dict[str, str], tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    cancelled = job_service.submit(cp, "test.slow", {"steps": 1})
    job_service.cancel_job(cp, cancelled.id)  # its message is still in the queue
    quick = job_service.submit(cp, "test.slow", {"steps": 2, "delay": 0.01})
    healed = job_service.submit(cp, "test.flaky", {"succeed_on": 2}, max_attempts=3)
    poison = job_service.submit(dataclasses.replace(cp, settings=cp.settings.model_copy(
        update={"job_max_losses": 2})), "test.crash", {}, max_attempts=5)
    with cp.database.write() as uow:  # written but never published: only the sweep finds it
        orphan = job_service.submit(cp, "test.slow", {"steps": 1, "value": 9}, uow=uow)
    worker = start_worker(celery_env, log, "--concurrency", "1")
    try:
        assert job_service.wait_for(cp, quick.id, timeout=25).status == "succeeded", \
            log.read_text()[-3000:]
        assert sweep(cp) >= 1
        assert job_service.wait_for(cp, orphan.id, timeout=15).result["value"] == 9
        healed_now = job_service.wait_for(cp, healed.id, timeout=15)
        poison_now = job_service.wait_for(cp, poison.id, timeout=25)
    finally:
        stop_gently(worker)
    assert healed_now.status == "succeeded" and healed_now.attempts == 2
    # The poison job killed the pool process twice; the count of lost workers (not its
    # attempts, nor the broker) stopped it: dead after two losses, not a redelivery loop.
    assert poison_now.status == "dead" and poison_now.losses == 2, log.read_text()[-3000:]
    assert poison_now.attempts == 1
    assert [a for a, _ in runs_of(cp, poison.id)] == [1, 2]
    assert job_service.get_job(cp, cancelled.id).status == "cancelled"
    assert runs_of(cp, cancelled.id) == []


def test_sigkilled_celery_worker_job_reruns_and_stores_once(
        cp: Platform, celery_env: dict[str, str], tmp_path: Path) -> None:
    log = tmp_path / "workers.log"
    first = start_worker(celery_env, log, "--concurrency", "1")
    second = None
    try:
        job = job_service.submit(cp, "test.slow", {"steps": 30, "delay": 0.1, "value": 3})
        wait_running(cp, job.id, 0.2, log, [first], timeout=45)
        kill_hard(first)  # the whole worker: main process and pool child, no cleanup at all
        assert job_service.get_job(cp, job.id).status == "running"
        second = start_worker(celery_env, log, "--concurrency", "1")
        done = job_service.wait_for(cp, job.id, timeout=45)
    finally:
        if first.poll() is None:
            kill_hard(first)
        if second is not None:
            stop_gently(second)
    assert done.status == "succeeded", (done, log.read_text()[-3000:])
    assert done.attempts == 1 and done.losses == 1 and done.result["attempt"] == 2
    runs = runs_of(cp, job.id)
    assert [a for a, _ in runs] == [1, 2] and runs[0][1] != runs[1][1]
    assert done.result["pid"] == runs[1][1]
    assert effects_of(cp, job.id) == 1


def test_worker_metrics_port_exports_what_the_pool_children_did(
        cp: Platform, celery_env: dict[str, str], tmp_path: Path) -> None:
    """Jobs run in prefork children; ``--metrics-port`` on the worker sums their counters
    and durations (prometheus_client's multiprocess mode), and cleans up after itself."""
    import socket
    import time

    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # The worker's own temp dir: another test's worker may make and remove its metrics
    # directory in the shared one meanwhile.
    worker_tmp = tmp_path / "tmp"
    worker_tmp.mkdir()
    jobs = [job_service.submit(cp, "test.slow", {"steps": 1, "delay": 0.01}) for _ in range(3)]
    flaky = job_service.submit(cp, "test.flaky", {"succeed_on": 2}, max_attempts=3)
    log = tmp_path / "worker.log"
    worker = start_worker({**celery_env, "TMPDIR": str(worker_tmp)}, log, "--concurrency", "2",
                          "--metrics-port", str(port))
    try:
        for job in [*jobs, flaky]:
            assert job_service.wait_for(cp, job.id, timeout=30).status == "succeeded", \
                log.read_text()[-3000:]
        deadline = time.monotonic() + 10
        while True:
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.2)
        assert len(list(worker_tmp.glob("signalfactory-metrics-*"))) == 1
    finally:
        stop_gently(worker)
    samples = [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text)
               for s in family.samples]

    def value(name: str, **labels: str) -> float:
        return sum(v for n, lab, v in samples if n == name
                   and all(lab.get(k) == want for k, want in labels.items()))

    assert value("signalfactory_jobs_total", kind="test.slow", status="succeeded") == 3
    assert value("signalfactory_jobs_total", kind="test.flaky", status="succeeded") == 1
    assert value("signalfactory_jobs_total", kind="test.flaky", status="failed") == 1
    assert value("signalfactory_job_duration_seconds_count", kind="test.slow") == 3
    assert list(worker_tmp.glob("signalfactory-metrics-*")) == []  # removed at shutdown


def _waiting(broker_url: str, queue: str) -> int:
    """Messages waiting in a broker queue (declared passively: the worker declared it)."""
    from kombu.connection import Connection

    with Connection(broker_url, connect_timeout=3) as conn:
        try:
            return int(conn.default_channel.queue_declare(queue, passive=True).message_count)
        except Exception:  # RabbitMQ: not declared yet (404) means nothing was routed there
            return 0


def test_jobs_go_to_their_kind_queue_and_a_realtime_worker_leaves_bulk_waiting(
        cp: Platform, celery_env: dict[str, str], broker_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Routing by kind (domain/job_routes.py with SIGNALFACTORY_CELERY_ROUTES over it): a
    worker started with ``--queues realtime`` runs real-time work and never touches bulk."""
    from kombu.connection import Connection

    from signalfactory.adapters.jobs.celery_queue import CeleryJobQueue
    from signalfactory.adapters.storage.unit_of_work import sql_database

    queue = celery_env["SIGNALFACTORY_CELERY_QUEUE"]
    routes = '{"test.slow": "bulk", "test.flaky": "realtime"}'
    monkeypatch.setenv("SIGNALFACTORY_CELERY_ROUTES", routes)
    settings = load_settings()
    assert CeleryJobQueue(settings, sql_database(cp.database)).route("backtest") == (
        f"{queue}.bulk", settings.celery_time_limit_bulk_seconds)
    assert CeleryJobQueue(settings, sql_database(cp.database)).route("collect")[0] == (
        f"{queue}.realtime")
    assert CeleryJobQueue(settings, sql_database(cp.database)).route("test.crash")[0] == queue
    with Connection(broker_url, connect_timeout=3) as conn:  # RabbitMQ keeps only routed
        for name in (queue, f"{queue}.realtime", f"{queue}.bulk"):  # messages to a queue
            conn.default_channel.queue_declare(name, durable=True, auto_delete=False)
    routed = build_platform()  # with the routes: its submit publishes to the kind's queue
    try:
        bulk = job_service.submit(routed, "test.slow", {"steps": 1, "delay": 0.01})
        realtime = job_service.submit(routed, "test.flaky", {"succeed_on": 1})
        default = job_service.submit(routed, "test.bad_input", {})
    finally:
        routed.close()
    assert [_waiting(broker_url, q) for q in (f"{queue}.realtime", queue, f"{queue}.bulk")] \
        == [1, 1, 1]
    log = tmp_path / "worker.log"
    worker = start_worker({**celery_env, "SIGNALFACTORY_CELERY_ROUTES": routes}, log,
                          "--concurrency", "1", "--queues", "realtime")
    try:
        assert job_service.wait_for(cp, realtime.id, timeout=25).status == "succeeded", \
            log.read_text()[-3000:]
    finally:
        stop_gently(worker)
    assert job_service.get_job(cp, bulk.id).status == "queued"
    assert job_service.get_job(cp, default.id).status == "queued"
    assert _waiting(broker_url, f"{queue}.bulk") == 1 and _waiting(broker_url, queue) == 1
