"""Shared bits of the benchmark scripts: timing and scratch platforms."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def timed(fn: Callable[[], T], repeat: int = 1) -> tuple[float, T]:
    """Best wall time of ``repeat`` runs, and the last result."""
    best = float("inf")
    result: T
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def header(title: str) -> None:
    print(f"\n== {title} ==")
