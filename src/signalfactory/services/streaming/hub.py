"""The in-process broadcaster behind the WebSocket and Server-Sent Events streams.

One hub per serving process (asyncio). Events reach it two ways:

* directly, when bars are written in this process: ``services.live`` calls the publisher the
  hub registers in ``platform.signal_publishers`` (from any thread; a writer thread waits,
  briefly, until the loop has fanned its events out);
* by a relay that polls the stored signals by id (every ``poll_seconds``) through the
  platform's ``SignalFeed``, for signals stored by other processes (a worker, the CLI). When
  the feed has commit notifications (PostgreSQL LISTEN) it polls at once when notified. Ids
  the hub has already published are skipped, so an event found both ways goes out once.

Fan-out: connections are grouped by filter; for each group the matching events are joined
from their once-serialised JSON into one message (framed by the API's ``Framing`` of the
connection's kind), and that same object is queued on every connection of the group. Each
connection has a bounded queue drained by its own writer task; a connection whose queue is
full is closed (reason ``slow``), never waited for, so one slow consumer does not hold up the
others. It can reconnect with its last event id.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass

from signalfactory.domain.errors import OperationalError
from signalfactory.domain.streaming import SignalEvent, StreamFilter
from signalfactory.observability.logging import get_logger
from signalfactory.observability.metrics import (
    STREAM_CONNECTIONS,
    STREAM_DISCONNECTS,
    STREAM_EVENTS,
    STREAM_MESSAGES,
)
from signalfactory.services.platform import Platform
from signalfactory.services.streaming.ports import SignalFeed

log = get_logger("signalfactory.stream")


_SEEN_IDS = 200_000  # ids remembered for de-duplication (direct vs relay, hole re-reads)
_HOLE_SECONDS = 10.0  # how long a gap in ids is re-read (PostgreSQL commits out of id order)
_MAX_HOLES = 32

Message = str | bytes
"""One queued message: WebSocket text or a Server-Sent Events block."""


@dataclass(frozen=True)
class Framing:
    """How connections of one kind carry events; the API supplies one per kind ("ws", "sse").

    ``message`` joins events into one message, built once per group of connections;
    ``prepared`` turns that message into the bytes a connection writes straight to its
    transport (None: this kind never does).
    """

    message: Callable[[Sequence[SignalEvent]], Message]
    prepared: Callable[[Message], bytes] | None = None


class Subscriber:
    """One connection's queue. ``kind`` is "ws" (str messages) or "sse" (bytes blocks)."""

    __slots__ = ("busy", "closed", "direct", "filter", "frames", "kind", "max_pending",
                 "pending_events", "replayed", "wakeup")

    def __init__(self, flt: StreamFilter, kind: str, *, max_pending: int,
                 replaying: bool, direct: Callable[[bytes], bool] | None = None) -> None:
        self.filter = flt
        self.kind = kind
        self.max_pending = max_pending
        self.frames: deque[Message] = deque()
        # A writer of prepared WebSocket frames (see api.ws_protocol), used while the
        # connection's own writer is idle; ``busy`` until that writer is in its live loop,
        # so nothing overtakes the greeting, the replay or a queued message.
        self.direct = direct
        self.busy = True
        # While a reconnecting client is replayed from the table, live events wait here so
        # the seam can be de-duplicated event by event.
        self.pending_events: list[SignalEvent] | None = [] if replaying else None
        # Ids the replay sent. One of them may still be published live after the seam (its
        # writer committed before the replay read it, its publish runs later): never twice.
        self.replayed: set[int] = set()
        self.wakeup = asyncio.Event()
        self.closed: str | None = None

    def offer(self, frame: Message) -> None:
        if self.closed is not None:
            return
        if len(self.frames) >= self.max_pending:
            self.close("slow")
            return
        self.frames.append(frame)
        self.wakeup.set()

    def offer_events(self, events: list[SignalEvent]) -> None:
        if self.pending_events is None:
            raise RuntimeError("offer_events is for a connection that is still replaying")
        if len(self.pending_events) + len(events) > self.max_pending * 50:
            self.close("slow")
            return
        self.pending_events.extend(events)

    def go_live(self, replayed: set[int],
                published: Container[int] = frozenset()) -> list[SignalEvent]:
        """End the replay: the buffered live events not already replayed, in id order.

        ``published``: ids the hub has fanned out already and never will again; only the
        other replayed ids need remembering (usually none, so a long replay costs nothing).
        """
        held, self.pending_events = self.pending_events or [], None
        self.replayed = {i for i in replayed if i not in published}
        return sorted((e for e in held if e.id not in replayed), key=lambda e: e.id)

    def not_replayed(self, events: list[SignalEvent]) -> list[SignalEvent]:
        """``events`` without those the replay already sent (the same list when none)."""
        if not self.replayed or not any(e.id in self.replayed for e in events):
            return events
        fresh = [e for e in events if e.id not in self.replayed]
        # The hub publishes an id once, so a replayed id seen here is never needed again.
        self.replayed.difference_update(e.id for e in events)
        return fresh

    def close(self, reason: str) -> None:
        if self.closed is None:
            self.closed = reason
            if reason not in ("client", "shutdown"):
                STREAM_DISCONNECTS.labels(reason).inc()
            self.wakeup.set()

    async def next_frames(self, timeout: float | None = None) -> list[Message]:
        """Queued messages (possibly none after ``timeout`` s); [] once closed."""
        if not self.frames and self.closed is None:
            if timeout is None:
                await self.wakeup.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self.wakeup.wait()
        self.wakeup.clear()
        if self.closed is not None:
            return []
        out = list(self.frames)
        self.frames.clear()
        return out


class StreamHub:
    """``framings``: how each kind of connection carries events (the API's WebSocket and SSE
    framing); ``feed``: where stored signals are read (default: ``platform.signal_feed``)."""

    def __init__(self, platform: Platform, *, framings: Mapping[str, Framing],
                 feed: SignalFeed | None = None, poll_seconds: float = 0.2,
                 max_pending: int = 256, heartbeat_seconds: float = 15.0,
                 send_timeout: float = 10.0, handoff_timeout: float = 0.25) -> None:
        self.platform = platform
        self.framings = dict(framings)
        self._feed = feed
        self.poll_seconds = poll_seconds
        self.max_pending = max_pending
        self.heartbeat_seconds = heartbeat_seconds
        self.send_timeout = send_timeout
        self.handoff_timeout = handoff_timeout
        self.groups: dict[StreamFilter, set[Subscriber]] = {}
        self._seen: set[int] = set()
        self._seen_order: deque[int] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # The relay's poll runs in a thread that cancelling the task cannot stop; stop() waits
        # for it so no query reaches the engine after the hub is down.
        self._polling: asyncio.Future[list[SignalEvent]] | None = None
        self._poke = asyncio.Event()
        # Highest signal id relayed; None until the first successful read (the database may be
        # unmigrated or away at start; /readyz says so, the stream catches up later).
        self._watermark: int | None = None
        self._holes: list[tuple[int, int, float]] = []

    @property
    def feed(self) -> SignalFeed:
        feed = self._feed or self.platform.signal_feed
        if feed is None:
            raise OperationalError("the live stream needs a signal feed; bootstrap wires "
                                   "platform.signal_feed")
        return feed

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        with contextlib.suppress(Exception):
            self._watermark = await asyncio.to_thread(self.feed.events.max_id)
        self.platform.signal_publishers.append(self.publish_threadsafe)
        self._tasks.append(asyncio.create_task(self._relay(), name="stream-relay"))
        notifications = self.feed.notifications
        if notifications is not None:
            self._tasks.append(asyncio.create_task(notifications.listen(self._poke.set),
                                                   name="stream-listen"))

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            self.platform.signal_publishers.remove(self.publish_threadsafe)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._polling is not None:
            with contextlib.suppress(Exception):
                await self._polling
            self._polling = None
        for subs in list(self.groups.values()):
            for sub in list(subs):
                sub.close("shutdown")

    # -- connections ---------------------------------------------------------------------
    def go_live(self, sub: Subscriber, replayed: set[int]) -> list[SignalEvent]:
        """``sub.go_live`` knowing what this hub has published (it publishes an id once)."""
        return sub.go_live(replayed, self._seen)

    def subscribe(self, flt: StreamFilter, kind: str, *, replaying: bool = False,
                  direct: Callable[[bytes], bool] | None = None) -> Subscriber:
        if kind not in self.framings:
            raise ValueError(f"no framing for stream kind {kind!r}; known: "
                             f"{', '.join(sorted(self.framings))}")
        sub = Subscriber(flt, kind, max_pending=self.max_pending, replaying=replaying,
                         direct=direct)
        self.groups.setdefault(flt, set()).add(sub)
        STREAM_CONNECTIONS.labels(kind).inc()
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        group = self.groups.get(sub.filter)
        if group is not None and sub in group:
            group.discard(sub)
            STREAM_CONNECTIONS.labels(sub.kind).dec()
            if not group:
                del self.groups[sub.filter]

    @property
    def connections(self) -> int:
        return sum(len(g) for g in self.groups.values())

    # -- publishing ----------------------------------------------------------------------
    def publish_threadsafe(self, events: list[SignalEvent]) -> None:
        """The publisher ``services.live`` calls, from whichever thread wrote the bars.

        From another thread it waits (at most ``handoff_timeout`` s) until the loop has
        fanned the events out. Under the GIL the writer's next steps (metrics, a compaction
        of the bar store, the next batch) would otherwise compete with the fan-out for the
        interpreter, in slices of the 5 ms switch interval; waiting, the writer holds
        nothing the loop needs.
        """
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if threading.get_ident() == self._loop_thread:
            self.publish(events)
            return
        done = threading.Event()
        loop.call_soon_threadsafe(self._publish_and_signal, events, done)
        done.wait(self.handoff_timeout)

    def _publish_and_signal(self, events: list[SignalEvent], done: threading.Event) -> None:
        try:
            self.publish(events, "direct")
        finally:
            done.set()

    def publish(self, events: Iterable[SignalEvent], via: str = "direct") -> None:
        """Fan events out to every matching connection (runs on the hub's loop)."""
        fresh = [e for e in events if e.id not in self._seen]
        if not fresh:
            return
        self._remember(e.id for e in fresh)
        fresh.sort(key=lambda e: e.id)
        STREAM_EVENTS.labels(via).inc(len(fresh))
        prepared = queued = 0
        for flt, subs in list(self.groups.items()):
            matching = [e for e in fresh if flt.matches(e)]
            if not matching:
                continue
            # One message (and one prepared frame) per kind for the whole group.
            messages: dict[str, Message] = {}
            frames: dict[str, bytes] = {}
            for sub in list(subs):
                if sub.pending_events is not None:
                    sub.offer_events(matching)
                    continue
                framing = self.framings[sub.kind]
                unsent = sub.not_replayed(matching)
                if unsent is not matching:  # rare: just after a replay; its own message
                    if unsent:
                        sub.offer(framing.message(unsent))
                        queued += 1
                    continue
                message = messages.get(sub.kind)
                if message is None:
                    message = messages[sub.kind] = framing.message(matching)
                if (sub.direct is not None and framing.prepared is not None and not sub.busy
                        and not sub.frames):
                    frame = frames.get(sub.kind)
                    if frame is None:
                        frame = frames[sub.kind] = framing.prepared(message)
                    if sub.direct(frame):
                        prepared += 1
                        continue
                sub.offer(message)
                queued += 1
        if prepared:
            STREAM_MESSAGES.labels("prepared").inc(prepared)
        if queued:
            STREAM_MESSAGES.labels("queued").inc(queued)

    def _remember(self, ids: Iterable[int]) -> None:
        for ident in ids:
            self._seen.add(ident)
            self._seen_order.append(ident)
        while len(self._seen_order) > _SEEN_IDS:
            self._seen.discard(self._seen_order.popleft())

    # -- the relay: signals stored by other processes ------------------------------------
    def replay_page(self, flt: StreamFilter, after: int, limit: int) -> list[SignalEvent]:
        """Stored signals a reconnecting client missed (thread): id > after, in id order."""
        return self.feed.events.replay(flt, after, limit=limit)

    def poll_once(self) -> list[SignalEvent]:
        """Signals committed since the last poll (thread). Gaps below the newest id are
        re-read for a while: on PostgreSQL a lower id can commit after a higher one."""
        source = self.feed.events
        if self._watermark is None:
            self._watermark = source.max_id()
            return []
        now = time.monotonic()
        self._holes = [h for h in self._holes if h[2] > now][-_MAX_HOLES:]
        events = source.events_after(self._watermark,
                                     [(lo, hi) for lo, hi, _ in self._holes])
        previous = self._watermark
        for event in events:
            if event.id <= self._watermark:
                continue
            if event.id > previous + 1 and not source.commits_in_id_order:
                self._holes.append((previous + 1, event.id - 1, now + _HOLE_SECONDS))
            previous = event.id
        self._watermark = max(self._watermark, previous)
        return events

    @property
    def watermark(self) -> int | None:
        """The highest signal id the relay has read (None before its first read)."""
        return self._watermark

    async def _relay(self) -> None:
        failures = 0
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_seconds):
                    await self._poke.wait()
            self._poke.clear()
            try:
                self._polling = asyncio.ensure_future(asyncio.to_thread(self.poll_once))
                events = await asyncio.shield(self._polling)
                failures = 0
            except Exception as exc:  # the database may be away for a while
                failures += 1
                if failures in (1, 10) or failures % 100 == 0:
                    log.warning("live stream relay cannot read signals",
                                error=f"{type(exc).__name__}: {exc}", failures=failures)
                await asyncio.sleep(min(5.0, self.poll_seconds * 2 ** min(failures, 5)))
                continue
            if events:
                if any(e.id not in self._seen for e in events):
                    # Stored by another process (a worker, the CLI): this process's cached
                    # signal pages learn of it here, within one poll, not after their TTL.
                    self.platform.cache.invalidate("signals")
                self.publish(events, "relay")
