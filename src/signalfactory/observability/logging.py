"""Structured logs: JSON lines to stdout (readable on a terminal), secrets never written.

Every line carries the request id, job id and tenant where they exist: they live in
contextvars that the API middleware and the job runner bind.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog
from structlog.typing import FilteringBoundLogger, Processor

_SENSITIVE_KEY = re.compile(r"(secret|password|passwd|token|api[_-]?key|authorization|"
                            r"backup_key|signing_key|cookie)", re.IGNORECASE)
_KEY_PATTERN = re.compile(r"sf_(live|test)_[A-Za-z0-9]{8,}")
REDACTED = "[redacted]"


class SecretRedactor:
    """A structlog processor that removes known secret values and secret-looking fields."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def add(self, secret: str) -> None:
        if secret and len(secret) >= 4 and secret not in self.secrets:
            self.secrets = sorted([*self.secrets, secret], key=len, reverse=True)

    def _clean(self, value: object) -> object:
        if isinstance(value, str):
            for secret in self.secrets:
                if secret in value:
                    value = value.replace(secret, REDACTED)
            return _KEY_PATTERN.sub(lambda m: m.group(0)[:12] + "…" + REDACTED, value)
        if isinstance(value, dict):
            return {k: REDACTED if _SENSITIVE_KEY.search(str(k)) else self._clean(v)
                    for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self._clean(v) for v in value)
        return value

    def __call__(self, _logger: object, _name: str,
                 event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key in list(event):
            if _SENSITIVE_KEY.search(key):
                event[key] = REDACTED
            else:
                event[key] = self._clean(event[key])
        return event


redactor = SecretRedactor()


class _CurrentStream:
    """Writes to whatever ``sys.stdout`` (or ``sys.stderr``) is at write time, not at
    configuration time.

    Test runners and CLI harnesses swap the streams; a logger holding the old one would write
    into a closed file.
    """

    def __init__(self, name: str = "stdout") -> None:
        self.name = name

    def _stream(self) -> TextIO:
        return sys.stderr if self.name == "stderr" else sys.stdout

    def write(self, text: str) -> int:
        return self._stream().write(text)

    def flush(self) -> None:
        self._stream().flush()

    def isatty(self) -> bool:
        return self._stream().isatty()


def configure_logging(fmt: str = "auto", level: str = "INFO",
                      secrets: Iterable[str] = (), stream: str = "stdout") -> None:
    """Route structlog and the standard library through one JSON (or console) renderer.

    Services log to stdout (``stream="stdout"``: what a container runtime collects); one-shot
    commands log to stderr, so that their output (``--json`` above all) stays only theirs.
    """
    for secret in secrets:
        redactor.add(secret)
    out = _CurrentStream(stream)
    json_output = fmt == "json" or (fmt == "auto" and not out.isatty())
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redactor,
    ]
    renderer: Processor = (structlog.processors.JSONRenderer() if json_output
                           else structlog.dev.ConsoleRenderer(colors=out.isatty()))
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=out),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    # Libraries that log through the standard library (uvicorn, alembic) get the same lines.
    handler = logging.StreamHandler(out)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared]))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Alembic narrates every migration step at INFO; a command's own output matters more.
    for noisy in ("uvicorn.access", "alembic", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(name: str | None = None) -> FilteringBoundLogger:
    """A logger of the configured wrapper class (``configure_logging``): the filtering bound
    logger, with the standard methods (``info``, ``warning``, ``bind``...)."""
    logger: FilteringBoundLogger = structlog.get_logger(name)
    return logger


bind_context = structlog.contextvars.bind_contextvars
clear_context = structlog.contextvars.clear_contextvars
bound_context = structlog.contextvars.bound_contextvars
