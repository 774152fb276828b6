"""Inside a worker: the audit hook, the builtins and the import function user code gets.

This is the in-process layer of the sandbox; the process around it (no network namespace,
an empty root, an unprivileged user, resource limits; see ``worker``) is the boundary that
holds even if this layer were bypassed. Its job is to stop what slips past the static check
(``domain.strategies.source_check``) with an error that says what was refused.

The audit hook (PEP 578; it cannot be removed once added) refuses by default: every event
not listed as harmless is refused, and the first refusal is remembered so that a strategy
catching the ``SandboxRefusalError`` still fails its run. Allowed: attribute and frame look-ups
(numpy and pandas use them for warnings), ``time.sleep`` (the wall clock bounds it), read-only
opens below the Python installation (in an empty root there is nothing to open anyway),
``exec`` of the strategy's own module code, mapping the bars' memfd, and lowering the CPU
limit for the next call. Refused, among everything else: imports of modules not loaded
before the strategy, ``compile``, sockets, subprocesses, ``os.*`` (exec, fork, system, kill,
remove, listdir...), ctypes, threads, ``gc`` and ``sys`` introspection, new audit hooks,
``open`` for writing or outside the installation.
"""

from __future__ import annotations

import builtins
import os
import resource
import sys
import types
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from signalfactory.domain.strategies.source_check import PLATFORM_API, module_allowed

HARMLESS_EVENTS = frozenset({
    "builtins.id", "object.__getattr__", "sys._getframe", "sys._getframemodulename",
    "time.sleep", "array.__new__", "sys.excepthook",
})
READ_ONLY_MODES = frozenset({"r", "rb", "br", "rt", "tr"})
#: what libraries read to size their thread pools: let them look (in an empty root they
#: find nothing and fall back) instead of refusing, which would bury a real refusal
SYSTEM_INFO = ("/sys/fs/cgroup/", "/proc/cpuinfo", "/proc/meminfo", "/proc/self/cgroup",
               "/sys/devices/system/cpu/")

SAFE_BUILTINS = (
    "abs", "all", "any", "ascii", "bin", "bool", "bytes", "callable", "chr", "complex",
    "dict", "divmod", "enumerate", "filter", "float", "format", "frozenset", "hash", "hex",
    "int", "isinstance", "issubclass", "iter", "len", "list", "map", "max", "min", "next",
    "object", "oct", "ord", "pow", "print", "property", "range", "repr", "reversed", "round",
    "set", "slice", "sorted", "staticmethod", "classmethod", "str", "sum", "super", "tuple",
    "zip", "True", "False", "None", "NotImplemented", "Ellipsis",
    "ArithmeticError", "AssertionError", "AttributeError", "Exception", "FloatingPointError",
    "IndexError", "KeyError", "LookupError", "NotImplementedError", "OverflowError",
    "RuntimeError", "StopIteration", "TypeError", "ValueError", "ZeroDivisionError",
    "Warning", "RuntimeWarning", "UserWarning",
)


class SandboxRefusalError(PermissionError):
    """Raised where the sandbox refuses an operation (see the module docstring)."""


@dataclass
class Violations:
    """The refusals of a worker's life (the first few, distinct): once there is one, the
    worker answers nothing but them, even if the strategy caught the exception."""

    seen: list[str] = field(default_factory=list)
    mmap_fds: set[int] = field(default_factory=set)

    @property
    def first(self) -> str | None:
        """What was refused, or None: the first three refusals, in order."""
        return "; then ".join(self.seen) if self.seen else None

    def refuse(self, what: str) -> SandboxRefusalError:
        if len(self.seen) < 3 and what not in self.seen:
            self.seen.append(what)
        return SandboxRefusalError(f"the sandbox refused {what}")


def _describe(event: str, args: tuple[Any, ...]) -> str:
    shown = []
    for arg in args[:3]:
        text = repr(arg) if isinstance(arg, str | bytes | int | float) or arg is None \
            else type(arg).__name__
        shown.append(text[:120])
    return f"{event}({', '.join(shown)})"


def _open_allowed(args: tuple[Any, ...], read_roots: Collection[str]) -> bool:
    path, mode = args[0], args[1] if len(args) > 1 else "r"
    flags = args[2] if len(args) > 2 else 0
    if not isinstance(path, str | bytes) or not isinstance(mode, str | type(None)):
        return False
    if mode is not None and mode not in READ_ONLY_MODES:
        return False
    if isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT
                                           | os.O_TRUNC | os.O_APPEND):
        return False
    text = os.fsdecode(path)
    real = os.path.realpath(text)
    if any(real == p.rstrip("/") or real.startswith(p) for p in SYSTEM_INFO):
        return True
    return any(real == r or real.startswith(r.rstrip("/") + "/") for r in read_roots)


def install_audit_hook(violations: Violations, exec_codes: Collection[types.CodeType],
                       read_roots: Collection[str]) -> None:
    """Add the hook (for the rest of the process's life)."""
    allowed_codes = tuple(exec_codes)

    def judge(event: str, args: tuple[Any, ...]) -> bool:
        if event == "exec":
            return bool(args) and any(args[0] is code for code in allowed_codes)
        if event in ("object.__setattr__", "object.__delattr__"):
            name = args[1] if len(args) > 1 else ""
            return isinstance(name, str) and not name.startswith("__")
        if event == "open":
            return _open_allowed(args, read_roots)
        if event == "mmap.__new__":
            return bool(args) and args[0] in violations.mmap_fds
        if event == "resource.setrlimit":
            return bool(args) and args[0] == resource.RLIMIT_CPU
        return False

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event in HARMLESS_EVENTS or judge(event, args):
            return
        raise violations.refuse(_describe(event, args))

    sys.addaudithook(hook)


def safe_builtins(violations: Violations) -> dict[str, Any]:
    """The builtins user code sees: no exec/eval/open/getattr..., and an import function
    that hands out only the allowed modules, already loaded."""
    table: dict[str, Any] = {name: getattr(builtins, name) for name in SAFE_BUILTINS}
    table["__build_class__"] = builtins.__build_class__
    table["__import__"] = restricted_import(violations, sys.modules, PLATFORM_API)
    return table


def restricted_import(violations: Violations, modules: Mapping[str, types.ModuleType],
                      platform_api: Mapping[str, Collection[str]]) -> Callable[..., Any]:
    def _import(name: str, globals: object = None, locals: object = None,
                fromlist: Collection[str] | None = (), level: int = 0) -> object:
        if level:
            raise violations.refuse("a relative import")
        wanted = tuple(fromlist or ())
        if name in platform_api:
            offered = platform_api[name]
            wrong = [n for n in wanted if n not in offered]
            if not wanted or wrong:
                raise violations.refuse(f"import of {', '.join(wrong) or name!r} from {name}")
            module = modules[name]
            return types.SimpleNamespace(**{n: getattr(module, n) for n in wanted})
        if not module_allowed(name):
            raise violations.refuse(f"import of {name!r}")
        for item in wanted:
            if item.startswith("_") or not module_allowed(f"{name}.{item}"):
                raise violations.refuse(f"import of {item!r} from {name}")
        found = modules.get(name)
        if found is None:
            raise violations.refuse(f"import of {name!r} (not loaded in the sandbox)")
        return found if wanted else modules[name.partition(".")[0]]

    return _import
