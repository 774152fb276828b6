"""Kernels that numba compiles only when a process needs the speed.

Importing numba and loading one kernel from its on-disk cache costs about 0.35 s in a fresh
process: more than a whole one-symbol backtest from the command line is allowed to take, for
under a millisecond of simulation. A `Kernel` is a plain Python function until then:

- once numba is loaded in the process (a worker's warm-up, a universe or sweep kernel, any
  large input), every call runs the compiled code, loaded from numba's cache as before;
- before that, a call whose array arguments hold at most `INTERPRET_MAX_ELEMENTS` elements in
  all runs the same function in the interpreter, kernels it calls included.

Both paths give bit-identical results: the kernels use IEEE double arithmetic only (no
``fastmath``, no reductions whose order numba may change), ``error_model="numpy"`` is matched
by running under ``np.errstate(all="ignore")``, and where plain Python floats would raise
instead of giving inf/nan (``ZeroDivisionError``, ``OverflowError``) the call is redone
compiled. ``tests/unit/test_kernels_interpreted.py`` compares both on every path of the
engine and its metrics.

Inside other numba kernels a `Kernel` types as its compiled dispatcher (registered by
``numba_setup``), so compiled callers are unchanged.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

#: interpreted only up to this many array elements per call: a one-symbol simulation passes
#: about nine per bar, so up to ~20,000 bars (a one-symbol daily backtest has ~2,500); past
#: that the compiled code's one-off load is the cheaper cost
INTERPRET_MAX_ELEMENTS = 200_000

_state = threading.local()


def _interpreting() -> bool:
    return bool(getattr(_state, "on", False))


class Kernel:
    """A function compiled by ``numba.njit(**options)`` on first need (see the module)."""

    def __init__(self, fn: Callable[..., Any], options: dict[str, Any]) -> None:
        functools.update_wrapper(self, fn)
        self.py_func = fn
        self.options = options
        self._dispatcher: Any = None
        self._lock = threading.Lock()

    def compiled(self) -> Any:  # noqa: ANN401 - a numba dispatcher (numba is untyped)
        if self._dispatcher is None:
            from signalfactory.domain import numba_setup

            with self._lock:
                if self._dispatcher is None:
                    self._dispatcher = numba_setup.njit(**self.options)(self.py_func)
        return self._dispatcher

    @property
    def signatures(self) -> list[Any]:
        """The compiled signatures loaded so far (none while only interpreted)."""
        return [] if self._dispatcher is None else list(self._dispatcher.signatures)

    def __call__(self, *args: Any) -> Any:  # noqa: ANN401 - the kernel's own values
        dispatcher = self._dispatcher
        if dispatcher is not None:  # compiled already: the same values, sooner
            return dispatcher(*args)
        if _interpreting():
            return self.py_func(*args)  # called from an interpreted kernel
        if "numba" in sys.modules or _elements(args) > INTERPRET_MAX_ELEMENTS:
            return self.compiled()(*args)
        _state.on = True
        try:
            with np.errstate(all="ignore"):
                return self.py_func(*args)
        except (ZeroDivisionError, OverflowError):
            # plain floats raise where numba's error model gives inf/nan: redo it compiled
            # (kernels write only their own outputs, which the compiled run writes again)
            pass
        finally:
            _state.on = False
        return self.compiled()(*args)


def _elements(args: tuple[Any, ...]) -> int:
    return sum(a.size for a in args if isinstance(a, np.ndarray))


def kernel(**options: Any) -> Callable[[Callable[..., Any]], Kernel]:  # noqa: ANN401 - njit's
    """``@kernel(cache=True, nogil=True)``: like ``@njit(...)``, compiled on first need."""

    def wrap(fn: Callable[..., Any]) -> Kernel:
        return Kernel(fn, options)

    return wrap
