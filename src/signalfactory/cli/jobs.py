"""Workers, the scheduler, and ``signalfactory jobs ...`` to follow and steer jobs.

``worker`` and ``beat`` use Celery when ``SIGNALFACTORY_BROKER_URL`` is set and the embedded
database-backed runner otherwise (``--runner`` overrides). Extra job kinds are registered by
the modules named in ``SIGNALFACTORY_TASK_MODULES`` (comma-separated), imported at start.
"""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.process
import os
import shutil
import signal
import sys
import tempfile
import threading
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from signalfactory.cli.common import err, handle_errors, json_option, out, print_json
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.jobs import Job
from signalfactory.domain.tenants import DEFAULT_TENANT_ID
from signalfactory.services.platform import Platform
from signalfactory.settings import Settings

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

jobs_app = typer.Typer(help="Jobs: list, schedules, show, submit, cancel, retry.",
                       no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON")]
RunnerOption = Annotated[str, typer.Option(
    help="auto (Celery when SIGNALFACTORY_BROKER_URL is set, else embedded), embedded, celery")]


def _build_platform(settings: Settings | None = None) -> Platform:
    # Imported here, not at the top: bootstrap defines metrics, and the worker must choose
    # prometheus_client's multiprocess mode before any metric exists.
    from signalfactory.cli.common import build_platform

    return build_platform(settings)


def _pool_metrics_registry() -> tuple[CollectorRegistry, str | None]:
    """Celery runs jobs in prefork children, whose metrics die with them unless they are
    written to files the exporting parent sums (prometheus_client's multiprocess mode). The
    mode is chosen when prometheus_client is first imported, so this runs before anything
    that defines a metric; returns the registry to export and the directory this process
    made (None when the operator set ``PROMETHEUS_MULTIPROC_DIR`` already)."""
    if "prometheus_client" in sys.modules and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        raise RuntimeError("prometheus_client was imported before the worker chose its "
                           "metrics mode; the pool's metrics would be lost")
    made = None
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        made = tempfile.mkdtemp(prefix="signalfactory-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = made
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry, made


def _runner_kind(runner: str, settings: Settings) -> str:
    if runner not in ("auto", "embedded", "celery"):
        raise BadInputError(f"--runner {runner!r} is not valid; use auto, embedded or celery")
    if runner == "auto":
        return "celery" if settings.broker_url else "embedded"
    if runner == "celery" and not settings.broker_url:
        raise BadInputError("--runner celery needs SIGNALFACTORY_BROKER_URL (redis://... or "
                            "amqp://...)")
    return runner


def _require_schema(platform: Platform) -> None:
    from signalfactory.adapters.storage import migrate
    from signalfactory.adapters.storage.unit_of_work import sql_database

    if migrate.current_revision(sql_database(platform.database).engine) is None:
        platform.close()
        raise BadInputError("the database has no schema yet; run `signalfactory init` (or "
                            "`signalfactory db upgrade`) first")


def _wait_for_signal() -> None:
    """Block the main thread until SIGTERM or SIGINT."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass


def _start_delivery_process(concurrency: int) -> multiprocessing.process.BaseProcess | None:
    """The outbox sender beside a Celery worker, in a spawned process of its own: Celery's
    prefork pool forks this process, and database connections must not cross a fork. The
    outbox rows are the queue (leased with SKIP LOCKED), so any number of these may run."""
    if not concurrency:
        return None
    process = multiprocessing.get_context("spawn").Process(
        target=run_delivery_worker, args=(concurrency,), name="signalfactory-delivery",
        daemon=True)
    process.start()
    return process


def run_delivery_worker(concurrency: int) -> None:
    """Send the delivery outbox until SIGTERM or SIGINT."""
    from signalfactory.workers.delivery import DeliveryWorker

    platform = _build_platform()
    delivery = DeliveryWorker(platform, concurrency)
    delivery.start()
    try:
        _wait_for_signal()
    finally:
        delivery.stop()
        platform.close()


@handle_errors
def worker(
    concurrency: Annotated[int | None, typer.Option(
        help="Jobs run at once (default SIGNALFACTORY_JOB_CONCURRENCY)", min=1, max=64)] = None,
    runner: RunnerOption = "auto",
    metrics_port: Annotated[int | None, typer.Option(
        help="Serve /metrics (job counters and durations) on this port: of this process for "
             "the embedded runner, of every pool process for Celery",
        min=1, max=65535)] = None,
    metrics_host: Annotated[str, typer.Option(help="Interface for --metrics-port")]
    = "127.0.0.1",
    delivery_concurrency: Annotated[int, typer.Option(
        help="Delivery threads sending the outbox (0: none)", min=0, max=64)] = 2,
    queues: Annotated[str | None, typer.Option(
        help="Celery: queue classes to consume, first preferred, e.g. 'realtime,default' or "
             "'bulk' (default SIGNALFACTORY_CELERY_WORKER_QUEUES: realtime,default,bulk)")]
    = None,
) -> None:
    """Run jobs: the embedded runner on the database, or a Celery worker on the broker.
    Either also sends the delivery outbox (with Celery, from a child process of its own)."""
    from signalfactory.services.jobs.registry import ensure_tasks_loaded
    from signalfactory.settings import load_settings

    settings = load_settings()
    kind = _runner_kind(runner, settings)
    from signalfactory.settings import parse_queue_classes

    classes = parse_queue_classes(queues) if queues is not None else None
    registry, metrics_dir = None, None
    if metrics_port is not None and kind == "celery":
        registry, metrics_dir = _pool_metrics_registry()
    ensure_tasks_loaded(settings.task_module_names)
    if metrics_port is not None:
        from prometheus_client import REGISTRY, start_http_server

        start_http_server(metrics_port, addr=metrics_host, registry=registry or REGISTRY)
    if kind == "celery":
        from signalfactory.workers.celery_app import run_worker

        delivery_process = _start_delivery_process(delivery_concurrency)
        try:
            run_worker(settings, concurrency or settings.job_concurrency, classes)
        finally:
            if delivery_process is not None:
                delivery_process.terminate()  # SIGTERM: it hands its leased rows back
                delivery_process.join(30)
            if metrics_dir is not None:
                shutil.rmtree(metrics_dir, ignore_errors=True)
        return
    from signalfactory.workers.runner import EmbeddedRunner

    platform = _build_platform(settings)
    _require_schema(platform)
    from signalfactory.workers.delivery import DeliveryWorker
    from signalfactory.workers.trading import TradingWorker

    embedded = EmbeddedRunner(platform, concurrency=concurrency)
    delivery = DeliveryWorker(platform, delivery_concurrency) if delivery_concurrency else None
    trading = TradingWorker(platform)
    embedded.start()
    trading.start()
    if delivery is not None:
        delivery.start()
    err.print(f"worker running {embedded.concurrency} job(s) at a time and "
              f"{delivery_concurrency} delivery thread(s); Ctrl+C stops it")
    try:
        _wait_for_signal()
    finally:
        if delivery is not None:
            delivery.stop()
        embedded.stop()
        trading.stop()
        platform.close()


@handle_errors
def beat(runner: RunnerOption = "auto") -> None:
    """Submit scheduled jobs (SIGNALFACTORY_SCHEDULES): embedded scheduler or Celery beat."""
    from signalfactory.services.jobs.registry import ensure_tasks_loaded
    from signalfactory.settings import load_settings

    settings = load_settings()
    ensure_tasks_loaded(settings.task_module_names)
    if _runner_kind(runner, settings) == "celery":
        from signalfactory.workers.celery_app import run_beat

        run_beat(settings)
        return
    from signalfactory.workers.scheduler import Scheduler

    platform = _build_platform(settings)
    _require_schema(platform)
    scheduler = Scheduler(platform)
    scheduler.start()
    err.print(f"scheduler running {len(scheduler.entries)} schedule(s); Ctrl+C stops it")
    try:
        _wait_for_signal()
    finally:
        scheduler.stop()
        platform.close()


# -- jobs ... ---------------------------------------------------------------------------------

def _tenant_id(platform: Platform, tenant: str | None) -> int | None:
    if tenant is None:
        return None
    from signalfactory.services.accounts.tenants import tenant_by_name

    with platform.database.read(primary=True) as uow:
        return tenant_by_name(uow, tenant).id


def _show(job: Job, as_json: bool) -> None:
    data = asdict(job)
    if as_json:
        print_json(data)
        return
    for key in ("id", "kind", "status", "progress", "attempts", "max_attempts", "losses",
                "max_losses", "tenant_id", "created_at", "started_at", "finished_at", "error"):
        value = data[key]
        if key == "progress":
            value = f"{value:.0%}"
        out.print(f"[bold]{key:>13}[/]  {escape(str(value))}", highlight=False)
    out.print(f"[bold]{'payload':>13}[/]  {escape(json.dumps(data['payload']))}",
              highlight=False)
    if data["result"] is not None:
        out.print(f"[bold]{'result':>13}[/]  {escape(json.dumps(data['result']))}",
                  highlight=False)


@jobs_app.command("list")
@handle_errors
def jobs_list(
    status: Annotated[str | None, typer.Option(help="queued, running, succeeded, failed, "
                                                    "cancelled or dead")] = None,
    kind: Annotated[str | None, typer.Option(help="Only this job kind")] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's jobs")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 50,
    as_json: JsonOption = False,
) -> None:
    """List jobs, newest first."""
    from signalfactory.services.jobs.registry import list_jobs

    platform = _build_platform()
    try:
        items = list_jobs(platform, tenant_id=_tenant_id(platform, tenant), status=status,
                          kind=kind, limit=limit)
    finally:
        platform.close()
    if as_json:
        print_json([asdict(j) for j in items])
        return
    table = Table("id", "kind", "status", "progress", "attempts", "tenant", "created", "error")
    for j in items:
        table.add_row(j.id, j.kind, j.status, f"{j.progress:.0%}",
                      f"{j.attempts}/{j.max_attempts}", str(j.tenant_id),
                      f"{j.created_at:%Y-%m-%d %H:%M:%S}", escape((j.error or "")[:60]))
    out.print(table)


@jobs_app.command("schedules")
@handle_errors
def jobs_schedules(as_json: JsonOption = False) -> None:
    """List the scheduled jobs `up`, `beat` and Celery beat submit, with their next run."""
    from datetime import UTC, datetime

    from signalfactory.services.jobs.schedules import next_slot
    from signalfactory.settings import load_settings

    settings = load_settings()
    now = datetime.now(UTC)
    rows = [{"name": e.name, "kind": e.kind, "cron": e.cron, "enabled": e.enabled,
             "next_run": next_slot(e, now, settings.schedule_timezone).isoformat()
             if e.enabled else None} for e in settings.schedules]
    if as_json:
        print_json(rows)
        return
    table = Table("name", "kind", "cron", "enabled", f"next run ({settings.schedule_timezone})")
    for row in rows:
        table.add_row(str(row["name"]), str(row["kind"]), str(row["cron"]),
                      "yes" if row["enabled"] else "no", str(row["next_run"] or "-"))
    out.print(table)


@jobs_app.command("show")
@handle_errors
def jobs_show(job_id: Annotated[str, typer.Argument(help="Job id")],
              as_json: JsonOption = False) -> None:
    """Show a job: status, progress, attempts, result or error."""
    from signalfactory.services.jobs.registry import get_job

    platform = _build_platform()
    try:
        _show(get_job(platform, job_id), as_json)
    finally:
        platform.close()


@jobs_app.command("cancel")
@handle_errors
def jobs_cancel(job_id: Annotated[str, typer.Argument(help="Job id")],
                as_json: JsonOption = False) -> None:
    """Cancel a queued job, ask a running one to stop, or discard a dead one."""
    from signalfactory.services.jobs.registry import cancel_job

    platform = _build_platform()
    try:
        job = cancel_job(platform, job_id)
    finally:
        platform.close()
    if as_json:
        print_json(asdict(job))
    elif job.status == "running":
        out.print(f"job {job.id} asked to stop; it stops at its next check")
    else:
        out.print(f"job {job.id} is {job.status}")


@jobs_app.command("retry")
@handle_errors
def jobs_retry(job_id: Annotated[str, typer.Argument(help="Job id")]) -> None:
    """Queue a dead, failed or cancelled job again with a fresh attempt budget."""
    from signalfactory.services.jobs.registry import retry_job

    platform = _build_platform()
    try:
        job = retry_job(platform, job_id)
    finally:
        platform.close()
    out.print(f"job {job.id} queued again")


@jobs_app.command("submit")
@handle_errors
def jobs_submit(
    kind: Annotated[str, typer.Argument(help="Job kind, e.g. collect")],
    payload: Annotated[str, typer.Option(help="Payload as a JSON object")] = "{}",
    tenant: Annotated[str, typer.Option(help="Owning tenant")] = "default",
    priority: Annotated[int, typer.Option(help="Higher runs first")] = 0,
    max_attempts: Annotated[int | None, typer.Option(min=1, max=100)] = None,
    dedupe_key: Annotated[str | None, typer.Option(
        help="Submitting the same key twice returns the first job")] = None,
    wait: Annotated[bool, typer.Option(help="Wait until the job finishes (needs a worker)")]
    = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits")] = 3600.0,
    as_json: JsonOption = False,
) -> None:
    """Submit a job; a worker (`signalfactory worker` or `up`) runs it."""
    from signalfactory.services.jobs.registry import submit

    body = json_option(payload, "--payload")
    if not isinstance(body, dict):
        raise BadInputError("--payload must be a JSON object, e.g. '{\"symbols\": [\"AAA\"]}'")
    platform = _build_platform()
    try:
        tenant_id = _tenant_id(platform, tenant) or DEFAULT_TENANT_ID
        job = submit(platform, kind, body, tenant_id=tenant_id,
                     priority=priority, max_attempts=max_attempts, dedupe_key=dedupe_key)
        if wait:
            job = _wait(platform, job.id, timeout)
    finally:
        platform.close()
    if as_json:
        print_json(asdict(job))
    else:
        out.print(f"job {job.id} {job.status}", highlight=False)
    if wait and job.status != "succeeded":
        raise typer.Exit(1)


def _wait(platform: Platform, job_id: str, timeout: float) -> Job:
    from signalfactory.cli.common import progress_bar
    from signalfactory.services.jobs.registry import wait_for

    with progress_bar("job", 100) as advance:
        shown = 0

        def on_progress(job: Job) -> None:
            nonlocal shown
            now = int(job.progress * 100)
            if now > shown:
                advance(now - shown)
                shown = now

        return wait_for(platform, job_id, timeout=timeout, on_progress=on_progress)
