"""Hostile strategies for the escape suite (``test_sandbox_escapes.py``).

Each case says where it must be stopped: at ``upload`` (the static check's rule, or
``sandbox-load`` when loading it in the sandbox broke a limit) or at ``run`` time (the limit
recorded in ``sandbox_runs.limit_hit``: cpu, memory, wall, recursion, refused, output; or
``error`` for the strategy's own exception), and a fragment of the message that names it.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

from signalfactory.domain.sandbox import SandboxLimits

HEADER = """\
import math
import numpy as np
import pandas as pd
from signalfactory.domain.rules import Evaluation
from signalfactory.domain.strategies import PythonStrategy
"""

#: where the suite's hostile writes aim (replaced by the test database's real path)
DB_PATH = "{db_path}"


def strategy(body: str = "", *, module: str = "", members: str = "",
             result: str = "Evaluation.from_arrays(universe, entry=universe.close > 0)") -> str:
    """A strategy whose ``evaluate`` runs ``body`` and returns ``result``; ``module`` goes
    before the class and ``members`` into it."""
    evaluate = textwrap.indent(textwrap.dedent(body).strip() or "pass", " " * 8)
    extra = textwrap.indent(textwrap.dedent(members).strip(), " " * 4)
    return (f"{HEADER}{textwrap.dedent(module).strip()}\n\n\nclass Hostile(PythonStrategy):\n"
            f"    name = 'hostile'\n{extra}\n\n    def evaluate(self, universe):\n{evaluate}\n"
            f"        return {result}\n")


@dataclass(frozen=True)
class Hostile:
    id: str
    what: str
    source: str
    stage: str  # upload | run
    stopped_by: str  # upload: the check's rule or sandbox-load; run: the limit hit
    fragment: str
    limits: SandboxLimits | None = None  # run under other limits than the suite's


def upload(id_: str, what: str, source: str, rule: str, fragment: str) -> Hostile:
    return Hostile(id_, what, source, "upload", rule, fragment)


def run(id_: str, what: str, source: str, limit: str, fragment: str,
        limits: SandboxLimits | None = None) -> Hostile:
    return Hostile(id_, what, source, "run", limit, fragment, limits)


STATIC = [
    upload("import-os", "import os", strategy(module="import os"), "import", "'os'"),
    upload("import-subprocess", "run a shell command",
           strategy("subprocess.run(['id'])", module="import subprocess"), "import",
           "'subprocess'"),
    upload("socket-loopback", "open a socket to 127.0.0.1",
           strategy("socket.create_connection(('127.0.0.1', 8000))", module="import socket"),
           "import", "'socket'"),
    upload("import-ctypes", "load libc through ctypes",
           strategy("ctypes.CDLL(None).system(b'id')", module="import ctypes"), "import",
           "'ctypes'"),
    upload("import-sys", "reach sys.modules", strategy("sys.modules['os']",
                                                       module="import sys"),
           "import", "'sys'"),
    upload("importlib", "importlib.import_module('os')",
           strategy("importlib.import_module('os')", module="import importlib"), "import",
           "'importlib'"),
    upload("from-os-import", "from os import system", strategy(module="from os import system"),
           "import", "'os'"),
    upload("dunder-import", "__import__('os').system(...)",
           strategy("__import__('os').system('id')"), "dunder", "__import__"),
    upload("builtins-dict", "__builtins__['open']",
           strategy("__builtins__['open']('/etc/passwd')"), "dunder", "__builtins__"),
    upload("open-passwd", "open('/etc/passwd')", strategy("open('/etc/passwd').read()"),
           "builtin", "open()"),
    upload("write-database-file", "open the database file for writing",
           strategy(f"open('{DB_PATH}', 'wb').write(b'pwned')"), "builtin", "open()"),
    upload("eval", "eval a string", strategy("eval('1 + 1')"), "builtin", "eval()"),
    upload("exec", "exec a string", strategy("exec('import os')"), "builtin", "exec()"),
    upload("compile", "compile code", strategy("compile('1', 'x', 'eval')"), "builtin",
           "compile()"),
    upload("getattr-string", "getattr with a string",
           strategy("getattr(np, 'lo' + 'ad')('/etc/passwd')"), "builtin", "getattr()"),
    upload("subclasses-walk", "().__class__.__bases__[0].__subclasses__()",
           strategy("().__class__.__bases__[0].__subclasses__()"), "dunder", "__class__"),
    upload("function-globals", "a function's __globals__", strategy("(lambda: 0).__globals__"),
           "dunder", "__globals__"),
    upload("frame-walk", "reach a caller's globals through a generator frame",
           strategy("g = (x for x in [1])\ng.gi_frame.f_back.f_globals"), "attribute",
           "'gi_frame'"),
    upload("environ-via-pandas", "read os.environ through pandas' imports",
           strategy("pd.compat.os.environ"), "attribute", "'compat'"),
    upload("environ-via-gc", "find os.environ with gc",
           strategy("[o for o in gc.get_objects() if isinstance(o, dict)]", module="import gc"),
           "import", "'gc'"),
    upload("ndarray-ctypes", "a raw pointer through ndarray.ctypes",
           strategy("universe.close.ctypes.data"), "attribute", "'ctypes'"),
    upload("numpy-ctypeslib", "from numpy import ctypeslib",
           strategy(module="from numpy import ctypeslib"), "import", "ctypeslib"),
    upload("as-strided", "read memory past an array with as_strided",
           strategy("np.lib.stride_tricks.as_strided(universe.close, shape=(10**9,))"),
           "attribute", "'as_strided'"),
    upload("format-dunder", "attribute lookups in a format string",
           strategy("'{0.__class__.__init__.__globals__}'.format(self)"), "dunder", "'__'"),
    upload("metaclass", "a metaclass", strategy(module="class Meta:\n    pass\n\n\n"
                                                "class Other(metaclass=Meta):\n    pass"),
           "class", "metaclass"),
    upload("del-hook", "__del__ running at an unexpected time",
           strategy(members="def __del__(self):\n    pass"), "dunder", "__del__"),
    upload("global-state", "state kept across runs",
           strategy("global calls\ncalls = 1", module="calls = 0"), "global", "global"),
    upload("relative-import", "a relative import", strategy(module="from . import secrets"),
           "import", "relative"),
    upload("star-import", "from numpy import *", strategy(module="from numpy import *"),
           "import", "*"),
    upload("sleep-past-wall", "sleep past the wall clock",
           strategy("time.sleep(3600)", module="import time"), "import", "'time'"),
    upload("builtins-via-numpy", "eval through numpy.ma's builtins",
           strategy("np.ma.core.builtins.eval('1')"), "attribute", "'builtins'"),
    upload("vars", "vars(self)", strategy("vars(self)"), "builtin", "vars()"),
    upload("type-mro", "type(x).mro()", strategy("type(self).mro()"), "builtin", "type()"),
    upload("mro-walk", "walk the class hierarchy", strategy("self.mro()"), "attribute",
           "'mro'"),
    upload("platform-internals", "the platform's storage layer",
           strategy(module="from signalfactory.adapters.storage import db"), "import",
           "signalfactory.adapters.storage"),
    upload("indicator-internals", "the indicator package's TA-Lib module",
           strategy(module="from signalfactory.domain.indicators import talib_backed"),
           "import", "talib_backed"),
    upload("fork-bomb", "a fork bomb",
           strategy("while True:\n    os.fork()", module="import os"), "import", "'os'"),
    upload("recursion-limit", "raise the recursion limit",
           strategy("sys.setrecursionlimit(10**9)", module="import sys"), "import", "'sys'"),
    upload("attrgetter", "getattr by string through numpy.ma's operator module",
           strategy("np.ma.core.operator.attrgetter('_' + '_globals_' + '_')(np.mean)"),
           "attribute", "'operator'"),
    upload("pandas-eval", "pandas.eval", strategy("pd.eval('1 + 1')"), "attribute", "'eval'"),
    upload("dataframe-query", "DataFrame.query",
           strategy("pd.DataFrame({'a': [1]}).query('a > 0')"), "attribute", "'query'"),
    upload("unicode-eval", "eval spelt in full-width letters (NFKC)",
           strategy("\uff45\uff56\uff41\uff4c('1')"), "builtin", "eval()"),
    upload("pickle-import", "unpickle a payload",
           strategy("pickle.loads(b'cos\\nsystem\\n.')", module="import pickle"), "import",
           "'pickle'"),
    upload("numpy-fromfile", "read a file from C (no audit event)",
           strategy("np.fromfile('/etc/shadow')"), "attribute", "'fromfile'"),
    upload("breakpoint", "breakpoint()", strategy("breakpoint()"), "builtin", "breakpoint()"),
    upload("huge-source", "a 300 kB source", strategy("x = 1\n" + "x = x + 1\n" * 30_000),
           "syntax", "bytes"),
]

LOAD = [
    upload("module-loop", "an infinite loop when the module loads",
           strategy(module="while True:\n    pass"), "sandbox-load", "CPU time limit"),
    upload("module-memory", "a memory bomb when the module loads",
           strategy(module="BIG = np.ones(10**10)"), "sandbox-load", "memory limit"),
    upload("constructor-recursion", "a recursion bomb in the constructor",
           strategy(members="def __init__(self, **kw):\n    self.deeper()\n\n"
                            "def deeper(self):\n    return self.deeper()"),
           "sandbox-load", "recursed too deep"),
    upload("absurd-lookback", "a lookback the platform cannot honour",
           strategy(members="required_lookback = 10**12"), "sandbox-load", "required_lookback"),
]

RUN = [
    run("infinite-loop", "an infinite loop", strategy("while True:\n    pass"), "cpu",
        "CPU time limit"),
    run("numpy-cpu-burn", "endless matrix inversions in C",
        strategy("a = np.ones((300, 300)) + np.eye(300)\nwhile True:\n    np.linalg.inv(a)"),
        "cpu", "CPU time limit"),
    run("memory-bomb", "an 80 GB array", strategy("np.ones(10**10)"), "memory", "memory limit"),
    run("memory-creep", "memory that grows until it runs out",
        strategy("x = []\nwhile True:\n    x.append(np.empty(10**7))"), "memory", "memory limit"),
    run("bytes-bomb", "an 8 GB bytes object", strategy("b'x' * (2**33)"), "memory",
        "memory limit"),
    run("recursion-bomb", "unbounded recursion",
        strategy("self.deeper(0)", members="def deeper(self, n):\n    return self.deeper(n + 1)"),
        "recursion", "recursed too deep"),
    run("repr-recursion", "a structure nested 100,000 deep",
        strategy("x = []\nfor i in range(10**5):\n    x = [x]\nrepr(x)"), "recursion",
        "recursed too deep"),
    run("read-passwd-pandas", "read /etc/passwd through pandas",
        strategy("pd.read_csv('/etc/passwd')"), "refused", "sandbox refused"),
    run("refusal-swallowed", "catch the refusal and carry on",
        strategy("try:\n    pd.read_csv('/etc/passwd')\nexcept Exception:\n    pass"), "refused",
        "sandbox refused"),
    run("write-database-pandas", "overwrite the database file through pandas",
        strategy(f"pd.DataFrame({{'a': [1]}}).to_csv('{DB_PATH}')"), "refused",
        "sandbox refused"),
    run("numpy-load-pickle", "np.load with pickles allowed",
        strategy("np.load('/etc/passwd', allow_pickle=True)"), "refused", "open("),
    run("numpy-savetxt", "write a file with numpy",
        strategy("np.savetxt('/tmp/evil.txt', universe.close)"), "refused", "'w'"),
    run("http-via-pandas", "fetch http://127.0.0.1 through pandas",
        strategy("pd.read_csv('http://127.0.0.1:8000/livez')"), "refused", "sandbox refused"),
    run("lazy-import-plot", "plotting, which imports a plotting backend",
        strategy("pd.Series([1.0, 2.0]).plot()"), "refused", "sandbox refused"),
    run("too-many-values", "a hundred named value series",
        strategy(result="Evaluation.from_arrays(universe, entry=universe.close > 0, "
                        "values={f'v{i}': universe.close for i in range(100)})"),
        "output", "at most 32"),
    run("huge-value-name", "a 2 MB value name",
        strategy(result="Evaluation.from_arrays(universe, entry=universe.close > 0, "
                        "values={'v' * 2_000_000: universe.close})"),
        "output", "refused"),
    run("impossible-bar-times", "signals at bar times that are not in the input",
        strategy("e = Evaluation.from_arrays(universe, entry=universe.close > 0)",
                 result="Evaluation(symbols=e.symbols, offsets=e.offsets, ts=e.ts + 1, "
                        "close=e.close, entry=e.entry, exit=e.exit, "
                        "short_entry=e.short_entry, short_exit=e.short_exit, score=e.score, "
                        "values={})"),
        "output", "not the input's bar time"),
    run("wrong-row-count", "an evaluation of other bars than given",
        strategy("e = Evaluation.from_arrays(universe, entry=universe.close > 0)",
                 result="Evaluation(symbols=e.symbols, offsets=e.offsets, ts=e.ts[:3], "
                        "close=e.close[:3], entry=e.entry[:3], exit=e.exit[:3], "
                        "short_entry=e.short_entry[:3], short_exit=e.short_exit[:3], "
                        "score=e.score[:3], values={})"),
        "output", "rows"),
    run("infinite-score", "infinite scores",
        strategy(result="Evaluation.from_arrays(universe, entry=universe.close > 0, "
                        "score=np.full(universe.close.shape[0], np.inf))"),
        "output", "infinite score"),
    run("pickle-output", "a pickle payload instead of an evaluation",
        strategy(result="b'\\x80\\x04\\x95\\x15\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x8c\\x02os'"),
        "output", "must return an Evaluation"),
    run("object-values", "Python objects where numbers belong",
        strategy("e = Evaluation.from_arrays(universe, entry=universe.close > 0)",
                 result="Evaluation(symbols=e.symbols, offsets=e.offsets, ts=e.ts, "
                        "close=e.close, entry=e.entry, exit=e.exit, "
                        "short_entry=e.short_entry, short_exit=e.short_exit, score=e.score, "
                        "values={'x': np.array([object()] * e.ts.shape[0], dtype=object)})"),
        "output", "refused"),
    run("tamper-input", "overwrite the bars it was given",
        strategy("universe.close[:] = 0.0"), "error", "read-only"),
    run("busy-past-wall", "busy past the wall clock (a CPU allowance above it)",
        strategy("while True:\n    pass"), "wall", "wall-clock limit",
        limits=SandboxLimits(cpu_seconds=30, memory_mb=256, wall_seconds=1.5)),
]

CASES = STATIC + LOAD + RUN
