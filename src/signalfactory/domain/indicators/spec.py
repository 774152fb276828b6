"""What an indicator is: its inputs, parameters, outputs, warm-up, and how it runs on bars.

Every indicator, whether backed by TA-Lib or hand-written, is described by one ``Indicator``
value. It computes over a *block*: several instruments' bars laid end to end, with local
``offsets`` (the CSR layout of ``BarUniverse``). Each instrument is computed on its own slice,
so no value ever mixes two instruments, and the outputs are aligned to the bars: output row
``k`` belongs to input row ``k``. Rows before an instrument has enough history are NaN (the
warm-up); ``Indicator.lookback(params)`` says how many rows that is for inputs without NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from signalfactory.domain.errors import BadInputError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
ParamValue = int | float
ParamKind = Literal["int", "float", "matype"]

#: computes all outputs over a block: (inputs, local offsets, params) -> outputs
BlockKernel = Callable[[Sequence[FloatArray], IntArray, tuple[ParamValue, ...]],
                       tuple[FloatArray, ...]]
#: like BlockKernel, but writes output k into ``out[k]`` when that is an array
FillKernel = Callable[[Sequence[FloatArray], IntArray, tuple[ParamValue, ...],
                       Sequence[FloatArray | None]], tuple[FloatArray, ...]]
LookbackFn = Callable[[tuple[ParamValue, ...]], int]
#: extra validation beyond per-parameter bounds; returns an error message or None
ValidateFn = Callable[[tuple[ParamValue, ...]], str | None]

#: price inputs an indicator can take implicitly from the bars
BAR_FIELDS: tuple[str, ...] = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True)
class Param:
    """One tunable parameter. ``int`` and ``matype`` take whole numbers only."""

    name: str
    kind: ParamKind
    default: ParamValue
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[int, ...] = ()
    doc: str = ""

    def check(self, value: ParamValue, owner: str) -> ParamValue:
        """The value converted to this parameter's type, or BadInputError saying what fits."""
        if self.kind in ("int", "matype"):
            if isinstance(value, float):
                if not value.is_integer():
                    raise BadInputError(
                        f"parameter '{self.name}' of {owner} must be a whole number, got {value!r}")
                value = int(value)
        else:
            value = float(value)
        if self.choices and value not in self.choices:
            raise BadInputError(
                f"parameter '{self.name}' of {owner} must be one of "
                f"{', '.join(map(str, self.choices))}, got {value!r}")
        if self.minimum is not None and value < self.minimum:
            raise BadInputError(
                f"parameter '{self.name}' of {owner} must be at least {_num(self.minimum)}, "
                f"got {value!r}")
        if self.maximum is not None and value > self.maximum:
            raise BadInputError(
                f"parameter '{self.name}' of {owner} must be at most {_num(self.maximum)}, "
                f"got {value!r}")
        return value


@dataclass(frozen=True)
class Input:
    """One input array. ``field`` set: taken from the bars; else a series the caller passes."""

    name: str
    field: str | None
    default: str = "close"

    @property
    def is_series(self) -> bool:
        return self.field is None


@dataclass(frozen=True, eq=False)
class Indicator:
    """A registry entry. Immutable; compare by identity."""

    name: str
    title: str
    group: str
    source: Literal["talib", "builtin"]
    inputs: tuple[Input, ...]
    params: tuple[Param, ...]
    outputs: tuple[str, ...]
    warmup: str
    kernel: BlockKernel
    lookback_fn: LookbackFn
    aliases: tuple[tuple[str, str], ...] = ()
    validate_fn: ValidateFn | None = None
    doc: str = ""
    fill_kernel: FillKernel | None = None
    _alias_map: dict[str, str] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        mapping = {name: name for name in self.outputs}
        for alias, target in self.aliases:
            mapping.setdefault(alias, target)
        object.__setattr__(self, "_alias_map", mapping)

    @property
    def series_inputs(self) -> tuple[Input, ...]:
        return tuple(i for i in self.inputs if i.is_series)

    @property
    def defaults(self) -> tuple[ParamValue, ...]:
        return tuple(p.default for p in self.params)

    def output_names(self) -> tuple[str, ...]:
        """Every accepted output name: the canonical ones first, then the short aliases."""
        return tuple(self._alias_map)

    def output_index(self, name: str | None) -> int:
        """Position of output ``name`` (canonical or alias); ``None`` means the first output."""
        if name is None:
            return 0
        target = self._alias_map.get(name)
        if target is None:
            raise KeyError(name)
        return self.outputs.index(target)

    def bind(self, positional: Sequence[ParamValue] = (),
             keywords: Mapping[str, ParamValue] | None = None) -> tuple[ParamValue, ...]:
        """Parameters in declaration order, defaults filled in, each checked; else BadInputError."""
        keywords = dict(keywords or {})
        if len(positional) > len(self.params):
            raise BadInputError(
                f"{self.name} takes at most {len(self.params)} parameters "
                f"({', '.join(p.name for p in self.params) or 'none'}), got {len(positional)}")
        values: list[ParamValue] = []
        for i, param in enumerate(self.params):
            if i < len(positional):
                if param.name in keywords:
                    raise BadInputError(f"parameter '{param.name}' of {self.name} given twice")
                raw = positional[i]
            else:
                raw = keywords.pop(param.name, param.default)
            values.append(param.check(raw, self.name))
        if keywords:
            raise BadInputError(f"{self.name} has no parameter '{next(iter(keywords))}'")
        bound = tuple(values)
        if self.validate_fn is not None:
            problem = self.validate_fn(bound)
            if problem is not None:
                raise BadInputError(f"{self.name}: {problem}")
        return bound

    def lookback(self, params: tuple[ParamValue, ...] | None = None) -> int:
        """Warm-up rows (NaN) before the first value, for inputs that hold no NaN."""
        return self.lookback_fn(self.defaults if params is None else params)

    def compute_block(self, inputs: Sequence[FloatArray], offsets: IntArray,
                      params: tuple[ParamValue, ...],
                      out: Sequence[FloatArray | None] | None = None) -> tuple[FloatArray, ...]:
        """All outputs over a block of instruments (``offsets`` local to the block).

        ``out[k]``, when given, is an array the k-th output is written into (and returned).
        """
        if out is None:
            return self.kernel(inputs, offsets, params)
        if self.fill_kernel is not None:
            return self.fill_kernel(inputs, offsets, params, out)
        results = self.kernel(inputs, offsets, params)
        filled = []
        for target, result in zip(out, results, strict=True):
            if target is not None:
                target[...] = result
                result = target
            filled.append(result)
        return tuple(filled)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
