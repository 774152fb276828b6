"""Retries and the circuit breaker of a source: tenacity and pybreaker, with the breaker's
state in the database so that every process (API, workers, beat) shares one breaker.

- Each request is retried on ``SourceTemporaryError`` with exponential backoff and full
  jitter, at most ``attempts`` (5) times; a ``Retry-After`` the source named is waited out
  instead (capped). When the attempts run out the last error is raised as
  :class:`AttemptsExhaustedError`.
- A whole run goes through the source's breaker: after ``fail_max`` failed runs in a row it
  opens and runs are refused without any call (``pybreaker.CircuitBreakerError``); after
  ``reset_timeout`` one process wins the move to half-open (a conditional update of the row)
  and its run is the probe: success closes the breaker, failure opens it again.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

import pybreaker
import tenacity

from signalfactory.domain.errors import OperationalError
from signalfactory.domain.sources import BREAKER_HALF_OPEN, BREAKER_OPEN, SourceTemporaryError
from signalfactory.observability.logging import get_logger
from signalfactory.services.platform import Platform

log = get_logger("signalfactory.sources")

T = TypeVar("T")
MAX_ATTEMPTS = 5


class AttemptsExhaustedError(OperationalError):
    """Every attempt of a request failed: the run ends in the dead letter with this."""


def _wait(initial: float, maximum: float) -> Callable[[tenacity.RetryCallState], float]:
    backoff = tenacity.wait_random_exponential(multiplier=initial, max=maximum)

    def wait(state: tenacity.RetryCallState) -> float:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, SourceTemporaryError) and error.retry_after is not None:
            # The source said when to come back: waiting less is refused again, waiting
            # more only loses time. A little jitter keeps processes from arriving together.
            return error.retry_after + random.uniform(0, min(initial, 1.0))  # noqa: S311
        return float(backoff(state))

    return wait


def with_retries(call: Callable[[], T], *, what: str, attempts: int = MAX_ATTEMPTS,
                 initial: float = 1.0, maximum: float = 60.0,
                 on_retry: Callable[[BaseException], None] | None = None) -> T:
    """``call()`` with up to ``attempts`` tries on temporary source errors."""

    def before_sleep(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        log.warning("source request failed; retrying", what=what,
                    attempt=state.attempt_number, error=str(error),
                    wait_s=round(state.upcoming_sleep, 3))
        if on_retry is not None and error is not None:
            on_retry(error)

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(min(max(attempts, 1), MAX_ATTEMPTS)),
        wait=_wait(initial, maximum),
        retry=tenacity.retry_if_exception_type(SourceTemporaryError),
        before_sleep=before_sleep, reraise=True)
    try:
        return retrying(call)
    except SourceTemporaryError as exc:
        raise AttemptsExhaustedError(f"{what}: gave up after {min(attempts, MAX_ATTEMPTS)} "
                                f"attempts; last error: {exc}") from exc


class DatabaseBreakerStorage(pybreaker.CircuitBreakerStorage):
    """pybreaker's storage on the ``sources`` row: state, counters and opening time."""

    def __init__(self, platform: Platform, source: str) -> None:
        super().__init__(source)
        self.platform = platform
        self.source = source

    @property
    def state(self) -> str:
        with self.platform.database.read(primary=True) as uow:
            return uow.sources.breaker(self.source).state

    @state.setter
    def state(self, state: str) -> None:
        with self.platform.database.write() as uow:
            if state == BREAKER_HALF_OPEN:
                # Only one process may probe: the one whose update moves the row from open.
                if not uow.sources.set_breaker_state(self.source, state, expect=BREAKER_OPEN):
                    raise pybreaker.CircuitBreakerError(
                        "another process is probing this source; its run decides")
            else:
                uow.sources.set_breaker_state(self.source, state)
        log.info("source circuit breaker moved", source=self.source, state=state)

    def increment_counter(self) -> None:
        with self.platform.database.write() as uow:
            uow.sources.bump_breaker(self.source, "failures")

    def reset_counter(self) -> None:
        with self.platform.database.write() as uow:
            uow.sources.reset_breaker(self.source, "failures")

    def increment_success_counter(self) -> None:
        with self.platform.database.write() as uow:
            uow.sources.bump_breaker(self.source, "successes")

    def reset_success_counter(self) -> None:
        with self.platform.database.write() as uow:
            uow.sources.reset_breaker(self.source, "successes")

    @property
    def counter(self) -> int:
        with self.platform.database.read(primary=True) as uow:
            return uow.sources.breaker(self.source).failures

    @property
    def success_counter(self) -> int:
        with self.platform.database.read(primary=True) as uow:
            return uow.sources.breaker(self.source).successes

    @property
    def opened_at(self) -> datetime | None:
        with self.platform.database.read(primary=True) as uow:
            return uow.sources.breaker(self.source).opened_at

    @opened_at.setter
    def opened_at(self, when: datetime) -> None:
        with self.platform.database.write() as uow:
            current = uow.sources.breaker(self.source).state
            uow.sources.set_breaker_state(self.source, current, opened_at=when)


def source_breaker(platform: Platform, source: str, *, fail_max: int,
                   reset_seconds: float) -> pybreaker.CircuitBreaker:
    """The breaker of ``source``; its state lives in the database, not in this object."""
    return pybreaker.CircuitBreaker(
        fail_max=fail_max, reset_timeout=reset_seconds, name=source,
        state_storage=DatabaseBreakerStorage(platform, source),
        # the run's own error (not "breaker opened") is what the dead letter must show
        throw_new_error_on_trip=False)
