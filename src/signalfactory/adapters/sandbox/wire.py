"""The narrow interface between the server and a sandbox worker: frames, bars, results.

A frame is ``<u32 header length><u32 payload length>``, a JSON header (UTF-8) and raw
payload bytes; nothing is ever pickled. Bars go to the worker in a memfd the parent writes
and the worker maps read-only (offsets, ts, open, high, low, close, volume, back to back):
offsets, ts and close with the call, any other column when the strategy first reads it
(``LazyBars`` asks with a ``need`` frame, the parent writes it and answers ``have``), so a
call copies only what the strategy uses, once. Results come back as row indices per side and, at the
rows where any side fires, the bar time, the score and each named value, all as raw
little-endian int64/float64 arrays described by the header.

``decode_evaluation`` is the parent's check of a worker's answer: sizes bounded before
anything is read, rows sorted and within the input, bar times equal to the input's, scores
finite (or NaN: undefined), at most ``MAX_VALUE_SERIES`` named values of bounded names. An
answer that breaks any of that is refused (``SandboxError``, limit ``output``).
"""

from __future__ import annotations

import json
import math
import mmap
import select
import socket
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from signalfactory.domain.bars import BarUniverse
from signalfactory.domain.rules import Evaluation
from signalfactory.domain.sandbox import SandboxError

PREFIX = struct.Struct("<II")
MAX_HEADER_BYTES = 1 << 20
MAX_ERROR_CHARS = 2000
MAX_VALUE_SERIES = 32
MAX_VALUE_NAME = 100
MAX_SYMBOL_CHARS = 64
SIDES = ("entry", "exit", "short_entry", "short_exit")
#: bar columns in the shared memory, after ``offsets``, each n values of 8 bytes
COLUMNS = ("ts", "open", "high", "low", "close", "volume")
#: written with every call (an Evaluation is built on them); the others when first read
EAGER_COLUMNS = ("ts", "close")

Header = dict[str, Any]


class WireError(Exception):
    """The other side broke the protocol, went away, or took too long."""

    def __init__(self, message: str, *, eof: bool = False, timeout: bool = False) -> None:
        super().__init__(message)
        self.eof = eof
        self.timeout = timeout


# -- frames -----------------------------------------------------------------------------------

def send_frame(sock: socket.socket, header: Header, payload: Sequence[memoryview] = ()) -> None:
    body = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    total = sum(p.nbytes for p in payload)
    sock.sendall(PREFIX.pack(len(body), total) + body)
    for part in payload:
        if part.nbytes:
            sock.sendall(part.cast("B"))


def _read_exact(sock: socket.socket, view: memoryview, deadline: float | None) -> None:
    got = 0
    while got < view.nbytes:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([sock], [], [], left)[0]:
                raise WireError("no answer in time", timeout=True)
        n = sock.recv_into(view[got:], view.nbytes - got)
        if n == 0:
            raise WireError("the other side closed the connection", eof=True)
        got += n


def recv_frame(sock: socket.socket, *, deadline: float | None = None,
               max_payload: int | None = None,
               max_header: int = MAX_HEADER_BYTES) -> tuple[Header, memoryview]:
    """One frame; header and payload are refused unread if they are longer than allowed
    (a worker's answer: ``MAX_HEADER_BYTES``; the server's requests carry the symbols)."""
    prefix = bytearray(PREFIX.size)
    _read_exact(sock, memoryview(prefix), deadline)
    header_len, payload_len = PREFIX.unpack(prefix)
    if header_len > max_header:
        raise WireError(f"header of {header_len:,} bytes is over the limit of "
                        f"{max_header:,}")
    if max_payload is not None and payload_len > max_payload:
        raise WireError(f"payload of {payload_len:,} bytes is over the limit of "
                        f"{max_payload:,}")
    raw = bytearray(header_len)
    _read_exact(sock, memoryview(raw), deadline)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise WireError(f"the header is not JSON ({type(exc).__name__})") from None
    if not isinstance(header, dict):
        raise WireError("the header is not a JSON object")
    payload = bytearray(payload_len)
    _read_exact(sock, memoryview(payload), deadline)
    return header, memoryview(payload)


# -- bars into shared memory -------------------------------------------------------------------

def bars_size(n_bars: int, n_instruments: int) -> int:
    return 8 * (n_instruments + 1) + 8 * len(COLUMNS) * n_bars


def _position(name: str, n_bars: int, n_instruments: int) -> int:
    return 8 * (n_instruments + 1) + 8 * n_bars * COLUMNS.index(name)


def write_offsets(target: memoryview, universe: BarUniverse) -> None:
    """The instrument layout, first of every call (a worker fetches the columns it reads)."""
    out = np.frombuffer(target, dtype=np.int64, count=universe.n_instruments + 1)
    out[:] = universe.offsets


def write_column(target: memoryview, universe: BarUniverse, name: str) -> None:
    """One bar column where the worker maps it (see the module docstring)."""
    n, k = universe.n_bars, universe.n_instruments
    dtype = np.int64 if name == "ts" else np.float64
    out = np.frombuffer(target, dtype=dtype, count=n, offset=_position(name, n, k))
    out[:] = universe.ts if name == "ts" else universe.column(name)


def write_bars(target: memoryview, universe: BarUniverse) -> None:
    """The whole universe at once (offsets and every column)."""
    write_offsets(target, universe)
    for name in COLUMNS:
        write_column(target, universe, name)


class LazyBars(BarUniverse):
    """The worker's read-only view of the bars in shared memory: a ``BarUniverse`` whose
    columns are fetched from the server the first time the strategy reads them, so a
    strategy reading only ``close`` costs one copy of ``close``, not of six columns."""

    _source: memoryview | mmap.mmap
    _n: int
    _fetch: Callable[[str], None]
    _columns: dict[str, npt.NDArray[Any]]

    def __init__(self, source: memoryview | mmap.mmap, symbols: Sequence[str], n_bars: int,
                 fetch: Callable[[str], None], present: Sequence[str] = ()) -> None:
        k = len(symbols)
        object.__setattr__(self, "symbols", tuple(symbols))
        object.__setattr__(self, "offsets",
                           np.frombuffer(source, dtype=np.int64, count=k + 1))
        object.__setattr__(self, "instrument_ids", np.zeros(0, dtype=np.int64))
        object.__setattr__(self, "_source", source)
        object.__setattr__(self, "_n", n_bars)
        object.__setattr__(self, "_fetch", fetch)
        object.__setattr__(self, "_columns", {})
        for name in present:  # already written: no need to ask
            self._columns[name] = self._view(name)

    def _view(self, name: str) -> npt.NDArray[Any]:
        return np.frombuffer(self._source, dtype=np.int64 if name == "ts" else np.float64,
                             count=self._n, offset=_position(name, self._n, len(self.symbols)))

    def _column(self, name: str) -> npt.NDArray[Any]:
        found: npt.NDArray[Any] | None = self._columns.get(name)
        if found is None:
            self._fetch(name)
            found = self._columns[name] = self._view(name)
        return found


def _lazy(name: str) -> property:
    return property(lambda self: self._column(name), doc=f"the bars' {name}, fetched on use")


for _name in COLUMNS:
    setattr(LazyBars, _name, _lazy(_name))


def read_bars(source: memoryview | mmap.mmap, symbols: Sequence[str], n_bars: int
              ) -> BarUniverse:
    """A read-only view of bars laid out by ``write_bars`` (no copy, nothing fetched)."""
    return LazyBars(source, symbols, n_bars, lambda _name: None)


# -- results back ------------------------------------------------------------------------------

def encode_evaluation(ev: object, n_bars: int) -> tuple[Header, list[memoryview]]:
    """The worker's answer for an ``Evaluation`` over ``n_bars`` rows. Raises TypeError or
    ValueError (reported to the parent as the strategy's mistake) on anything else."""
    if not isinstance(ev, Evaluation):
        raise TypeError(f"evaluate() must return an Evaluation (build one with "
                        f"Evaluation.from_arrays), not {type(ev).__name__}")
    ts = np.asarray(ev.ts)
    if ts.shape != (n_bars,):
        raise ValueError(f"the Evaluation has {ts.shape[0] if ts.ndim else 0} rows; the "
                         f"bars have {n_bars}")
    rows = []
    fired = np.zeros(n_bars, dtype=bool)
    for side in SIDES:
        flags = np.asarray(getattr(ev, side))
        if flags.shape != (n_bars,) or flags.dtype != np.bool_:
            raise ValueError(f"{side} must be {n_bars} booleans, got {flags.dtype} "
                             f"{flags.shape}")
        rows.append(np.flatnonzero(flags).astype(np.int64))
        fired |= flags
    union = np.flatnonzero(fired).astype(np.int64)
    score = np.asarray(ev.score, dtype=np.float64)
    if score.shape != (n_bars,):
        raise ValueError(f"score must have {n_bars} rows, got {score.shape}")
    values = dict(ev.values)
    if len(values) > MAX_VALUE_SERIES:
        raise ValueError(f"{len(values)} named values; at most {MAX_VALUE_SERIES}")
    value_rows = None if ev.value_rows is None else np.asarray(ev.value_rows, dtype=np.int64)
    parts = [*rows, np.ascontiguousarray(ts[union], dtype=np.int64), score[union]]
    names = []
    for name, arr in values.items():
        if not isinstance(name, str):
            raise TypeError(f"value names must be strings, not {type(name).__name__}")
        names.append(name)
        series = np.asarray(arr, dtype=np.float64)
        if value_rows is None:
            if series.shape != (n_bars,):
                raise ValueError(f"value {name!r} must have {n_bars} rows, got {series.shape}")
            parts.append(series[union])
        else:
            at = np.searchsorted(value_rows, union)
            at = np.minimum(at, max(value_rows.shape[0] - 1, 0))
            picked = np.full(union.shape[0], np.nan)
            if value_rows.shape[0]:
                hit = value_rows[at] == union
                picked[hit] = series[at[hit]]
            parts.append(picked)
    header = {"ok": True, "n": n_bars, "counts": [int(r.shape[0]) for r in rows],
              "union": int(union.shape[0]), "values": names, "lookback": int(ev.lookback)}
    return header, [np.ascontiguousarray(p).data for p in parts]


def max_reply_bytes(n_bars: int) -> int:
    """The largest answer a worker may send for ``n_bars`` input rows."""
    return 8 * n_bars * (len(SIDES) + 2 + MAX_VALUE_SERIES) + 4096


def _refuse(message: str) -> SandboxError:
    return SandboxError(f"the strategy's result was refused: {message}", limit="output")


def _rows(payload: memoryview, pos: int, count: int, n_bars: int, side: str
          ) -> npt.NDArray[np.int64]:
    rows = np.frombuffer(payload, dtype=np.int64, count=count, offset=pos)
    if count:
        low, high = int(rows.min()), int(rows.max())
        if low < 0 or high >= n_bars:
            raise _refuse(f"{side} names bar row {low if low < 0 else high}, outside the "
                          f"{n_bars} input bars")
    if count > 1 and not bool(np.all(np.diff(rows) > 0)):
        raise _refuse(f"{side} rows are not strictly increasing")
    return rows


def decode_evaluation(header: Mapping[str, Any], payload: memoryview,
                      universe: BarUniverse) -> Evaluation:
    """Check a worker's answer against the input and rebuild the ``Evaluation``."""
    n = universe.n_bars
    counts, union_n, names = header.get("counts"), header.get("union"), header.get("values")
    lookback = header.get("lookback", 0)
    if header.get("n") != n or not isinstance(counts, list) or len(counts) != len(SIDES):
        raise _refuse("the answer does not describe the bars sent")
    if not all(isinstance(c, int) and 0 <= c <= n for c in counts):
        raise _refuse("a side counts more signals than there are bars")
    if not isinstance(union_n, int) or not 0 <= union_n <= n:
        raise _refuse("more signal rows than bars")
    if not isinstance(names, list) or len(names) > MAX_VALUE_SERIES:
        raise _refuse(f"at most {MAX_VALUE_SERIES} named values")
    if not all(isinstance(v, str) and 0 < len(v) <= MAX_VALUE_NAME for v in names) \
            or len(set(names)) != len(names):
        raise _refuse(f"value names must be distinct strings of 1..{MAX_VALUE_NAME} "
                      "characters")
    if not isinstance(lookback, int) or not 0 <= lookback <= max(n, 1_000_000):
        raise _refuse("lookback out of range")
    expected = 8 * (sum(counts) + union_n * (2 + len(names)))
    if payload.nbytes != expected:
        raise _refuse(f"{payload.nbytes:,} bytes where the header announces {expected:,}")
    pos, flags = 0, {}
    fired = np.zeros(n, dtype=bool)
    for side, count in zip(SIDES, counts, strict=True):
        flag = np.zeros(n, dtype=bool)
        flag[_rows(payload, pos, count, n, side)] = True
        fired |= flag
        flags[side] = flag
        pos += 8 * count
    union = np.flatnonzero(fired)
    if union.shape[0] != union_n:
        raise _refuse("the signal rows do not match the rows described")
    at_ts = np.frombuffer(payload, dtype=np.int64, count=union_n, offset=pos)
    pos += 8 * union_n
    if not np.array_equal(at_ts, universe.ts[union]):
        wrong = int(np.flatnonzero(at_ts != universe.ts[union])[0])
        raise _refuse(f"a signal at bar time {int(at_ts[wrong])} ns, which is not the input's "
                      f"bar time {int(universe.ts[union][wrong])} at that row (signals only "
                      "ever name input bars)")
    score_at = np.frombuffer(payload, dtype=np.float64, count=union_n, offset=pos)
    pos += 8 * union_n
    if bool(np.isinf(score_at).any()):
        raise _refuse("an infinite score (scores must be finite numbers, or NaN for none)")
    values = {}
    for name in names:
        values[name] = np.frombuffer(payload, dtype=np.float64, count=union_n, offset=pos)
        pos += 8 * union_n
    score = np.full(n, math.nan)
    score[union] = score_at
    return Evaluation(symbols=universe.symbols, offsets=universe.offsets, ts=universe.ts,
                      close=universe.close, entry=flags["entry"], exit=flags["exit"],
                      short_entry=flags["short_entry"], short_exit=flags["short_exit"],
                      score=score, values=values, lookback=lookback, value_rows=union)


def error_reply(kind: str, message: str) -> Header:
    return {"ok": False, "kind": kind, "message": message[:MAX_ERROR_CHARS]}
