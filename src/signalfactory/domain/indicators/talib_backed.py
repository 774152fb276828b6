"""Registry entries built programmatically from TA-Lib's own function table.

For each TA-Lib function (``talib.get_functions()``) the inputs, parameters, defaults and
output names come from ``talib.abstract.Function(name).info``; the warm-up is TA-Lib's
``lookback``; the math is TA-Lib's C code. Conventions added on top:

- Inputs TA-Lib lists under ``prices`` (OHLCV fields) are taken from the bars; inputs it
  lists as a single ``price``/``price0``/``price1``/``periods`` are series the caller passes.
- Integer outputs (candlestick patterns, ``*INDEX``) are returned as float64 with the warm-up
  rows set to NaN (TA-Lib fills them with 0, which for an index is a real value).
- Index outputs count bars from the start of each instrument's own slice.
- Short output aliases: ``upperband`` -> ``upper``, ``macdsignal`` -> ``signal``,
  ``aroonup`` -> ``up``, ``haclose`` -> ``close`` (a prefix equal to the function's name or to
  another output's name is dropped; a ``band`` suffix is dropped).
- Parameters are validated by TA-Lib itself (its lookback returns -1 and its functions refuse
  out-of-range values), so the accepted ranges are exactly the installed TA-Lib's.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import talib
from talib import abstract

from signalfactory.domain.indicators.spec import (
    FillKernel,
    FloatArray,
    Indicator,
    Input,
    IntArray,
    Param,
    ParamValue,
)

#: TA-Lib accepts periods up to this value for every function
MAX_PERIOD = 100_000
_UNSTABLE_FLAG = "Function has an unstable period"


def talib_function_names() -> list[str]:
    """Names of every function of the installed TA-Lib (upper case)."""
    names: list[str] = talib.get_functions()  # type: ignore[no-untyped-call]
    return names


def _abstract(ta_name: str) -> Any:  # noqa: ANN401 - TA-Lib's abstract API is untyped
    return abstract.Function(ta_name)  # type: ignore[attr-defined]


def talib_indicator(ta_name: str, registry_name: str | None = None) -> Indicator:
    info: dict[str, Any] = _abstract(ta_name).info
    inputs: list[Input] = []
    for key, value in info["input_names"].items():
        if isinstance(value, str):
            inputs.append(Input(name=key, field=None, default=value))
        else:
            inputs.extend(Input(name=f, field=f) for f in value)
    params = tuple(_param(name, default) for name, default in info["parameters"].items())
    outputs = tuple(str(o) for o in info["output_names"])
    flags = [str(f) for f in info.get("function_flags") or []]
    name = registry_name or ta_name.lower()
    default_lookback = _lookback(ta_name, tuple(p.default for p in params))
    warmup = (f"NaN for the first lookback rows (TA-Lib's lookback; {default_lookback} with the "
              "default parameters), counted from the first row where every input is defined")
    if _UNSTABLE_FLAG in flags:
        warmup += ("; values after the warm-up still depend on how much history precedes them "
                   "(TA-Lib unstable period)")
    fill = _fill_kernel(getattr(talib, ta_name), len(outputs), ta_name)
    no_targets: tuple[None, ...] = (None,) * len(outputs)

    def kernel(inputs: Sequence[FloatArray], offsets: IntArray,
               values: tuple[ParamValue, ...]) -> tuple[FloatArray, ...]:
        return fill(inputs, offsets, values, no_targets)

    def lookback_fn(values: tuple[ParamValue, ...]) -> int:
        return _lookback(ta_name, values)

    def validate(values: tuple[ParamValue, ...]) -> str | None:
        return _problem(ta_name, values)

    return Indicator(
        name=name, title=str(info["display_name"]), group=str(info["group"]), source="talib",
        inputs=tuple(inputs), params=params, outputs=outputs, warmup=warmup, kernel=kernel,
        lookback_fn=lookback_fn, aliases=_aliases(ta_name.lower(), outputs),
        validate_fn=validate, fill_kernel=fill,
        doc=f"TA-Lib {ta_name}: {info['display_name']}. {warmup}.")


def _param(name: str, default: object) -> Param:
    if "matype" in name:
        return Param(name, "matype", int(default), choices=ma_types())  # type: ignore[call-overload]
    if isinstance(default, int):
        return Param(name, "int", default, minimum=1, maximum=MAX_PERIOD)
    return Param(name, "float", float(default))  # type: ignore[arg-type]


@lru_cache(maxsize=1)
def ma_types() -> tuple[int, ...]:
    """Moving-average type codes the installed TA-Lib accepts (0=SMA, 1=EMA, ...)."""
    probe = np.linspace(1.0, 2.0, 64)
    accepted = []
    for code in range(64):
        try:
            talib.MA(probe, 5, code)  # type: ignore[arg-type]  # stub wants the enum
        except Exception:  # noqa: S112 - TA-Lib signals an unknown code by raising
            continue
        accepted.append(code)
    return tuple(accepted)


def _aliases(fname: str, outputs: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """Short names: drop a ``band`` suffix, or a prefix that is the function or an output."""
    prefixes = sorted({fname, *outputs}, key=len, reverse=True)
    candidates: list[tuple[str, str]] = []
    for out in outputs:
        if out.endswith("band") and len(out) > 4:
            candidates.append((out[:-4], out))
        for prefix in prefixes:
            if out != prefix and out.startswith(prefix) and len(out) > len(prefix):
                candidates.append((out[len(prefix):], out))
                break
    counts: dict[str, int] = {}
    for alias, _ in candidates:
        counts[alias] = counts.get(alias, 0) + 1
    return tuple((a, o) for a, o in candidates if counts[a] == 1 and a not in outputs)


@lru_cache(maxsize=8192)
def _lookback(ta_name: str, values: tuple[ParamValue, ...]) -> int:
    func = _abstract(ta_name)
    names = list(func.info["parameters"])
    func.set_parameters(dict(zip(names, values, strict=True)))
    return int(func.lookback)


@lru_cache(maxsize=8192)
def _problem(ta_name: str, values: tuple[ParamValue, ...]) -> str | None:
    """Why TA-Lib refuses these parameters, or None when it accepts them."""
    if _accepts(ta_name, values):
        return None
    info = _abstract(ta_name).info
    names = list(info["parameters"])
    defaults = tuple(info["parameters"].values())
    for i, name in enumerate(names):
        # the culprit is the parameter whose default makes TA-Lib accept the rest
        trial = (*values[:i], defaults[i], *values[i + 1:])
        if values[i] != defaults[i] and _accepts(ta_name, trial):
            hint = _range_hint(ta_name, values, i)
            return f"TA-Lib does not accept {name}={values[i]!r}{hint}"
    shown = ", ".join(f"{n}={v!r}" for n, v in zip(names, values, strict=True))
    return f"TA-Lib does not accept this combination of parameters ({shown})"


def _range_hint(ta_name: str, values: tuple[ParamValue, ...], i: int) -> str:
    if not isinstance(values[i], int):
        return ""
    for low in range(1, 6):
        if _accepts(ta_name, (*values[:i], low, *values[i + 1:])):
            return f" (the smallest accepted value is {low})"
    return ""


def _accepts(ta_name: str, values: tuple[ParamValue, ...]) -> bool:
    try:
        if _lookback(ta_name, values) < 0:
            return False
        func = getattr(talib, ta_name)
        n_in = len(_flat_inputs(ta_name))
        probe = [np.linspace(10.0, 12.0, 16) for _ in range(n_in)]
        func(*probe, *values)
    except Exception:
        return False
    return True


def _flat_inputs(ta_name: str) -> list[str]:
    names: list[str] = []
    for value in _abstract(ta_name).info["input_names"].values():
        names.extend([value] if isinstance(value, str) else value)
    return names


def _fill_kernel(func: Any, n_outputs: int,  # noqa: ANN401 - an untyped TA-Lib function
                 ta_name: str) -> FillKernel:
    """Per-instrument loop calling TA-Lib on slices, writing into block-wide outputs.

    The pandas/polars adapter TA-Lib wraps its functions in is skipped: we only pass arrays.
    """
    raw = getattr(func, "__wrapped__", func)

    def run(inputs: Sequence[FloatArray], offsets: IntArray, params: tuple[ParamValue, ...],
            out: Sequence[FloatArray | None]) -> tuple[FloatArray, ...]:
        total = int(offsets[-1])
        outs = [np.empty(total) if o is None else o for o in out]
        bounds: list[int] = offsets.tolist()
        if n_outputs == 1 and len(inputs) == 1:
            x, target = inputs[0], outs[0]
            for a, b in itertools.pairwise(bounds):
                res = raw(x[a:b], *params)
                if res.dtype != np.float64:
                    res = _as_float(res, [x[a:b]], _lookback(ta_name, params))
                target[a:b] = res
            return (target,)
        for a, b in itertools.pairwise(bounds):
            args = [x[a:b] for x in inputs]
            results = raw(*args, *params)
            if n_outputs == 1:
                results = (results,)
            for target, res in zip(outs, results, strict=True):
                if res.dtype != np.float64:
                    res = _as_float(res, args, _lookback(ta_name, params))
                target[a:b] = res
        return tuple(outs)

    return run


def _as_float(values: np.ndarray[Any, Any], args: Sequence[FloatArray],
              lookback: int) -> FloatArray:
    """Integer output as float, NaN over the warm-up (where TA-Lib wrote 0)."""
    out = values.astype(np.float64)
    defined = np.ones(len(out), dtype=bool)
    for arg in args:
        defined &= ~np.isnan(arg)
    # TA-Lib starts at the first row where every input is defined (the last row if none is)
    first = int(np.argmax(defined)) if defined.any() else max(len(out) - 1, 0)
    out[: first + lookback] = np.nan
    return out
