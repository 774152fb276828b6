"""A universe backtest split into chunk jobs that any worker runs, across machines.

The ``backtest`` job (the parent) cuts the universe into runs of whole instruments of at
least ``split_chunk_seconds`` of work each (history bars x parameter sets, at the rate it
measures by simulating the universe's first instruments itself, `simulation_rate`, or at
``split_bars_per_second`` when that is set), submits one ``backtest.chunk`` job per run and a
counter row (`SplitRepository`) holding what it cut (the data range it read, the strategy's
code hash, the chunks' instrument ranges) in one transaction, and hands itself back to the
queue (`JobDeferred`). Each chunk job loads only its instruments' bars, checks they are the bars the
parent cut (a digest) and that the strategy is the same (its code hash), simulates them, and,
in the transaction that finishes its job under its lease, counts itself done, stores what the
parent's aggregate needs (its instruments' equity, figures and trades as arrays) in its chunk
row, and its trades and encoded equity curves as the rows they will be (`stage_chunk`). A
chunk whose worker was killed runs again (the job system requeues it when its lease
expires); it is counted, and its rows stored, once. The chunk that completes the counter
makes the parent due at once; the parent's second run reads no bar (`Splitter.resume`): the
backtest is the universe it cut, whatever was stored since, and the chunks sent their traded
times with their results (`traded_times`). It computes the aggregate in instrument order with
the single-box code (`assemble_window`) and stores the backtest with the chunks' rows
copied in SQL, numbered on in chunk order, so the stored backtest is the same, bit for bit,
as the one a single box computes.

No Celery chord: the counter row is the record, so completion survives lost messages, lost
workers and a restarted broker like any job does.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import itertools
import json
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from signalfactory.domain.backtest.curve_codec import ChunkedRows, EncodedCurve
from signalfactory.domain.backtest.engine import Trades
from signalfactory.domain.backtest.stored import DataRange, TradeRecord
from signalfactory.domain.bars import BarUniverse
from signalfactory.domain.errors import BadInputError, OperationalError
from signalfactory.domain.jobs import CANCELLED, DEAD, FAILED, SUCCEEDED, Job, JsonObject
from signalfactory.domain.strategies import code_hash
from signalfactory.observability.logging import get_logger
from signalfactory.services.backtests.modes import (
    MODES,
    TRADE_FIELDS,
    Data,
    Outcome,
    Progress,
    SymbolPart,
    assemble_universe,
    assemble_window,
    in_window,
    masked,
    part_rows,
    simulate_span,
    span,
    union_of_times,
    window_ts,
)
from signalfactory.services.backtests.options import BacktestRequest
from signalfactory.services.jobs.payloads import parse_payload
from signalfactory.services.jobs.registry import (
    JobDeferred,
    TaskContext,
    dispatch,
    submit,
)
from signalfactory.services.platform import Platform
from signalfactory.settings import Settings

if TYPE_CHECKING:
    from signalfactory.services.backtests.run import Plan, Resumed
    from signalfactory.services.ports import UnitOfWork

log = get_logger("signalfactory.backtests.split")

CHUNK_KIND = "backtest.chunk"
#: the parent times at least this much of the real work to size the chunks
CALIBRATION_SECONDS = 0.05


def split_wanted(settings: Settings) -> bool:
    """Whether universe backtest jobs are split: ``split`` always, or auto on Celery."""
    return settings.split == "always" or (settings.split == "auto" and bool(settings.broker_url))


def chunk_ranges(bars: BarUniverse, chunk_seconds: float, bars_per_second: float,
                 parameter_sets: int = 1) -> list[tuple[int, int]]:
    """Runs of whole instruments of about equal work, each at least the target (
    ``chunk_seconds`` at ``bars_per_second``); one run when the universe holds less than two
    targets.

    With ``n`` = how many targets the work holds, the runs are cut at the instrument
    boundaries nearest to each n-th of the work; when a run falls short of the target (an
    instrument longer than the rest), ``n`` drops by one."""
    cum = np.asarray(bars.offsets - bars.offsets[0], dtype=np.float64) * parameter_sets
    work = float(cum[-1])
    target = chunk_seconds * bars_per_second
    n = min(int(work // target), bars.n_instruments)
    while n >= 2:
        cuts = [0]
        for k in range(1, n):
            x = k * work / n
            j = int(np.searchsorted(cum, x))
            if j > 0 and x - cum[j - 1] <= cum[j] - x:
                j -= 1  # the nearer boundary
            cuts.append(max(j, cuts[-1] + 1))
        cuts.append(bars.n_instruments)
        ranges = list(itertools.pairwise(cuts))
        if all(a < b and cum[b] - cum[a] >= target for a, b in ranges):
            return ranges
        n -= 1
    return [(0, bars.n_instruments)]


def simulation_rate(plan: Plan, data: Data, seconds: float = CALIBRATION_SECONDS,
                    clock: Callable[[], float] = time.perf_counter) -> float:
    """Bars of history per second this process takes through a chunk's work (backtest them,
    encode the result, make the trade rows and compress the curves), timed on the universe's
    first instruments: the chunks run the same code on the same kind of worker. The
    backtest alone runs several times faster on a slice that fits the CPU's caches than on a
    chunk; the encoding, most of a chunk's time, does not.

    One untimed run of the first instrument first: it pays the kernels' compilation or
    cache load once per process. Then runs of more instruments, until one lasts ``seconds``
    or takes an eighth of the universe; the faster of that run and a second one counts. A
    run's fixed costs count as work, so a small measure errs towards longer chunks."""
    bars = data.bars
    limit = max(1, bars.n_instruments // 8)

    def timed(j: int) -> float:
        started = clock()
        parts = simulate_span(plan, bars, data.start_ns, 0, j)
        sub = span(bars, 0, j)
        encode_parts(parts, traded_times(sub, data.start_ns))
        chunk_rows(sub, data.start_ns, parts)
        return clock() - started

    timed(1)
    j, took = 1, timed(1)
    while took < seconds and j < limit:
        # straight to the instruments that should last ``seconds``, at most 64 times more
        grow = seconds / took * 1.2 if took > 0 else 64.0
        j = min(limit, max(j + 1, int(j * min(grow, 64.0))))
        took = timed(j)
    # the best of two: a run slowed by a neighbour on the machine would cut chunks too short
    took = min(took, timed(j))
    return float(bars.offsets[j] - bars.offsets[0]) / max(took, 1e-9)


def bars_digest(bars: BarUniverse) -> str:
    """What a chunk's bars must hash to: the parent's cut of them."""
    digest = hashlib.sha256("\n".join(bars.symbols).encode())
    for arr in (bars.offsets - bars.offsets[0], bars.ts, bars.open, bars.high, bars.low,
                bars.close, bars.volume):
        digest.update(np.ascontiguousarray(arr).data)  # its buffer: no copy of the bars
    return digest.hexdigest()


def chunk_digests(parts: Sequence[BarUniverse]) -> list[str]:
    """`bars_digest` of each chunk's bars, on two threads: sha256 lets go of the GIL, and the
    workers the chunks are for are idle until this cut is stored."""
    if len(parts) < 2:
        return [bars_digest(p) for p in parts]
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="split-digest") as pool:
        return list(pool.map(bars_digest, parts))


# -- a chunk's parts as bytes (exact: numpy's own format, floats never go through text) -----

class Chunk(NamedTuple):
    """A chunk's result: its parts and its traded times (`traded_times`; None from a chunk
    of an older version)."""

    parts: list[SymbolPart]
    times: np.ndarray | None
    positions: np.ndarray | None


def traded_times(bars: BarUniverse, start_ns: int | None) -> tuple[np.ndarray, np.ndarray]:
    """What the parent's aggregate needs of a chunk's bars, so that it reads none: the
    distinct traded times (`union_of_times`) and each traded bar's place among them, as
    int32 where that fits (a fraction of the bars' own times; the union is small when the
    instruments trade at the same times)."""
    ts = bars.ts[in_window(bars, start_ns)]
    times = union_of_times(ts)
    dtype = np.int32 if times.shape[0] < 2**31 else np.int64
    return times, np.searchsorted(times, ts).astype(dtype)


def join_traded_times(traded: Sequence[tuple[np.ndarray, np.ndarray]]
                      ) -> tuple[np.ndarray, np.ndarray]:
    """The chunks' `traded_times` (in chunk order) as the universe's: the union of their
    times, and each traded bar's place in it."""
    first = traded[0][0] if traded else None
    if first is not None and all(np.array_equal(t, first) for t, _ in traded[1:]):
        # the usual universe, all chunks trading at the same times (each chunk's times are
        # sorted and distinct): their union is those times, the places are the chunks' own
        # (as they were sent, int32 mostly: indexes, the same places in any integer type)
        return first, np.concatenate([p for _, p in traded])
    times = union_of_times(np.concatenate([t for t, _ in traded]))
    return times, np.concatenate([np.searchsorted(times, t)[p] for t, p in traded])


def encode_parts(parts: list[SymbolPart],
                 traded: tuple[np.ndarray, np.ndarray] | None = None) -> bytes:
    """The parts, and their instruments' `traded_times`."""
    eq_offsets = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum([p.equity.shape[0] for p in parts], out=eq_offsets[1:])
    tr_offsets = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum([len(p.trades) for p in parts], out=tr_offsets[1:])
    arrays: dict[str, np.ndarray] = {
        "equity": np.concatenate([p.equity for p in parts]) if parts else np.zeros(0),
        "eq_offsets": eq_offsets, "tr_offsets": tr_offsets,
        "exposure": np.array([p.exposure for p in parts], dtype=np.float64),
        "hold": np.array([p.hold for p in parts], dtype=np.float64),
        "meta": np.frombuffer(json.dumps({"symbols": [p.symbol for p in parts],
                                          "scalars": [p.scalars for p in parts]}).encode(),
                              dtype=np.uint8)}
    for name in TRADE_FIELDS:
        arrays[f"t_{name}"] = np.concatenate([getattr(p.trades, name) for p in parts])
    if traded is not None:
        arrays["times"], arrays["positions"] = traded
    out = io.BytesIO()
    np.savez(out, allow_pickle=False, **arrays)
    return out.getvalue()


def decode_chunk(blob: bytes) -> Chunk:
    """What `encode_parts` encoded."""
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        a = {name: z[name] for name in z.files}
    meta = json.loads(a["meta"].tobytes().decode())
    eo, to = a["eq_offsets"], a["tr_offsets"]
    parts = []
    for k, symbol in enumerate(meta["symbols"]):
        t0, t1 = int(to[k]), int(to[k + 1])
        trades = Trades(*(a[f"t_{name}"][t0:t1] for name in TRADE_FIELDS))
        parts.append(SymbolPart(symbol, a["equity"][int(eo[k]):int(eo[k + 1])], trades,
                                meta["scalars"][k], float(a["exposure"][k]),
                                float(a["hold"][k])))
    return Chunk(parts, a.get("times"), a.get("positions"))


def decode_parts(blob: bytes) -> Iterator[SymbolPart]:
    yield from decode_chunk(blob).parts


# -- the parent -----------------------------------------------------------------------------

def wait_for_chunks(ctx: TaskContext) -> None:
    """Hand the parent back while its chunks run (a cheap read, before any bars are loaded);
    a chunk that failed fails it. Returns when there is no split or it is complete."""
    platform = ctx.platform
    with platform.database.read(primary=True) as uow:
        counts = uow.splits.counts(ctx.job_id)
        if counts is None or counts[0] >= counts[1]:
            return
        done, total = counts
        for index, job_id in uow.splits.pending(ctx.job_id):
            job = uow.jobs.get(job_id)
            if job is None:
                continue
            what = f"chunk {index + 1} of {total} (job {job.id}) is {job.status}"
            if job.status == FAILED:
                raise BadInputError(f"{what}: {job.error}")
            if job.status in (DEAD, CANCELLED):
                raise OperationalError(f"{what}: {job.error or ''}; retry that job, then "
                                       "this one")
            if job.status == SUCCEEDED and not _finished(uow, ctx.job_id, index):
                # it skipped its work: this job was over (cancelled, failed) back then
                raise OperationalError(f"{what} without a result (it ran while this job was "
                                       "cancelled or failed); submit the backtest again")
    ctx.progress(done / total)
    raise JobDeferred(platform.settings.split_poll_seconds)


def _finished(uow: UnitOfWork, job_id: str, index: int) -> bool:
    """Read again: a chunk's job and its row are written in one transaction, but a
    read-committed read of one and then the other can fall between the two."""
    return all(i != index for i, _ in uow.splits.pending(job_id))


class Splitter:
    """The parent's way to compute a universe backtest: start the split (its first run), or
    assemble it (`resume`, its second run: from what it cut, without reading the bars)."""

    def __init__(self, ctx: TaskContext, request: BacktestRequest) -> None:
        self.ctx = ctx
        self.request = request

    def __call__(self, plan: Plan, data: Data, mode: str, progress: Progress | None) -> Outcome:
        if mode != "universe":
            return MODES[mode](plan, data, progress)
        wait_for_chunks(self.ctx)  # a run racing the last chunk: nothing split is left out
        platform = self.ctx.platform
        settings = platform.settings
        with platform.database.read(primary=True) as uow:
            split = uow.splits.counts(self.ctx.job_id) is not None
            cut = uow.splits.cut(self.ctx.job_id) if split else None
        if split:
            if cut is None:  # made by an older version: assembled on the bars read now
                return self._assemble(plan, data)
            # made since `resume` looked: the next run assembles what was cut
            raise JobDeferred(settings.split_poll_seconds)
        rate = settings.split_bars_per_second or simulation_rate(plan, data)
        ranges = chunk_ranges(data.bars, settings.split_chunk_seconds, rate)
        if len(ranges) < 2:
            return MODES[mode](plan, data, progress)
        self._start(plan, data, ranges, rate)
        raise JobDeferred(settings.split_poll_seconds)

    def resume(self, plan: Plan) -> Resumed | None:
        """The split this job made, to assemble (None: there is none, or it has no cut).
        The backtest is the universe the parent cut, whatever bars were stored since."""
        from signalfactory.services.backtests.run import Resumed

        wait_for_chunks(self.ctx)
        with self.ctx.platform.database.read(primary=True) as uow:
            text = uow.splits.cut(self.ctx.job_id)
        if text is None:
            return None
        cut = json.loads(text)
        if code_hash(plan.strategy) != cut["code_hash"]:
            raise BadInputError("the strategy changed after the backtest was split; run the "
                                "backtest again")
        data_range = DataRange.from_json(cut["data_range"])
        ranges = [(int(i), int(j)) for i, j in cut["chunks"]]
        return Resumed(data_range, str(cut["mode"]),
                       functools.partial(self._assemble, plan, None, data_range.symbols,
                                         ranges))

    def _assemble(self, plan: Plan, data: Data | None, symbols: Sequence[str] = (),
                  ranges: Sequence[tuple[int, int]] = ()) -> Outcome:
        """The aggregate from the chunks' results (the chunks stored their trades and
        curves): on the traded times the chunks sent, or on ``data``'s (a split made by an
        older version, whose chunks sent none)."""
        job_id = self.ctx.job_id
        with self.ctx.platform.database.read(primary=True) as uow:
            counts = uow.splits.counts(job_id)
            blobs = uow.splits.results(job_id) if counts is not None else []
        total = 0 if counts is None else counts[1]
        if counts is None or len(blobs) != total or (ranges and len(ranges) != total):
            raise OperationalError(f"split job {job_id} has {len(blobs)} chunk results for "
                                   f"{total} chunks; run the backtest again")
        chunks = [decode_chunk(blob) for blob in blobs]
        parts = [p for chunk in chunks for p in chunk.parts]
        if data is not None:
            outcome = assemble_universe(plan, data, parts, rows=False)
        else:
            times, positions = self._traded_times(chunks, ranges)
            offsets = np.zeros(len(parts) + 1, dtype=np.int64)
            np.cumsum([p.equity.shape[0] for p in parts], out=offsets[1:])
            outcome = assemble_window(plan, symbols, times, positions, offsets, parts,
                                      rows=False)
        self.ctx.on_commit(lambda uow: uow.splits.drop_results(job_id))
        return dataclasses.replace(outcome, chunked=ChunkedRows(
            job_id, tuple(sum(len(p.trades) for p in chunk.parts) for chunk in chunks),
            tuple(len(chunk.parts) for chunk in chunks)))

    def _traded_times(self, chunks: list[Chunk], ranges: Sequence[tuple[int, int]]
                      ) -> tuple[np.ndarray, np.ndarray]:
        """The universe's traded times and each traded bar's place among them, from the
        chunks' own: the same values `assemble_universe` finds in the bars."""
        for (i, j), chunk in zip(ranges, chunks, strict=True):
            if chunk.times is None or chunk.positions is None or len(chunk.parts) != j - i \
                    or chunk.positions.shape[0] != sum(p.equity.shape[0] for p in chunk.parts):
                raise OperationalError(f"split job {self.ctx.job_id}: a chunk's result is not "
                                       f"the instruments {i}..{j - 1} it was cut; run the "
                                       "backtest again")
        return join_traded_times([(c.times, c.positions) for c in chunks
                                  if c.times is not None and c.positions is not None])

    def _start(self, plan: Plan, data: Data, ranges: list[tuple[int, int]],
               rate: float) -> None:
        platform, ctx = self.ctx.platform, self.ctx
        hash_ = code_hash(plan.strategy)
        # what the second run assembles: this universe, not the bars stored by then
        cut = json.dumps({"mode": "universe", "code_hash": hash_,
                          "data_range": data.data_range.to_json(),
                          "chunks": [[i, j] for i, j in ranges]})
        ids: list[str] = []
        parts = [span(data.bars, i, j) for i, j in ranges]
        digests = chunk_digests(parts)
        with platform.database.write() as uow:
            for index, (part, digest) in enumerate(zip(parts, digests, strict=True)):
                payload: JsonObject = {
                    "parent": ctx.job_id, "index": index, "request": self.request.to_payload(),
                    "symbols": list(part.symbols), "digest": digest,
                    "code_hash": hash_, "start_ns": data.start_ns}
                job = submit(platform, CHUNK_KIND, payload, tenant_id=ctx.tenant_id, uow=uow,
                             dedupe_key=f"split:{ctx.job_id}:{index}")
                ids.append(job.id)
            created = uow.splits.create(ctx.job_id, CHUNK_KIND, ids, platform.clock.now(),
                                        cut=cut)
        if created:
            log.info("backtest split", job_id=ctx.job_id, chunks=len(ranges),
                     bars_per_second=round(rate),
                     bars=[int(data.bars.offsets[j] - data.bars.offsets[i]) for i, j in ranges])
            for job_id in ids:
                dispatch(platform, job_id)
        ctx.progress(0.0)


# -- a chunk --------------------------------------------------------------------------------

class ChunkPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    parent: str
    index: int = Field(ge=0)
    request: dict[str, Any]
    symbols: list[str] = Field(min_length=1)
    digest: str
    code_hash: str
    start_ns: int | None


def chunk_task(ctx: TaskContext, payload: JsonObject) -> JsonObject:
    """Simulate one chunk's instruments and count the chunk done with its result."""
    from signalfactory.services.backtests.run import prepare
    from signalfactory.services.marketdata.bars import load_universe

    args = parse_payload(ChunkPayload, payload, CHUNK_KIND)
    platform = ctx.platform
    with platform.database.read(primary=True) as uow:
        parent = uow.jobs.get(args.parent)
    if parent is None or parent.terminal:
        return {"parent": args.parent, "index": args.index,
                "skipped": "the split backtest is gone or finished"}
    with platform.database.write() as uow:
        execution = uow.splits.started(args.parent, args.index)
    started = time.perf_counter()
    plan = prepare(platform, BacktestRequest.from_payload(ctx.tenant_id, args.request))
    if code_hash(plan.strategy) != args.code_hash:
        raise BadInputError("the strategy changed after the backtest was split; run the "
                            "backtest again")
    bars = load_universe(platform, plan.timeframe, symbols=args.symbols, end=plan.end)
    if tuple(bars.symbols) != tuple(args.symbols) or bars_digest(bars) != args.digest:
        raise BadInputError("the bars changed after the backtest was split (new bars "
                            "stored?); run the backtest again")

    def progress(done: int, total: int) -> None:
        ctx.progress(done / total if total else 1.0)

    parts = simulate_span(plan, bars, args.start_ns, 0, bars.n_instruments, progress)
    blob = encode_parts(parts, traded_times(bars, args.start_ns))
    trades, curves = chunk_rows(bars, args.start_ns, parts)
    seconds = time.perf_counter() - started
    parent_id = args.parent

    def record(uow: UnitOfWork) -> None:
        now = platform.clock.now()
        done, total, counted = uow.splits.complete(parent_id, args.index, blob, seconds, now)
        if counted:  # with the count, once: a chunk run twice holds its rows once
            uow.backtests.stage_chunk(parent_id, args.index, trades, curves)
        if total and done >= total and uow.jobs.wake(parent_id, now):
            uow.on_commit(lambda: dispatch(platform, parent_id))

    ctx.on_commit(record)
    return {"parent": args.parent, "index": args.index, "instruments": bars.n_instruments,
            "bars": int(bars.n_bars), "seconds": round(seconds, 3), "execution": execution}


def chunk_rows(bars: BarUniverse, start_ns: int | None, parts: list[SymbolPart]
               ) -> tuple[list[TradeRecord], list[EncodedCurve]]:
    """A chunk's trades and equity curves as the stored backtest will hold them, made here
    (encoded before the transaction that stores them opens)."""
    win = masked(bars, in_window(bars, start_ns))
    trades: list[TradeRecord] = []
    curves: list[EncodedCurve] = []
    for k, part in enumerate(parts):
        own, curve = part_rows(part, window_ts(win, k))
        trades.extend(own)
        curves.append(EncodedCurve.of(curve))
    return trades, curves


def split_summary(platform: Platform, parent_job_id: str) -> JsonObject | None:
    """The split of a job as JSON (chunk count, executions, seconds, bars), or None."""
    with platform.database.read(primary=True) as uow:
        state = uow.splits.get(parent_job_id)
        if state is None:
            return None
        jobs = [uow.jobs.get(c.job_id) for c in state.chunks]
    return {"chunks": state.total, "done": state.done,
            "executions": [c.executions for c in state.chunks],
            "seconds": [c.seconds for c in state.chunks],
            "bars": [job.result.get("bars") if job is not None and job.result else None
                     for job in jobs],
            # first chunk started .. last chunk finished: the parallel phase's wall time
            "chunk_wall_seconds": _wall(jobs)}


def _wall(jobs: list[Job | None]) -> float | None:
    starts = [j.started_at for j in jobs if j is not None and j.started_at is not None]
    ends = [j.finished_at for j in jobs if j is not None and j.finished_at is not None]
    if not starts or len(ends) < len(jobs):
        return None
    return (max(ends) - min(starts)).total_seconds()


__all__ = ["CHUNK_KIND", "Splitter", "chunk_ranges", "chunk_rows", "chunk_task",
           "decode_chunk", "decode_parts", "encode_parts", "join_traded_times",
           "simulation_rate", "split_summary", "split_wanted", "traded_times",
           "wait_for_chunks"]
