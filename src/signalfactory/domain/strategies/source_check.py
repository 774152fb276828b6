"""The static check of an uploaded Python strategy: what its source may say at all.

An uploaded strategy only ever runs in the sandbox (``signalfactory.adapters.sandbox``),
which is the security boundary: its own process, no network, no file system, no secrets,
resource limits, an audit hook. This check runs before any of that, at upload and again
when a worker loads the code, so that most hostile or careless code is refused with a
message naming the line and the rule instead of being stopped half-way through a run.

The rules (each ``BadInputError`` carries ``rule=`` one of these names):

- ``syntax``: the source must parse (Python 3.11) and stay within the size limits;
- ``import``: only ``numpy`` (and its submodules but ``numpy.ctypeslib``, ``numpy.f2py``,
  ``numpy.distutils``, ``numpy.testing``), ``pandas``, ``math`` and the platform's strategy
  API may be imported — the indicator API (``from signalfactory.domain.indicators import
  compute, registry``), the base class and result type (``from signalfactory.domain.strategies
  import PythonStrategy``, ``from signalfactory.domain.rules import Evaluation``) and the bar
  types (``from signalfactory.domain.bars import BarUniverse, BarSeries``); no relative or
  star imports;
- ``dunder``: no name, attribute, string or method definition spelled ``__x__`` (the ways
  into ``__subclasses__``, ``__globals__``, ``__builtins__``, ``__import__``...), except
  ``__init__`` (defining it, calling ``super().__init__``);
- ``private``: no attribute starting with ``_`` (numpy's and pandas' internals);
- ``attribute``: no attribute that reaches a frame, code object or a dangerous module
  (``f_globals``, ``gi_frame``, ``os``, ``sys``, ``ctypes``, ``as_strided``...);
- ``builtin``: no call of ``exec``, ``eval``, ``compile``, ``open``, ``getattr`` and the like
  (they are also missing from the sandbox's builtins);
- ``global``: no ``global`` statement (state kept across runs would make runs depend on
  what ran before);
- ``class``: the source defines the strategy class: a class with an ``evaluate`` method,
  named by the caller when there are several; no ``metaclass=``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass

from signalfactory.domain.errors import BadInputError

MAX_SOURCE_BYTES = 200_000
MAX_LINES = 5_000
MAX_NODES = 60_000

#: top-level modules importable as a whole (``import numpy as np``, ``from math import log``)
ALLOWED_MODULES: frozenset[str] = frozenset({"numpy", "pandas", "math"})
#: submodules of the allowed packages that are refused (C pointers, compilers, subprocesses)
DENIED_SUBMODULES: frozenset[str] = frozenset({
    "numpy.ctypeslib", "numpy.f2py", "numpy.distutils", "numpy.testing", "numpy.lib.format",
    "numpy.lib.stride_tricks", "pandas.io", "pandas.util", "pandas.testing", "pandas.compat",
    "pandas.errors"})
#: platform modules a strategy may import names from, and which names
PLATFORM_API: dict[str, frozenset[str]] = {
    "signalfactory.domain.indicators": frozenset({"compute", "registry"}),
    "signalfactory.domain.rules": frozenset({"Evaluation"}),
    "signalfactory.domain.strategies": frozenset({"PythonStrategy"}),
    "signalfactory.domain.bars": frozenset({"BarUniverse", "BarSeries"}),
    "__future__": frozenset({"annotations"}),
}

#: builtins a strategy may not name: they run code, open files, or look things up by string
FORBIDDEN_BUILTINS: frozenset[str] = frozenset({
    "eval", "exec", "compile", "open", "input", "breakpoint", "help", "getattr", "setattr",
    "delattr", "hasattr", "vars", "globals", "locals", "dir", "memoryview", "type", "id",
})

#: attribute names refused anywhere: frames and code objects (the way to another function's
#: globals), modules that do I/O, and numpy's raw-memory tools
FORBIDDEN_ATTRIBUTES: frozenset[str] = frozenset({
    # frames, tracebacks, generators, code, cells
    "f_globals", "f_locals", "f_builtins", "f_back", "f_code", "f_trace", "f_lasti",
    "gi_frame", "gi_code", "gi_yieldfrom", "cr_frame", "cr_code", "cr_await", "ag_frame",
    "ag_code", "tb_frame", "tb_next", "co_code", "co_consts", "co_names", "cell_contents",
    "func_globals", "func_code", "mro", "with_traceback",
    # modules reachable through numpy's and pandas' own imports
    "os", "sys", "subprocess", "socket", "ctypes", "builtins", "importlib", "gc", "inspect",
    "io", "pickle", "marshal", "shutil", "threading", "multiprocessing", "signal", "resource",
    "mmap", "tarfile", "zipfile", "gzip", "bz2", "lzma", "tempfile", "pathlib", "posix",
    "select", "selectors", "asyncio", "urllib", "http", "ssl", "platform", "ctypeslib",
    "f2py", "distutils", "testing", "compat", "util", "errors", "cloudpickle", "operator",
    "attrgetter", "methodcaller", "types", "copyreg", "runpy", "pkgutil", "codeop",
    # the same builtins as above, reached as attributes of a module
    "eval", "exec", "compile", "open", "getattr", "setattr", "delattr", "globals", "locals",
    "vars", "system", "popen", "fork", "spawn", "environ", "getenv", "putenv",
    # raw memory and code generation
    "as_strided", "query", "sleep", "fromfile", "tofile", "memmap",
})


@dataclass(frozen=True)
class CheckedSource:
    """A source that passed: the strategy class it defines and the modules it imports."""

    class_name: str
    classes: tuple[str, ...]
    imports: tuple[str, ...]


def _refuse(node: ast.AST | None, rule: str, message: str) -> BadInputError:
    line = getattr(node, "lineno", None)
    col = getattr(node, "col_offset", None)
    where = f"line {line}, column {col + 1}: " if line is not None and col is not None else ""
    return BadInputError(f"{where}{message}", rule=rule)


def _is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def module_allowed(module: str) -> bool:
    top = module.split(".")[0]
    if top not in ALLOWED_MODULES:
        return False
    return not any(module == d or module.startswith(d + ".") for d in DENIED_SUBMODULES)


def allowed_imports_text() -> str:
    platform = "; ".join(f"from {m} import {', '.join(sorted(names))}"
                         for m, names in PLATFORM_API.items() if m != "__future__")
    return f"numpy, pandas, math; {platform}"


def _check_import(node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            if not module_allowed(alias.name):
                raise _refuse(node, "import", f"import of {alias.name!r} is not allowed in a "
                                              f"sandboxed strategy; allowed: "
                                              f"{allowed_imports_text()}")
            yield alias.name
        return
    if node.level:
        raise _refuse(node, "import", "relative imports are not allowed")
    module = node.module or ""
    if any(alias.name == "*" for alias in node.names):
        raise _refuse(node, "import", f"'from {module} import *' is not allowed; name what "
                                      "you import")
    if module in PLATFORM_API:
        wrong = sorted(a.name for a in node.names if a.name not in PLATFORM_API[module])
        if wrong:
            offered = ", ".join(sorted(PLATFORM_API[module]))
            raise _refuse(node, "import", f"{module} offers {offered} to strategies, not "
                                          f"{', '.join(wrong)}")
        yield module
        return
    if not module_allowed(module):
        raise _refuse(node, "import", f"import from {module!r} is not allowed in a sandboxed "
                                      f"strategy; allowed: {allowed_imports_text()}")
    for alias in node.names:
        if alias.name.startswith("_") or alias.name in FORBIDDEN_ATTRIBUTES:
            raise _refuse(node, "import", f"importing {alias.name!r} from {module} is not "
                                          "allowed")
        if not module_allowed(f"{module}.{alias.name}"):
            raise _refuse(node, "import", f"import of '{module}.{alias.name}' is not allowed")
    yield module


def _check_node(node: ast.AST) -> None:
    if isinstance(node, ast.Name):
        if _is_dunder(node.id):
            raise _refuse(node, "dunder", f"the name {node.id!r} is not allowed")
        if node.id in FORBIDDEN_BUILTINS:
            raise _refuse(node, "builtin", f"{node.id}() is not available to strategies")
    elif isinstance(node, ast.Attribute):
        attr = node.attr
        if _is_dunder(attr) and attr != "__init__":  # super().__init__(...) is fine
            raise _refuse(node, "dunder", f"the attribute {attr!r} is not allowed")
        if attr.startswith("_") and attr != "__init__":
            raise _refuse(node, "private", f"the private attribute {attr!r} is not allowed")
        if attr in FORBIDDEN_ATTRIBUTES:
            raise _refuse(node, "attribute", f"the attribute {attr!r} is not allowed (it "
                                             "reaches frames, code or I/O)")
    elif isinstance(node, ast.Constant) and isinstance(node.value, str):
        if "__" in node.value:
            raise _refuse(node, "dunder", "strings containing '__' are not allowed (they "
                                          "spell attribute lookups in format strings)")
    elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        if _is_dunder(node.name) and node.name != "__init__":
            raise _refuse(node, "dunder", f"defining {node.name!r} is not allowed (only "
                                          "__init__ among the special methods)")
    elif isinstance(node, ast.ClassDef):
        if any(k.arg == "metaclass" for k in node.keywords):
            raise _refuse(node, "class", "metaclass= is not allowed")
        if _is_dunder(node.name):
            raise _refuse(node, "dunder", f"the class name {node.name!r} is not allowed")
    elif isinstance(node, ast.Global):
        raise _refuse(node, "global", "'global' is not allowed: a strategy keeps no state "
                                      "between runs")
    elif isinstance(node, ast.arg | ast.keyword):
        name = node.arg
        if name is not None and _is_dunder(name):
            raise _refuse(node, "dunder", f"the name {name!r} is not allowed")
    elif isinstance(node, ast.alias) and node.asname is not None and _is_dunder(node.asname):
        raise _refuse(node, "dunder", f"the name {node.asname!r} is not allowed")


def _in_source_order(tree: ast.Module) -> list[ast.AST]:
    """Every node, the first in the source first (and of nodes starting at the same place,
    the innermost: what runs first), so the error names the first problem a reader meets."""
    found: list[tuple[int, int, int, ast.AST]] = []
    stack: list[tuple[ast.AST, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        found.append((getattr(node, "lineno", 0), getattr(node, "col_offset", 0), -depth, node))
        if len(found) > MAX_NODES:
            raise BadInputError(f"the source has more than {MAX_NODES:,} syntax nodes",
                                rule="syntax")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    found.sort(key=lambda item: item[:3])
    return [node for *_key, node in found]


def _strategy_classes(tree: ast.Module) -> list[str]:
    found = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any(
                isinstance(item, ast.FunctionDef) and item.name == "evaluate"
                for item in node.body):
            found.append(node.name)
    return found


def parse_source(source: str) -> ast.Module:
    """The syntax tree, or BadInputError[syntax] with the line."""
    if "\x00" in source:
        raise BadInputError("the source contains a NUL character", rule="syntax")
    size = len(source.encode("utf-8", "surrogatepass"))
    if size > MAX_SOURCE_BYTES:
        raise BadInputError(f"the source is {size:,} bytes; at most {MAX_SOURCE_BYTES:,}",
                            rule="syntax")
    if source.count("\n") > MAX_LINES:
        raise BadInputError(f"the source has more than {MAX_LINES:,} lines", rule="syntax")
    try:
        return ast.parse(source, filename="<strategy>", mode="exec", feature_version=(3, 11))
    except SyntaxError as exc:
        where = f"line {exc.lineno}, column {exc.offset}: " if exc.lineno else ""
        raise BadInputError(f"{where}{exc.msg}", rule="syntax") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise BadInputError(f"the source cannot be parsed: {type(exc).__name__}",
                            rule="syntax") from None


def check_source(source: str, class_name: str | None = None) -> CheckedSource:
    """Check an uploaded strategy's source (see the module docstring); BadInputError names
    the line and the rule it breaks."""
    tree = parse_source(source)
    imports: list[str] = []
    for node in _in_source_order(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            imports.extend(_check_import(node))
        _check_node(node)
    classes = _strategy_classes(tree)
    if class_name is not None:
        if class_name not in classes:
            known = ", ".join(classes) or "none"
            raise BadInputError(f"the source defines no strategy class {class_name!r} (a "
                                f"top-level class with an evaluate method; found: {known})",
                                rule="class")
        chosen = class_name
    elif len(classes) == 1:
        chosen = classes[0]
    elif not classes:
        raise BadInputError("the source defines no strategy class: a top-level class with "
                            "an evaluate(self, universe) method returning an Evaluation",
                            rule="class")
    else:
        raise BadInputError(f"the source defines several strategy classes "
                            f"({', '.join(classes)}); say which one to run", rule="class")
    return CheckedSource(class_name=chosen, classes=tuple(classes),
                         imports=tuple(dict.fromkeys(imports)))
