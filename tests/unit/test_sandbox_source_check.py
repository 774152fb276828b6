"""The static check of uploaded Python strategies: what passes, and what is refused with
the line and the rule named."""

from __future__ import annotations

import pytest

from signalfactory.domain.errors import BadInputError
from signalfactory.domain.sandbox import SandboxProgram, source_sha256
from signalfactory.domain.strategies.source_check import (
    MAX_SOURCE_BYTES,
    check_source,
    module_allowed,
)

GOOD = '''\
from __future__ import annotations

import math

import numpy as np
import numpy.linalg as la
import pandas as pd
from numpy import fft
from signalfactory.domain.bars import BarUniverse
from signalfactory.domain.indicators import compute, registry
from signalfactory.domain.rules import Evaluation
from signalfactory.domain.strategies import PythonStrategy


class Helper:
    """Not a strategy: no evaluate method."""


class Trend(PythonStrategy):
    name = "trend"
    defaults = {"n": 14}

    def __init__(self, **parameters):
        super().__init__(**parameters)
        self.cache = {}

    @property
    def required_lookback(self) -> int:
        return int(self.parameters["n"])

    def evaluate(self, universe: BarUniverse) -> Evaluation:
        rsi = compute("rsi", universe, universe.close, timeperiod=self.required_lookback)
        frame = pd.DataFrame({"c": universe.close})
        smooth = frame["c"].ewm(span=5).mean().to_numpy()
        spread = la.norm(fft.rfft(smooth[:8])) + math.pi
        exit = rsi["real"] > 70
        return Evaluation.from_arrays(universe, entry=rsi["real"] < 30, exit=exit,
                                      values={"spread": np.full(smooth.shape, spread)})
'''


def test_a_normal_strategy_passes() -> None:
    checked = check_source(GOOD)
    assert checked.class_name == "Trend" and checked.classes == ("Trend",)
    assert set(checked.imports) >= {"numpy", "pandas", "math", "numpy.linalg",
                                    "signalfactory.domain.indicators"}


def _refusal(source: str, class_name: str | None = None) -> BadInputError:
    with pytest.raises(BadInputError) as caught:
        check_source(source, class_name)
    return caught.value


STRATEGY = "class S:\n    def evaluate(self, universe):\n        {body}\n"


@pytest.mark.parametrize(("body", "rule", "fragment"), [
    ("import os", "import", "'os'"),
    ("import numpy.ctypeslib", "import", "numpy.ctypeslib"),
    ("from numpy import ctypeslib", "import", "ctypeslib"),
    ("from numpy.lib import stride_tricks", "import", "stride_tricks"),
    ("from pandas import io", "import", "'io'"),
    ("from signalfactory.domain.rules import evaluate", "import", "not evaluate"),
    ("from signalfactory.settings import Settings", "import", "signalfactory.settings"),
    ("import signalfactory.domain.indicators", "import", "signalfactory.domain.indicators"),
    ("from . import x", "import", "relative"),
    ("from math import *", "import", "*"),
    ("from numpy import _core", "import", "'_core'"),
    ("__import__('os')", "dunder", "__import__"),
    ("x = self.__class__", "dunder", "__class__"),
    ("x = '__globals__'", "dunder", "'__'"),
    ("x = universe._offsets", "private", "_offsets"),
    ("x = (y for y in ()).gi_frame", "attribute", "gi_frame"),
    ("x = universe.close.ctypes", "attribute", "ctypes"),
    ("x = pd.io", "attribute", "'io'"),
    ("x = eval('1')", "builtin", "eval()"),
    ("x = getattr(universe, 'close')", "builtin", "getattr()"),
    ("x = open", "builtin", "open()"),
    ("x = type(universe)", "builtin", "type()"),
    ("global y", "global", "global"),
    ("\uff45\uff56\uff41\uff4c('1')", "builtin", "eval()"),  # full-width letters: NFKC 'eval'
])
def test_refusals_name_the_line_and_rule(body: str, rule: str, fragment: str) -> None:
    error = _refusal(STRATEGY.format(body=body))
    assert error.rule == rule, str(error)
    assert "line 3, column " in str(error)
    assert fragment in str(error)


def test_special_methods_but_init_and_metaclasses_are_refused() -> None:
    for method in ("__del__", "__getattr__", "__eq__", "__init_subclass__"):
        error = _refusal(f"class S:\n    def {method}(self):\n        pass\n"
                         "    def evaluate(self, u):\n        pass\n")
        assert error.rule == "dunder" and method in str(error) and "line 2" in str(error)
    assert _refusal("class M:\n    pass\nclass S(metaclass=M):\n    def evaluate(self, u):\n"
                    "        pass\n").rule == "class"


def test_the_first_problem_in_the_source_is_named() -> None:
    error = _refusal("import numpy\nclass S:\n    def evaluate(self, u):\n"
                     "        return eval(u.__class__)\n")
    # eval comes before u.__class__ on that line
    assert str(error).startswith("[builtin]: line 4, column 16"), str(error)


def test_the_strategy_class_is_found_or_named() -> None:
    two = "class A:\n    def evaluate(self, u):\n        pass\nclass B(A):\n" \
          "    def evaluate(self, u):\n        pass\n"
    assert _refusal(two).rule == "class"
    assert check_source(two, "B").class_name == "B"
    assert _refusal(two, "C").rule == "class"
    assert "no strategy class" in str(_refusal("x = 1\n"))


@pytest.mark.parametrize(("source", "fragment"), [
    ("def (:\n", "line 1"),
    ("x = 1\x00", "NUL"),
    ("x = 1\n" * (MAX_SOURCE_BYTES // 6 + 1), "bytes"),
    ("x = 1\n" * 5001, "lines"),
    ("x = (" * 300 + ")" * 300, "nested"),
])
def test_syntax_and_size_refusals(source: str, fragment: str) -> None:
    error = _refusal(source)
    assert error.rule == "syntax" and fragment in str(error), str(error)


def test_module_allow_list() -> None:
    assert module_allowed("numpy") and module_allowed("numpy.linalg")
    assert module_allowed("pandas") and module_allowed("math")
    assert not module_allowed("numpy.f2py") and not module_allowed("numpy.testing.x")
    assert not module_allowed("os") and not module_allowed("numpyx")


def test_code_hash_is_the_sha256_of_the_source() -> None:
    import hashlib

    assert source_sha256(GOOD) == hashlib.sha256(GOOD.encode()).hexdigest()
    program = SandboxProgram(GOOD, "Trend", {"n": 3})
    assert program.code_hash == source_sha256(GOOD)
    assert program.key == (program.code_hash, "Trend", (("n", 3),))
