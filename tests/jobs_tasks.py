"""Job kinds used only by the tests. Workers load them with
``SIGNALFACTORY_TASK_MODULES=tests.jobs_tasks`` (run from the repository root).

Each run of ``test.slow`` leaves evidence in two tables of its own:
- ``test_job_runs``: one row per attempt that started (job id, attempt, pid), so a test can see
  a job really ran twice;
- ``test_job_effects``: the job's effect, keyed by job id and written idempotently, so a test can
  assert the effect exists exactly once however often the job ran.
"""

from __future__ import annotations

import os
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from signalfactory.adapters.storage.jobs import dialect_insert
from signalfactory.adapters.storage.unit_of_work import sql_database
from signalfactory.domain.errors import BadInputError, OperationalError, TemporaryError
from signalfactory.services.jobs.registry import JobCancelled, TaskContext, register_task

test_metadata = sa.MetaData()
job_runs = sa.Table(
    "test_job_runs", test_metadata,
    sa.Column("job_id", sa.String(36), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.PrimaryKeyConstraint("job_id", "attempt"),
)
job_effects = sa.Table(
    "test_job_effects", test_metadata,
    sa.Column("job_id", sa.String(36), primary_key=True),
    sa.Column("value", sa.Integer, nullable=False),
)


def reset_logging() -> None:
    """An earlier in-process CLI run may have left structlog writing to CliRunner's closed
    stdout, so that any later log line raises; start from structlog's defaults again."""
    import structlog

    structlog.reset_defaults()


def create_tables(engine: Engine) -> None:
    """The evidence tables (and a usable logging setup, see :func:`reset_logging`)."""
    reset_logging()
    test_metadata.create_all(engine, checkfirst=True)


def _record_run(ctx: TaskContext) -> None:
    with sql_database(ctx.platform.database).engine.begin() as conn:
        conn.execute(dialect_insert(conn, job_runs).values(
            job_id=ctx.job_id, attempt=ctx.attempt, pid=os.getpid()).on_conflict_do_nothing())


def _write_effect(conn: Connection, job_id: str, value: int) -> None:
    conn.execute(dialect_insert(conn, job_effects).values(job_id=job_id, value=value)
                 .on_conflict_do_nothing())


def _write_effect_in(uow: Any, job_id: str, value: int) -> None:
    """``on_commit`` hands over the SQL unit of work; the evidence tables are the tests' own."""
    _write_effect(uow.connection, job_id, value)


def slow(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Sleep in steps with progress, then write the effect (idempotently, keyed by job id)."""
    _record_run(ctx)
    steps, delay = int(payload.get("steps", 10)), float(payload.get("delay", 0.1))
    for i in range(steps):
        if ctx.cancelled():
            raise JobCancelled
        time.sleep(delay)
        ctx.progress((i + 1) / steps)
    value = int(payload.get("value", 42))
    if payload.get("effect") == "on_commit":
        ctx.on_commit(lambda uow: _write_effect_in(uow, ctx.job_id, value))
    else:
        with sql_database(ctx.platform.database).engine.begin() as conn:
            _write_effect(conn, ctx.job_id, value)
    return {"value": value, "steps": steps, "attempt": ctx.attempt, "pid": os.getpid()}


def flaky(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Fail with a temporary error until attempt ``succeed_on`` (never, by default)."""
    _record_run(ctx)
    if ctx.attempt < int(payload.get("succeed_on", 10**6)):
        raise TemporaryError(f"upstream timed out on attempt {ctx.attempt}")
    return {"attempt": ctx.attempt}


def bad_input(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    _record_run(ctx)
    raise BadInputError("symbol ZZZZ is not in the store")


def operational(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    _record_run(ctx)
    raise OperationalError("disk full")


def crash(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """A poison job: it kills the process running it, every time."""
    _record_run(ctx)
    os._exit(9)


register_task("test.slow", slow)
register_task("test.flaky", flaky)
register_task("test.bad_input", bad_input)
register_task("test.operational", operational)
register_task("test.crash", crash)
