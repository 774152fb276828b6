"""Signal Factory: market data in, ranked trading signals, backtests and deliveries out."""

import os as _os

# numba's OpenMP threads otherwise spin after every parallel section; on a small machine that
# steals the cores the next section (or the API) needs. Must be set before numba loads.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
