"""PostgreSQL binary COPY for bars: numpy-built payloads in, numpy columns out.

Why the reading half exists: COPY sends one protocol message per row, and psycopg hands each
to Python (about 1.5 us a row: 20 s for a 12.6 M-bar universe). Here a numba loop calls
libpq's ``PQgetCopyData`` on psycopg's own connection (psycopg publishes the ``PGconn``
pointer for this kind of FFI use) and decodes each fixed-width, big-endian row straight into
the output columns, without the GIL, so two connections can stream side by side. Where libpq
cannot be located, rows go through psycopg and are decoded with a numpy structured dtype.
Writes need no such trick: the payload is built with numpy and handed to psycopg in blocks.

Wire format (PostgreSQL docs, "COPY ... binary format"): an 11-byte signature, int32 flags and
int32 header-extension length; per row an int16 field count and, per field, an int32 length
and the value in network byte order; an int16 -1 trailer. timestamptz is int64 microseconds
since 2000-01-01 UTC.
"""


# ruff: noqa: ANN401 - numba intrinsics take and return numba typing/LLVM objects (untyped)

from __future__ import annotations

import ctypes
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numba
import numpy as np
import numpy.typing as npt
import psycopg
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from signalfactory.domain.bar_columns import BarColumns
from signalfactory.domain.bars import FIELDS

SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
HEADER = SIGNATURE + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"
PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01T00:00:00Z in microseconds since 1970
_CHUNK_ROWS = 100_000  # ~9 MB per block: large enough for COPY, small enough for the L2/L3

# One bar as COPY TO sends it for SELECT instrument_id, ts, open, high, low, close, volume.
OUT_ROW = np.dtype([("nf", ">i2"), ("l_id", ">i4"), ("instrument_id", ">i4"),
                    ("l_ts", ">i4"), ("ts", ">i8"),
                    *((f, t) for name in FIELDS for f, t in (("l_" + name, ">i4"),
                                                            (name, ">f8")))])
OUT_COLUMNS = "instrument_id, ts, " + ", ".join(FIELDS)
IN_COLUMNS = "instrument_id, timeframe, ts, " + ", ".join(FIELDS)


def _in_row(timeframe_len: int) -> np.dtype[Any]:
    """One bar as COPY FROM expects it for the column list ``IN_COLUMNS``."""
    return np.dtype([("nf", ">i2"), ("l_id", ">i4"), ("instrument_id", ">i4"),
                     ("l_tf", ">i4"), ("timeframe", f"S{timeframe_len}"),
                     ("l_ts", ">i4"), ("ts", ">i8"),
                     *((f, t) for name in FIELDS for f, t in (("l_" + name, ">i4"),
                                                             (name, ">f8")))])


def ns_to_pg_us(ts_ns: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    return ts_ns // 1000 - PG_EPOCH_US


def copy_in_blocks(cols: BarColumns, timeframe: str,
                   rows: npt.NDArray[np.intp] | None = None) -> Iterator[memoryview]:
    """The whole binary COPY stream for ``cols`` (or its ``rows``), in blocks."""
    tf = timeframe.encode()
    dtype = _in_row(len(tf))
    total = len(cols) if rows is None else int(rows.shape[0])
    yield memoryview(HEADER)
    block = np.empty(min(total, _CHUNK_ROWS), dtype=dtype)
    # Constant parts of every row are written once; only values change between blocks.
    block["nf"] = 8
    block["l_id"] = 4
    block["l_tf"] = len(tf)
    block["timeframe"] = tf
    block["l_ts"] = 8
    for name in FIELDS:
        block["l_" + name] = 8
    for lo in range(0, total, _CHUNK_ROWS):
        hi = min(total, lo + _CHUNK_ROWS)
        part = block[: hi - lo]
        take = slice(lo, hi) if rows is None else rows[lo:hi]
        part["instrument_id"] = cols.instrument_id[take]
        part["ts"] = ns_to_pg_us(cols.ts[take])
        for name in FIELDS:
            part[name] = getattr(cols, name)[take]
        yield part.data.cast("B")
    yield memoryview(TRAILER)


def decode_stream(raw: npt.NDArray[np.uint8], size: int) -> BarColumns:
    """Parse a whole COPY TO (FORMAT binary) stream of ``OUT_COLUMNS`` rows with numpy."""
    body = size - len(HEADER) - len(TRAILER)
    if (body < 0 or bytes(raw[:len(HEADER)]) != HEADER or body % OUT_ROW.itemsize
            or bytes(raw[size - 2:size]) != TRAILER):
        raise psycopg.DataError(f"unexpected COPY stream of {size} bytes for bar rows")
    view = np.frombuffer(raw, dtype=OUT_ROW, count=body // OUT_ROW.itemsize,
                         offset=len(HEADER))
    lengths = [view[name] for name in OUT_ROW.names or () if name.startswith("l_")]
    if not (np.all(view["nf"] == 7) and all(np.all(a == w) for a, w in
                                           zip(lengths, (4, 8, 8, 8, 8, 8, 8), strict=True))):
        raise psycopg.DataError("COPY rows do not have the bar column layout")
    ts = view["ts"].astype(np.int64)
    ts += PG_EPOCH_US
    ts *= 1000
    return BarColumns(view["instrument_id"].astype(np.int64), ts,
                      *(view[name].astype(np.float64) for name in FIELDS))


# -- reading the COPY stream with libpq, outside the GIL ------------------------------------

_I8P = ir.IntType(8).as_pointer()


@intrinsic
def _pq_get_copy_data(typingctx: Any, fn: Any, conn: Any, slot: Any) -> Any:
    """Call ``int PQgetCopyData(PGconn*, char**, int async=0)`` through its address."""
    sig = types.int32(types.uintp, types.uintp, types.uintp)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        fnty = ir.FunctionType(ir.IntType(32), [_I8P, _I8P.as_pointer(), ir.IntType(32)])
        target = builder.inttoptr(args[0], fnty.as_pointer())
        return builder.call(target, [builder.inttoptr(args[1], _I8P),
                                     builder.inttoptr(args[2], _I8P.as_pointer()),
                                     ir.Constant(ir.IntType(32), 0)])

    return sig, codegen


@intrinsic
def _pq_freemem(typingctx: Any, fn: Any, ptr: Any) -> Any:
    """Call ``void PQfreemem(void*)`` through its address."""
    sig = types.void(types.uintp, types.uintp)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        fnty = ir.FunctionType(ir.VoidType(), [_I8P])
        builder.call(builder.inttoptr(args[0], fnty.as_pointer()),
                     [builder.inttoptr(args[1], _I8P)])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _u8_pointer(typingctx: Any, addr: Any) -> Any:
    sig = types.CPointer(types.uint8)(types.uintp)  # type: ignore[no-untyped-call]  # numba types

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.inttoptr(args[0], _I8P)

    return sig, codegen


def _load_be(bits: int) -> Any:
    """An intrinsic: the unaligned big-endian ``bits``-wide integer at ``raw[p]`` (unchecked;
    callers check the message length first)."""

    @intrinsic
    def load(typingctx: Any, raw: Any, p: Any) -> Any:
        sig = (types.uint64 if bits == 64 else types.uint32)(raw, types.intp)

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            data = context.make_array(signature.args[0])(context, builder, args[0]).data
            word = ir.IntType(bits)
            ptr = builder.bitcast(builder.gep(data, [args[1]]), word.as_pointer())
            value = builder.load(ptr, align=1)
            return builder.call(builder.module.declare_intrinsic("llvm.bswap", [word]),
                                [value])

        return sig, codegen

    return load


_be64 = _load_be(64)
_be32 = _load_be(32)

DONE, NEED_SPACE, BAD_LAYOUT = 0, 1, -3
_ROW = OUT_ROW.itemsize  # 82 bytes: int16 count, then (int32 length, value) per column
_SIG = np.frombuffer(SIGNATURE, dtype=np.uint8)


@numba.njit(nogil=True, cache=True)
def _pump_rows(get_fn: int, free_fn: int, conn: int, slot: npt.NDArray[np.uint64],
               pending: int, started: bool, n: int, inst: npt.NDArray[np.int64],
               ts: npt.NDArray[np.int64], o: npt.NDArray[np.uint64], h: npt.NDArray[np.uint64],
               lo: npt.NDArray[np.uint64], c: npt.NDArray[np.uint64],
               v: npt.NDArray[np.uint64]) -> tuple[int, int, int, bool]:
    """Decode COPY rows straight from libpq's messages into the columns, from row ``n`` on.

    Returns (rows, status, pending, started). status: DONE after the trailer; NEED_SPACE when
    the columns are full (the message of ``pending`` bytes stays in ``slot``); BAD_LAYOUT; or
    libpq's -1 (COPY ended without a trailer: a server error) / -2 (connection error).
    """
    while True:
        size = pending
        pending = 0
        if size == 0:
            # An intrinsic is called without its typing context (numba passes it): mypy
            # sees the Python signature, one argument longer.
            size = _pq_get_copy_data(get_fn, conn, slot.ctypes.data)  # type: ignore[call-arg]
            if size < 0:
                return n, size, 0, started
        m = numba.carray(_u8_pointer(slot[0]), (size,))  # type: ignore[attr-defined,call-arg]
        q = 0
        if not started:  # the header shares the first message
            if size < 19 or _be32(m, 15) != 0:
                _pq_freemem(free_fn, slot[0])
                return n, -3, 0, started
            for k in range(11):
                if m[k] != _SIG[k]:
                    _pq_freemem(free_fn, slot[0])
                    return n, -3, 0, started
            q = 19
        if size - q == 2 and m[q] == 255 and m[q + 1] == 255:
            _pq_freemem(free_fn, slot[0])
            return n, 0, 0, True
        if size - q != _ROW or m[q] != 0 or m[q + 1] != 7 or _be32(m, q + 2) != 4 \
                or _be32(m, q + 10) != 8:
            _pq_freemem(free_fn, slot[0])
            return n, -3, 0, started
        for k in range(5):
            if _be32(m, q + 22 + 12 * k) != 8:
                _pq_freemem(free_fn, slot[0])
                return n, -3, 0, started
        if n >= inst.shape[0]:
            return n, 1, size, started  # NEED_SPACE before the header flag is committed
        started = True
        inst[n] = np.int64(np.int32(_be32(m, q + 6)))
        ts[n] = (np.int64(_be64(m, q + 14)) + PG_EPOCH_US) * 1000
        o[n] = _be64(m, q + 26)
        h[n] = _be64(m, q + 38)
        lo[n] = _be64(m, q + 50)
        c[n] = _be64(m, q + 62)
        v[n] = _be64(m, q + 74)
        n += 1
        _pq_freemem(free_fn, slot[0])


class _Columns:
    """Growable output columns for ``_pump_rows``."""

    def __init__(self, capacity: int) -> None:
        self.inst = np.empty(capacity, dtype=np.int64)
        self.ts = np.empty(capacity, dtype=np.int64)
        self.floats = [np.empty(capacity, dtype=np.float64) for _ in FIELDS]

    def grow(self, used: int) -> None:
        def bigger(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
            out = np.empty(max(2 * a.shape[0], 1024), dtype=a.dtype)
            out[:used] = a[:used]
            return out

        self.inst, self.ts = bigger(self.inst), bigger(self.ts)
        self.floats = [bigger(f) for f in self.floats]

    def args(self) -> list[npt.NDArray[Any]]:
        return [self.inst, self.ts, *(f.view(np.uint64) for f in self.floats)]

    def columns(self, n: int) -> BarColumns:
        return BarColumns(self.inst[:n], self.ts[:n], *(f[:n] for f in self.floats))


def _loaded_libpq() -> ctypes.CDLL | None:
    """The libpq psycopg itself uses: the PGconn pointer is only valid with that copy."""
    impl = psycopg.pq.__impl__
    if impl == "python":
        from psycopg.pq import _pq_ctypes

        lib: ctypes.CDLL = _pq_ctypes.pq  # type: ignore[attr-defined]  # set at import time
        return lib
    maps = Path("/proc/self/maps")
    if not sys.platform.startswith("linux") or not maps.exists():
        return None
    paths = {line.split()[-1] for line in maps.read_text().splitlines()
             if "/libpq" in line and ".so" in line}
    bundled = {p for p in paths if "psycopg_binary" in p}
    candidates = bundled if impl == "binary" else paths - bundled
    if len(candidates) != 1:
        return None
    return ctypes.CDLL(candidates.pop())


class CopyReader:
    """Runs ``COPY (...) TO STDOUT (FORMAT binary)`` of bar rows into numpy columns."""

    def __init__(self) -> None:
        lib = _loaded_libpq()
        self._fns: tuple[int, int] | None = None
        if lib is not None:
            get = ctypes.cast(lib.PQgetCopyData, ctypes.c_void_p).value
            free = ctypes.cast(lib.PQfreemem, ctypes.c_void_p).value
            if get and free:
                self._fns = (get, free)

    @property
    def native(self) -> bool:
        """False when libpq could not be located and rows pass through Python one by one."""
        return self._fns is not None

    def fetch(self, pg: psycopg.Connection[Any], sql: str, capacity: int = 0) -> BarColumns:
        """The bars ``sql`` (a COPY of ``OUT_COLUMNS`` rows) streams, in stream order.

        ``capacity``: expected rows; the columns grow when it is exceeded.
        """
        with pg.cursor() as cur, cur.copy(sql) as copy:
            if self._fns is None:
                data = b"".join(bytes(block) for block in copy)
                return decode_stream(np.frombuffer(data, dtype=np.uint8), len(data))
            conn_ptr = pg.pgconn.pgconn_ptr  # type: ignore[attr-defined]  # not in the Protocol
            if conn_ptr is None:
                raise psycopg.OperationalError("the connection is closed")
            out = _Columns(max(capacity, 1024))
            slot = np.zeros(1, dtype=np.uint64)
            n, pending, started = 0, 0, False
            while True:
                n, status, pending, started = _pump_rows(
                    self._fns[0], self._fns[1], conn_ptr, slot, pending, started, n,
                    *out.args())
                if status != NEED_SPACE:
                    break
                out.grow(n)
            if status == DONE:
                if copy.read():  # collects the final result; no data may follow the trailer
                    raise psycopg.DataError("data after the COPY trailer")
                return out.columns(n)
            if status == BAD_LAYOUT:
                raise psycopg.DataError("COPY rows do not have the bar column layout")
            _raise_copy_failure(pg)
        raise AssertionError("unreachable")  # pragma: no cover


def _raise_copy_failure(pg: psycopg.Connection[Any]) -> None:
    """COPY ended without its trailer: surface the server's error as psycopg would."""
    first_error = None
    while (res := pg.pgconn.get_result()) is not None:
        if first_error is None and res.status == psycopg.pq.ExecStatus.FATAL_ERROR:
            first_error = res
    if first_error is not None:
        raise psycopg.errors.error_from_result(first_error, encoding=pg.info.encoding)
    message = pg.pgconn.error_message.decode(errors="replace")
    raise psycopg.OperationalError(f"COPY from PostgreSQL failed: {message or 'no detail'}")
