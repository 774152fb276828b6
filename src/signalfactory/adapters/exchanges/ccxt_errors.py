"""ccxt's exceptions sorted into what the platform does about them, and the retry policy.

- retried with backoff: ``NetworkError`` (timeouts, resets, 5xx as ``ExchangeNotAvailable``,
  429/418 as ``DDoSProtection``, ``RateLimitExceeded``) and ``OperationFailed`` (Binance's
  -1001 "internal error"); after the last attempt ``ExchangeUnavailableError``.
- never retried: ``InvalidOrder``, ``InsufficientFunds``, ``BadSymbol``, ``BadRequest`` →
  ``ExchangeRejectedError`` with the rule; ``AuthenticationError``/``PermissionDenied`` and
  anything ccxt could not classify → ``ExchangeOperationalError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import ccxt
from tenacity import RetryCallState, wait_exponential, wait_random

from signalfactory.domain.trading.exchange import (
    ExchangeOperationalError,
    ExchangeRejectedError,
    ExchangeUnavailableError,
)
from signalfactory.observability.metrics import EXCHANGE_ERRORS, EXCHANGE_REQUEST_SECONDS

#: error kinds (the ``kind`` label of signalfactory_exchange_errors_total)
RATE_LIMITED = "rate_limited"
TIMEOUT = "timeout"
NETWORK = "network"
UNAVAILABLE = "unavailable"
REJECTED = "rejected"
AUTH = "auth"
OTHER = "other"


def _revoked_key(exc: BaseException) -> bool:
    """ccxt's binance reports -2015 (invalid key) as DDoSProtection once the key has worked
    (a temporary ban looks the same); a revoked key must reach a person, not the retry loop."""
    return isinstance(exc, ccxt.DDoSProtection) and '"code":-2015' in str(exc).replace(" ", "")


def error_kind(exc: BaseException) -> str:
    if _revoked_key(exc):
        return AUTH
    if isinstance(exc, ccxt.DDoSProtection | ccxt.RateLimitExceeded):
        return RATE_LIMITED
    if isinstance(exc, ccxt.RequestTimeout):
        return TIMEOUT
    if isinstance(exc, ccxt.ExchangeNotAvailable):
        return UNAVAILABLE
    if isinstance(exc, ccxt.NetworkError):
        return NETWORK
    if isinstance(exc, ccxt.OperationFailed):
        return UNAVAILABLE  # Binance -1001: an internal error, the status is unknown
    if isinstance(exc, ccxt.AuthenticationError | ccxt.AccountSuspended):
        return AUTH
    if isinstance(exc, ccxt.InvalidOrder | ccxt.InsufficientFunds | ccxt.BadRequest):
        return REJECTED
    return OTHER


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, ccxt.NetworkError | ccxt.OperationFailed) and not _revoked_key(exc)


def maybe_executed(exc: BaseException) -> bool:
    """Whether a failed request may still have been carried out by the exchange: a 429/418
    is refused before processing; a timeout, a reset or a 5xx leaves the outcome unknown."""
    return is_retryable(exc) and not isinstance(exc, ccxt.DDoSProtection
                                                | ccxt.RateLimitExceeded)


def rejection_rule(exc: BaseException) -> str:
    if isinstance(exc, ccxt.InsufficientFunds):
        return "insufficient_funds"
    if isinstance(exc, ccxt.BadSymbol):
        return "bad_symbol"
    text = str(exc)
    for rule, marker in (("min_notional", "NOTIONAL"), ("lot_size", "LOT_SIZE"),
                         ("price_filter", "PRICE_FILTER"), ("duplicate", "Duplicate order")):
        if marker in text:
            return rule
    return "invalid_order"


def translate(exc: BaseException, exchange: str) -> Exception:
    """The platform's error for a ccxt error that is not retried (or no longer)."""
    message = f"{exchange}: {type(exc).__name__}: {exc}"
    if is_retryable(exc):
        return ExchangeUnavailableError(message)
    if isinstance(exc, ccxt.AuthenticationError | ccxt.AccountSuspended) or _revoked_key(exc):
        return ExchangeOperationalError(message + " (check the account's API key and "
                                        "its permissions)")
    if isinstance(exc, ccxt.InvalidOrder | ccxt.InsufficientFunds | ccxt.BadRequest):
        return ExchangeRejectedError(message, rule=rejection_rule(exc))
    return ExchangeOperationalError(message)


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff for retryable errors: exponential plus jitter (tenacity's), at least the
    server's ``Retry-After``, at most ``max_wait`` per pause, ``attempts`` tries in all."""

    attempts: int = 5
    initial_wait: float = 0.1
    max_wait: float = 10.0
    jitter: float = 0.1

    def wait(self, state: RetryCallState) -> float:
        backoff = (wait_exponential(multiplier=self.initial_wait, max=self.max_wait)
                   + wait_random(0, self.jitter * self.initial_wait))(state)
        exc = state.outcome.exception() if state.outcome is not None else None
        retry_after = getattr(exc, "retry_after", None)
        if isinstance(retry_after, int | float):
            return min(self.max_wait, max(float(retry_after), backoff))
        return backoff


class ExchangeObserver(Protocol):
    """Where request latencies and error kinds go (Prometheus by default)."""

    def request(self, exchange: str, endpoint: str, seconds: float) -> None: ...

    def error(self, exchange: str, kind: str) -> None: ...


class PrometheusObserver:
    def request(self, exchange: str, endpoint: str, seconds: float) -> None:
        EXCHANGE_REQUEST_SECONDS.labels(exchange, endpoint).observe(seconds)

    def error(self, exchange: str, kind: str) -> None:
        EXCHANGE_ERRORS.labels(exchange, kind).inc()

