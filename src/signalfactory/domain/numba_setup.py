"""numba, imported so that its first dispatcher does not drag in SciPy.

The first compiled function a process calls (even one loaded from numba's on-disk cache) makes
numba load its NumPy registries; one of them, ``numba.np.arraymath``, probes for BLAS at
import by importing ``scipy.linalg`` — about 0.4 s that every CLI command, worker restart
and fresh API process paid, though no kernel here uses linear algebra. Importing
``arraymath`` with ``scipy`` held out of reach makes that probe answer "no BLAS", whose only
effect is that ``np.cov``-style inner products inside kernels use numba's plain loop
(``np.dot`` still checks for SciPy itself when a kernel using it is compiled).

Kernel modules import ``njit`` / ``prange`` from here rather than from numba. A lazily
compiled `Kernel` (``domain/kernels.py``) is typed here as its compiled dispatcher, so numba
kernels call it like any other.
"""

from __future__ import annotations

import sys


def _import_arraymath_without_scipy() -> None:
    if "numba.np.arraymath" in sys.modules or "scipy" in sys.modules:
        return  # already decided, or SciPy is loaded anyway (then the probe is cheap)
    sys.modules["scipy"] = None  # type: ignore[assignment]  # makes `import scipy` fail
    try:
        import numba.np.arraymath  # noqa: F401 - imported for its registrations
    finally:
        if sys.modules.get("scipy", 0) is None:
            del sys.modules["scipy"]


_import_arraymath_without_scipy()

from numba import njit, prange, types  # noqa: E402 - after the import above, on purpose
from numba.extending import typeof_impl  # noqa: E402 - likewise

from signalfactory.domain.kernels import Kernel  # noqa: E402 - likewise


@typeof_impl.register(Kernel)
def _typeof_kernel(value: Kernel, _context: object) -> types.Dispatcher:
    return types.Dispatcher(value.compiled())


__all__ = ["njit", "prange"]
