"""Fault injection for the exchange simulator: what the next responses do instead of answering.

Each rule matches requests by method and path (``None`` matches any) and applies to the next
``remaining`` matching requests. Rules are checked in the order they were added; every method is
thread-safe (tests arm faults while client threads are sending).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal

FaultKind = Literal["rate_limit", "server_error", "timeout", "drop_response"]


@dataclass
class FaultRule:
    kind: FaultKind
    remaining: int
    path: str | None = None
    method: str | None = None
    #: rate_limit: the Retry-After seconds; timeout/drop_response: how long to hang (seconds)
    seconds: float = 0.0
    #: server_error: the HTTP status
    status: int = 503

    def matches(self, method: str, path: str) -> bool:
        return ((self.path is None or self.path == path)
                and (self.method is None or self.method == method))


@dataclass(frozen=True)
class PartialFill:
    remaining: int
    fraction: float


class Faults:
    """The armed faults of one simulator."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._latency: dict[str | None, float] = {}
        self._partial: PartialFill | None = None

    def add(self, rule: FaultRule) -> None:
        if rule.remaining < 1:
            raise ValueError("a fault must apply to at least one request")
        with self._lock:
            self._rules.append(rule)

    def take(self, method: str, path: str) -> FaultRule | None:
        """The first armed rule matching this request, counted as used."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, path):
                    rule.remaining -= 1
                    if rule.remaining == 0:
                        self._rules.remove(rule)
                    return rule
        return None

    def set_latency(self, seconds: float, path: str | None = None) -> None:
        with self._lock:
            if seconds <= 0:
                self._latency.pop(path, None)
            else:
                self._latency[path] = seconds

    def latency(self, path: str) -> float:
        with self._lock:
            if not self._latency:
                return 0.0
            return self._latency.get(path, self._latency.get(None, 0.0))

    def set_partial_fills(self, count: int, fraction: float) -> None:
        if not 0.0 < fraction < 1.0:
            raise ValueError("a partial fill fraction lies strictly between 0 and 1")
        with self._lock:
            self._partial = PartialFill(count, fraction) if count > 0 else None

    def take_partial_fill(self) -> float | None:
        """The fraction the next fill is cut to, or None for a full fill."""
        with self._lock:
            if self._partial is None:
                return None
            fraction = self._partial.fraction
            left = self._partial.remaining - 1
            self._partial = PartialFill(left, fraction) if left > 0 else None
            return fraction

    def pending(self) -> list[FaultRule]:
        with self._lock:
            return [FaultRule(r.kind, r.remaining, r.path, r.method, r.seconds, r.status)
                    for r in self._rules]

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self._latency.clear()
            self._partial = None
