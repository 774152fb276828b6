"""Trading benchmark, against the local exchange simulator over loopback:

1. **Order path latency**: signal (the decision step: decide and size) -> risk (the risk
   engine and the capital ledger) -> pending row stored (committed before sending) ->
   exchange round trip (the real ccxt client, signed request) -> acknowledgement, fills and
   position stored. p50/p95 per stage and end to end, sequential orders of one bot. Goal: p95
   <= 20 ms (the reference system's SLA is 200 ms). Reference, side by side: the bare ccxt
   ``create_order`` round trip to the same simulator (what the exchange leg costs alone).
2. **Sustained orders/s**: several bots, one thread and one exchange account each, for a
   fixed time. Goal >= 100 orders/s (36x the reference system's 10,000 trades an hour).
   Reference: bare ccxt ``create_order`` with as many threads and accounts.
3. **Paper universe**: a paper bot on 500 symbols; one new bar for all of them is written
   (as a collector does) and the bot's tick decides, places and stores every order. Goal: all
   decisions stored within 1 s of the write.

    .venv/bin/python benchmarks/trading.py [--database-url URL] [--orders 400]
        [--threads 4] [--seconds 8] [--symbols 500]

Without ``--database-url`` it runs on a scratch SQLite file and, when the server on
127.0.0.1:5432 answers, on a scratch PostgreSQL database too. The simulator's per-account
limits are Binance's by default; the benchmark accounts raise them (the simulator is not a
venue to protect), exactly as for the bare ccxt reference.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import ccxt
import numpy as np
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from signalfactory.bootstrap import build_platform
from signalfactory.domain.bars import BarSeries, BarUniverse
from signalfactory.domain.instruments import InstrumentSpec
from signalfactory.domain.timeframes import Timeframe
from signalfactory.domain.trading.bots import Bot
from signalfactory.domain.trading.decisions import (
    OPEN_LONG,
    BarSignals,
    BotRef,
    backtest_config,
    decide,
    entry_intent,
    exit_intent,
)
from signalfactory.domain.trading.orders import FILLED
from signalfactory.observability.logging import configure_logging
from signalfactory.services.marketdata.bars import SymbolBars, write_bars
from signalfactory.services.platform import Platform
from signalfactory.services.strategies.catalog import add_strategy
from signalfactory.services.trading import accounts, bots
from signalfactory.services.trading.execution import StageTimes, place_orders
from signalfactory.services.trading.runner import run_tick, strategy_of
from signalfactory.services.trading.sessions import open_session
from signalfactory.settings import load_settings
from signalfactory.testing.exchange_simulator import ExchangeSimulator, SymbolSpec

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
LOOSE = {"order_limit": "100000000/minute", "weight_limit": "100000000/minute"}
MINUTE = Timeframe.parse("1m")
FLIP = "entry: close > open\nexit: close < open"
PRICE = 30_000.0


def out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.2f} ms"


# -- set-up ------------------------------------------------------------------------------------

def scratch_databases(explicit: str | None) -> list[tuple[str, str | None]]:
    if explicit:
        return [(explicit, None)]
    found = [(f"sqlite:///{tempfile.mkdtemp(prefix='sf-bench-trading-')}/sf.db", None)]
    try:
        admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        name = f"sf_bench_trd_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        found.append((PG_ADMIN.rsplit("/", 1)[0] + f"/{name}", name))
    except sa.exc.OperationalError:
        out("(PostgreSQL on 127.0.0.1:5432 does not answer: SQLite only)")
    return found


def drop_database(name: str) -> None:
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def platform_for(url: str) -> Platform:
    os.environ.setdefault("SIGNALFACTORY_DELIVERY_KEY",
                          base64.b64encode(os.urandom(32)).decode())
    settings = load_settings(home=Path(tempfile.mkdtemp(prefix="sf-bench-home-")),
                             database_url=url, log_level="WARNING", retention_cron="")
    configure_logging("json", "WARNING")  # as a worker logs: no debug line per order
    platform = build_platform(settings, migrate_db=True)
    platform.bar_subscribers.clear()  # part 3 runs its tick itself, timed
    return platform


def sim_bot(platform: Platform, sim: ExchangeSimulator, n: int, api_key: str,
            secret: str) -> Bot:
    config = sim.ccxt_config(public_only=True, rate_limit_ms=0.001, timeout_ms=5000)
    account = accounts.create_account(platform, 1, name=f"sim-{n}", kind="ccxt",
                                      exchange="binance", quote_currency="USDT",
                                      options={"ccxt": config, **LOOSE}, api_key=api_key,
                                      secret=secret)
    return bots.create_bot(platform, 1, name=f"bench-{n}", strategy="flip",
                           account_id=account.id, symbols=["BTC/USDT"], allocation=1e9,
                           sizing="units", size_value=0.001, whole_units=False,
                           timeframe="1m")


def bare_client(sim: ExchangeSimulator, api_key: str, secret: str) -> ccxt.binance:
    client = ccxt.binance(sim.ccxt_config(api_key, secret, rate_limit_ms=0.001,
                                          timeout_ms=5000))
    client.load_markets()
    return client


# -- 1. order path latency ---------------------------------------------------------------------

def order_path(platform: Platform, sim: ExchangeSimulator, orders: int) -> None:
    bot = sim_bot(platform, sim, 0, sim.api_key, sim.secret)
    timer = StageTimes()
    session = open_session(platform, bot, timer=timer)
    config = backtest_config(bot)
    ref = BotRef.of(bot)
    held = 0.0
    signal_s: list[float] = []
    total_s: list[float] = []
    warm = 20
    for i in range(orders + warm):
        started = time.perf_counter()
        signals = BarSignals(long_entry=held == 0.0, long_exit=held > 0.0)
        action = decide(held, signals, config.direction)
        intent = (entry_intent(ref, symbol="BTC/USDT", action=action, bar_ns=i, price=PRICE,
                               equity=1e9, cash=1e9, config=config,
                               market=session.markets["BTC/USDT"])
                  if action == OPEN_LONG else
                  exit_intent(ref, symbol="BTC/USDT", quantity=held, action=action, bar_ns=i,
                              price=PRICE))
        assert intent is not None
        decided = time.perf_counter()
        [result] = place_orders(session, [intent])
        done = time.perf_counter()
        assert result.outcome == FILLED, result
        held += sum(f.quantity if f.side == "buy" else -f.quantity for f in result.fills)
        held = held if held > 1e-9 else 0.0
        if i >= warm:
            signal_s.append(decided - started)
            total_s.append(done - started)
    stages = {k: v[warm:] for k, v in timer.samples.items()}
    # the reference: the bare ccxt round trip to the same simulator, same orders
    client = bare_client(sim, sim.api_key, sim.secret)
    bare: list[float] = []
    for i in range(orders + warm):
        side = "buy" if i % 2 == 0 else "sell"
        started = time.perf_counter()
        client.create_order("BTC/USDT", "market", side, 0.001, None,
                            {"newClientOrderId": f"ref-{uuid.uuid4().hex[:20]}"})
        if i >= warm:
            bare.append(time.perf_counter() - started)
    out(f"  {orders} sequential orders (after {warm} warm-up), p50 / p95 per stage:")
    rows = [("signal (decide + size)", signal_s), ("risk + capital", stages["risk"]),
            ("store pending (incl. risk)", stages["pending"]),
            ("exchange round trip", stages["exchange"]), ("store ack + fills", stages["store_ack"])]
    for name, values in rows:
        out(f"    {name:28s} {ms(pct(values, 50))} / {ms(pct(values, 95))}")
    p95 = pct(total_s, 95)
    out(f"    {'order path, end to end':28s} {ms(pct(total_s, 50))} / {ms(p95)}"
        f"   (goal p95 <= 20 ms: {'met' if p95 <= 0.020 else 'MISSED'}; "
        f"{0.200 / p95:.1f}x under the reference system's 200 ms SLA)")
    out(f"    {'reference: bare ccxt order':28s} {ms(pct(bare, 50))} / {ms(pct(bare, 95))}"
        f"   (our path / bare ccxt at p95: {p95 / pct(bare, 95):.2f}x)")


# -- 2. sustained throughput -------------------------------------------------------------------

def _run_threads(threads: int, seconds: float, work: list[object]) -> tuple[int, float]:
    stop = threading.Event()
    counts = [0] * threads
    errors: list[BaseException] = []

    def loop(k: int) -> None:
        step = work[k]
        try:
            while not stop.is_set():
                step()  # type: ignore[operator]
                counts[k] += 1
        except BaseException as exc:  # reported below: a benchmark must not hide failures
            errors.append(exc)
            stop.set()

    pool = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
    started = time.perf_counter()
    for t in pool:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in pool:
        t.join()
    if errors:
        raise errors[0]
    return sum(counts), time.perf_counter() - started


def throughput(platform: Platform, sim: ExchangeSimulator, threads: int,
               seconds: float) -> None:
    steps: list[object] = []
    bare_steps: list[object] = []
    for k in range(threads):
        key, secret = f"bench-key-{k}", f"bench-secret-{k}"
        sim.add_account(key, secret, {"USDT": 10**12, "BTC": 1000})
        bot = sim_bot(platform, sim, 100 + k, key, secret)
        session = open_session(platform, bot)
        ref = BotRef.of(bot)
        state = {"i": 0, "held": 0.0}

        def step(session: object = session, ref: BotRef = ref, state: dict = state,
                 bot: Bot = bot) -> None:
            state["i"] += 1
            held = state["held"]
            intent = (exit_intent(ref, symbol="BTC/USDT", quantity=held, action=1,
                                  bar_ns=state["i"], price=PRICE) if held else
                      entry_intent(ref, symbol="BTC/USDT", action=OPEN_LONG,
                                   bar_ns=state["i"], price=PRICE, equity=1e9, cash=1e9,
                                   config=backtest_config(bot)))
            [result] = place_orders(session, [intent])  # type: ignore[arg-type]
            assert result.outcome == FILLED, result
            moved = sum(f.quantity if f.side == "buy" else -f.quantity for f in result.fills)
            state["held"] = max(held + moved, 0.0) if held + moved > 1e-9 else 0.0

        steps.append(step)
        client = bare_client(sim, key, secret)

        def bare_step(client: ccxt.binance = client, counter: list[int] = [0]) -> None:  # noqa: B006 - per-thread counter
            counter[0] += 1
            client.create_order("BTC/USDT", "market", "buy" if counter[0] % 2 else "sell",
                                0.001, None, {"newClientOrderId": uuid.uuid4().hex[:30]})

        bare_steps.append(bare_step)
    done, elapsed = _run_threads(threads, seconds, steps)
    rate = done / elapsed
    bare_done, bare_elapsed = _run_threads(threads, seconds / 2, bare_steps)
    bare_rate = bare_done / bare_elapsed
    out(f"  {threads} bots (a thread and an account each), {elapsed:.1f} s: "
        f"{done} orders = {rate:.0f} orders/s (goal >= 100/s: "
        f"{'met' if rate >= 100 else 'MISSED'}; {rate * 3600 / 10_000:.0f}x the reference "
        f"system's 10,000 trades/hour)")
    out(f"  reference: bare ccxt create_order, {threads} threads: {bare_rate:.0f} orders/s "
        f"(our path / bare: {rate / bare_rate:.2f}x)")


# -- 3. a paper universe on a new bar ----------------------------------------------------------

def paper_universe(platform: Platform, symbols: int) -> None:
    n_hist = 30
    rng = np.random.default_rng(1)
    names = [f"S{k:03d}/USDT" for k in range(symbols)]
    ts = (1_700_000_000 + 60 * np.arange(n_hist + 1, dtype=np.int64)) * 10**9
    series = []
    for name in names:
        opens = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n_hist + 1)))
        closes = opens * (1 + rng.normal(0, 0.01, n_hist + 1))
        closes[-1] = opens[-1] * 1.01  # the new bar rises: every symbol enters
        hi, lo = np.maximum(opens, closes) * 1.001, np.minimum(opens, closes) * 0.999
        series.append(BarSeries(name, ts, opens, hi, lo, closes, np.full(n_hist + 1, 5.0)))

    def write(a: int, b: int) -> None:
        write_bars(platform, MINUTE, [SymbolBars(InstrumentSpec(symbol=s.symbol), s.ts[a:b],
                                                 s.open[a:b], s.high[a:b], s.low[a:b],
                                                 s.close[a:b], s.volume[a:b])
                                      for s in series], source="bench")

    write(0, n_hist)
    account = accounts.create_account(platform, 1, name="paper-universe", kind="paper",
                                      initial_cash=1e9)
    bot = bots.create_bot(platform, 1, name="universe", strategy="flip",
                          account_id=account.id, symbols=names, allocation=1e8,
                          sizing="cash", size_value=1000.0, timeframe="1m", fee_pct=0.001)
    bots.start_bot(platform, 1, bot.id)
    run_tick(platform, bot.id, reconcile_now=True)  # notes the newest bar
    # a running worker has evaluated the strategy before (numba's kernels loaded)
    strategy_of(platform, bot).evaluate(BarUniverse.from_series(series))
    timer = StageTimes()
    started = time.perf_counter()
    write(n_hist, n_hist + 1)
    written = time.perf_counter()
    report = run_tick(platform, bot.id, timer=timer)
    done = time.perf_counter()
    with platform.database.read() as uow:
        stored = [o for o in uow.orders.find(bot_id=bot.id, limit=10 * symbols)
                  if o.status == FILLED]
    assert report.orders == symbols and len(stored) == symbols, (report, len(stored))
    total = done - started
    out(f"  {symbols} symbols, one new bar: write {ms(written - started)}, tick (evaluate, "
        f"decide, {report.orders} orders placed and stored) {ms(done - written)}")
    out(f"    pending {ms(sum(timer.samples['pending']))}, paper exchange "
        f"{ms(sum(timer.samples['exchange']))}, acks {ms(sum(timer.samples['store_ack']))}")
    out(f"  all decisions stored {total:.3f} s after the bar arrived (goal <= 1 s: "
        f"{'met' if total <= 1.0 else 'MISSED'}; {total / 1.0:.2f}x the goal)")


def run(url: str, args: argparse.Namespace) -> None:
    platform = platform_for(url)
    try:
        with platform.database.write() as uow:
            add_strategy(uow, 1, "flip", rule_text=FLIP, timeframe="1m")
        spec = SymbolSpec("BTC", "USDT", tick_size="0.01", step_size="0.00001",
                          min_qty="0.00001", min_notional="5", price=PRICE)
        with ExchangeSimulator([spec], balances={"USDT": 10**12, "BTC": 1000}) as sim:
            out("1. order path latency (signal -> risk -> pending -> exchange -> ack stored)")
            order_path(platform, sim, args.orders)
            out("2. sustained orders/s")
            throughput(platform, sim, args.threads, args.seconds)
        out("3. paper trading a universe on a new bar")
        paper_universe(platform, args.symbols)
    finally:
        platform.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url")
    parser.add_argument("--orders", type=int, default=400)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--symbols", type=int, default=500)
    args = parser.parse_args()
    for url, dropped in scratch_databases(args.database_url):
        out(f"\n== {sa.engine.make_url(url).get_backend_name()} ==")
        try:
            run(url, args)
        finally:
            if dropped:
                drop_database(dropped)


if __name__ == "__main__":
    main()

