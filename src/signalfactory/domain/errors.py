"""Errors classified by what the operator or user must do about them.

- ``BadInputError``: the caller sent something wrong; nothing was stored (CLI exit 2, HTTP 4xx).
- ``TemporaryError``: worth retrying with backoff (a broker hiccup, a locked database).
- ``OperationalError``: needs a person (disk full, wrong key, schema mismatch); log and alert.
"""

from __future__ import annotations


class SignalFactoryError(Exception):
    """Base of every error the platform raises on purpose."""

    #: short machine-readable code, used as the problem ``type`` suffix in the API
    code: str = "error"


class BadInputError(SignalFactoryError):
    """The input is wrong; the message says what to fix. Nothing was written."""

    code = "bad-input"

    def __init__(self, message: str, *, source: str | None = None, row: int | None = None,
                 rule: str | None = None, position: int | None = None) -> None:
        self.source = source
        self.row = row
        self.rule = rule
        self.position = position
        parts = []
        if source is not None:
            parts.append(source)
        if row is not None:
            parts.append(f"row {row}")
        if rule is not None:
            parts.append(f"[{rule}]")
        prefix = " ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.detail = message


class NotFoundError(BadInputError):
    """A named thing (symbol, strategy, backtest) does not exist."""

    code = "not-found"


class ConflictError(BadInputError):
    """The request contradicts stored state (an idempotency key reused with another body)."""

    code = "conflict"


class TemporaryError(SignalFactoryError):
    """A transient failure: retry with backoff."""

    code = "temporary"


class ReadOnlyError(TemporaryError):
    """A write refused because the platform is read-only (the primary database is
    unreachable, or an operator switched the mode on): nothing was stored; retry later."""

    code = "read-only"


class OperationalError(SignalFactoryError):
    """A failure a person must look at; retrying will not help."""

    code = "operational"


def excerpt(value: str, limit: int = 60) -> str:
    """User input as an error message quotes it: ``repr`` cut to about ``limit`` characters,
    so a 10 MB cell makes a short message (and control characters show escaped)."""
    text = repr(value[:limit + 1])
    return text if len(value) <= limit else f"{text[:limit]}…' ({len(value):,} characters)"
