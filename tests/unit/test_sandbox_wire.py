"""The sandbox's wire format: frames, bars through shared memory, and the server's check of
a worker's answer (no pickle, bounded sizes, rows and bar times within the input)."""

from __future__ import annotations

import pickle
import socket
import struct
import time

import numpy as np
import pytest

from signalfactory.adapters.sandbox import wire
from signalfactory.domain.bars import BarSeries, BarUniverse
from signalfactory.domain.rules import Evaluation
from signalfactory.domain.sandbox import SandboxError


def _universe() -> BarUniverse:
    series = []
    for i, n in enumerate((30, 0, 20)):
        close = 10.0 + np.arange(n, dtype=np.float64) + i
        series.append(BarSeries(f"S{i}", 1000 + np.arange(n, dtype=np.int64), close - 1,
                                close + 1, close - 2, close, np.full(n, 5.0)))
    return BarUniverse.from_series(series)


def _evaluation(u: BarUniverse) -> Evaluation:
    close = u.close
    return Evaluation.from_arrays(u, entry=close % 5 == 0, exit=close % 7 == 0,
                                  short_entry=close % 11 == 0, score=close / 100.0,
                                  values={"close": close, "half": close / 2})


def _roundtrip(header: wire.Header, parts: list[memoryview]) -> tuple[wire.Header, memoryview]:
    a, b = socket.socketpair()
    with a, b:
        wire.send_frame(a, header, parts)
        return wire.recv_frame(b, deadline=time.monotonic() + 5,
                               max_payload=wire.max_reply_bytes(1000))


def test_bars_go_through_shared_memory_unchanged() -> None:
    u = _universe()
    buffer = bytearray(wire.bars_size(u.n_bars, u.n_instruments))
    wire.write_bars(memoryview(buffer), u)
    back = wire.read_bars(memoryview(bytes(buffer)), u.symbols, u.n_bars)
    for name in ("offsets", "ts", "open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(back, name), getattr(u, name))
    assert not back.close.flags.writeable


def test_a_worker_fetches_only_the_columns_it_reads() -> None:
    u = _universe()
    buffer = bytearray(wire.bars_size(u.n_bars, u.n_instruments))
    wire.write_offsets(memoryview(buffer), u)
    asked: list[str] = []

    def fetch(column: str) -> None:
        asked.append(column)
        wire.write_column(memoryview(buffer), u, column)

    lazy = wire.LazyBars(memoryview(bytes(buffer)), u.symbols, u.n_bars, fetch)
    assert lazy.n_bars == u.n_bars and asked == []
    lazy = wire.LazyBars(memoryview(buffer), u.symbols, u.n_bars, fetch)
    np.testing.assert_array_equal(lazy.close, u.close)
    np.testing.assert_array_equal(lazy.close + 0, u.close)
    assert asked == ["close"], "a column is fetched once"
    ev = Evaluation.from_arrays(lazy, entry=lazy.close > 12)
    assert asked == ["close", "ts"] and ev.n_bars == u.n_bars
    assert isinstance(lazy, BarUniverse)
    wire.write_column(memoryview(buffer), u, "high")
    eager = wire.LazyBars(memoryview(buffer), u.symbols, u.n_bars, fetch, ["ts", "high"])
    np.testing.assert_array_equal(eager.high, u.high)
    assert asked == ["close", "ts"], "what was written with the call is not asked for"


def test_an_evaluation_survives_the_trip_with_values_at_signal_rows() -> None:
    u = _universe()
    ev = _evaluation(u)
    header, payload = _roundtrip(*wire.encode_evaluation(ev, u.n_bars))
    back = wire.decode_evaluation(header, payload, u)
    for side in wire.SIDES:
        np.testing.assert_array_equal(getattr(back, side), getattr(ev, side))
    fired = np.flatnonzero(ev.entry | ev.exit | ev.short_entry)
    np.testing.assert_array_equal(back.score[fired], ev.score[fired])
    assert np.isnan(np.delete(back.score, fired)).all()
    for row in fired.tolist():
        assert back.values_at(int(row)) == ev.values_at(int(row))


def _valid_reply() -> tuple[BarUniverse, wire.Header, bytearray]:
    u = _universe()
    header, parts = wire.encode_evaluation(_evaluation(u), u.n_bars)
    return u, header, bytearray(b"".join(bytes(p) for p in parts))


@pytest.mark.parametrize(("change", "fragment"), [
    (lambda h, p: h.update(n=7), "does not describe"),
    (lambda h, p: h.update(counts=[10**6, 0, 0, 0]), "more signals than there are bars"),
    (lambda h, p: h.update(values=[f"v{i}" for i in range(40)]), "at most 32"),
    (lambda h, p: h.update(values=["x" * 500, "y"]), "1..100"),
    (lambda h, p: h.update(values=["same", "same"]), "distinct"),
    (lambda h, p: h.update(lookback=-1), "lookback"),
    (lambda h, p: p.extend(b"\0" * 8), "announces"),
    (lambda h, p: p.__setitem__(slice(0, 8), struct.pack("<q", 10**9)), "outside the"),
    (lambda h, p: p.__setitem__(slice(0, 8), struct.pack("<q", -1)), "outside the"),
])
def test_malformed_answers_are_refused(change: object, fragment: str) -> None:
    u, header, payload = _valid_reply()
    change(header, payload)  # type: ignore[operator]
    with pytest.raises(SandboxError, match=fragment) as caught:
        wire.decode_evaluation(header, memoryview(payload), u)
    assert caught.value.limit == "output"


def test_unsorted_rows_and_foreign_bar_times_are_refused() -> None:
    u, header, payload = _valid_reply()
    first, second = payload[0:8], payload[8:16]
    payload[0:8], payload[8:16] = second, first
    with pytest.raises(SandboxError, match="strictly increasing"):
        wire.decode_evaluation(header, memoryview(payload), u)
    u, header, payload = _valid_reply()
    ts_at = 8 * sum(header["counts"])
    payload[ts_at:ts_at + 8] = struct.pack("<q", 123)
    with pytest.raises(SandboxError, match="not the input's bar time"):
        wire.decode_evaluation(header, memoryview(payload), u)


def test_a_pickle_is_never_unpickled() -> None:
    """A worker that answers with a pickle gets a protocol error, not an object."""
    a, b = socket.socketpair()
    with a, b:
        blob = pickle.dumps({"ok": True})
        a.sendall(struct.pack("<II", len(blob), 0) + blob)
        with pytest.raises(wire.WireError, match="not JSON"):
            wire.recv_frame(b, deadline=time.monotonic() + 5)


def test_oversized_frames_are_refused_unread() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.sendall(struct.pack("<II", wire.MAX_HEADER_BYTES + 1, 0))
        with pytest.raises(wire.WireError, match="header of"):
            wire.recv_frame(b, deadline=time.monotonic() + 5)
        a.sendall(struct.pack("<II", 2, 10**9) + b"{}")
        with pytest.raises(wire.WireError, match="payload of"):
            wire.recv_frame(b, deadline=time.monotonic() + 5, max_payload=1000)


def test_a_silent_peer_times_out_and_a_closed_one_is_eof() -> None:
    a, b = socket.socketpair()
    with a, b:
        with pytest.raises(wire.WireError) as slow:
            wire.recv_frame(b, deadline=time.monotonic() + 0.05)
        assert slow.value.timeout
        a.close()
        with pytest.raises(wire.WireError) as closed:
            wire.recv_frame(b, deadline=time.monotonic() + 1)
        assert closed.value.eof


def test_the_worker_side_refuses_what_is_not_an_evaluation() -> None:
    u = _universe()
    with pytest.raises(TypeError, match="must return an Evaluation"):
        wire.encode_evaluation({"entry": []}, u.n_bars)
    with pytest.raises(ValueError, match="rows"):
        wire.encode_evaluation(_evaluation(u), u.n_bars + 1)
