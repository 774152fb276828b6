"""Python strategy sources the sandbox tests upload."""

SMA_CROSS = '''\
import numpy as np
from signalfactory.domain.rules import Evaluation
from signalfactory.domain.strategies import PythonStrategy


def sma(x, offsets, n):
    sums = np.concatenate(([0.0], np.cumsum(x)))
    out = np.full(x.shape[0], np.nan)
    out[n - 1:] = (sums[n:] - sums[:-n]) / n
    start = np.repeat(offsets[:-1], np.diff(offsets))
    out[np.arange(x.shape[0]) - start < n - 1] = np.nan
    return out


class SmaCross(PythonStrategy):
    name = "sma_cross_py"
    defaults = {"fast": 10, "slow": 30}

    @property
    def required_lookback(self):
        return int(self.parameters["slow"])

    def evaluate(self, universe):
        fast = sma(universe.close, universe.offsets, int(self.parameters["fast"]))
        slow = sma(universe.close, universe.offsets, int(self.parameters["slow"]))
        gap = fast - slow
        before = np.empty_like(gap)
        before[1:] = gap[:-1]
        before[universe.offsets[:-1]] = np.nan
        with np.errstate(invalid="ignore"):
            entry = (gap > 0) & (before <= 0)
            exit = (gap < 0) & (before >= 0)
        return Evaluation.from_arrays(universe, entry=entry, exit=exit,
                                      score=np.abs(gap) / universe.close,
                                      values={"fast": fast, "slow": slow},
                                      lookback=self.required_lookback)
'''

RANDOM = '''\
import numpy as np
from signalfactory.domain.rules import Evaluation
from signalfactory.domain.strategies import PythonStrategy


class Coin(PythonStrategy):
    def evaluate(self, universe):
        draws = np.random.default_rng().random(universe.close.shape[0])
        legacy = np.random.rand(universe.close.shape[0])
        return Evaluation.from_arrays(universe, entry=draws > 0.7, exit=legacy > 0.7,
                                      score=draws)
'''
