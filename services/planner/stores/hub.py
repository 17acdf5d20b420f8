"""One Valkey reader per planner process: every watched job log is followed by a single
blocking XREAD, whose entries fan out to the watchers' bounded feeds.

Without it every WatchJob held a connection in its own XREAD loop, so a popular job cost
one connection and one read per watcher per event. The hub keeps one connection blocked on
all logs that have live watchers; when a log gains its first watcher the hub's XREAD is cut
short (`CLIENT UNBLOCK` from another connection) so the next one includes it at once; when
the last watcher leaves, the reader stops and no connection stays blocked.

A feed only carries what the hub read after the watcher subscribed; the watcher replays the
stored history itself (XRANGE) and drops live entries at or before its cursor, so the hand-
over has no gap and no duplicate. A feed that falls `limit` entries behind stops queueing
and is marked overflowed: its watcher re-reads the log from its own cursor instead of
stalling the reader (and every other watcher) or losing entries.

When Valkey goes away (a restart), the reader reconnects with backoff (0.1 s doubling to
2 s) and reads on from the positions it had, so its watchers see every entry once and only
a pause (with heartbeats); only an outage longer than `outage_seconds` fails the watchers
(EVENT_LOG_UNAVAILABLE, a retryable UNAVAILABLE that a client resumes from its cursor).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from valkey import exceptions as valkey_errors
from valkey.asyncio import Valkey

log = logging.getLogger(__name__)

T = TypeVar("T")
Position = tuple[int, int]  # an entry id `<ms>-<seq>` as a comparable pair
Decode = Callable[[str, dict[bytes, bytes]], T]
READ_COUNT = 512  # entries per log per XREAD
WAKE_MAX_DELAY_S = 0.05
RECONNECT_INITIAL_S = 0.1
RECONNECT_MAX_S = 2.0
DEFAULT_OUTAGE_S = 300.0
_LOST = (valkey_errors.ConnectionError, valkey_errors.TimeoutError)


def position(entry_id: str) -> Position:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class Feed(Generic[T]):
    """One watcher's live entries of one log, in log order."""

    def __init__(self, key: str, limit: int) -> None:
        self.key = key
        self._limit = limit
        # Unbounded as a queue; `offer` enforces the limit, so a failure always fits.
        self._queue: asyncio.Queue[tuple[Position, T] | None] = asyncio.Queue()
        self._failure: Exception | None = None
        self.overflowed = False

    def offer(self, item: tuple[Position, T]) -> None:
        if self.overflowed:
            return  # the watcher re-reads the log from its cursor: nothing to keep
        if self._queue.qsize() >= self._limit:
            self.overflowed = True
            return
        self._queue.put_nowait(item)

    def fail(self, error: Exception) -> None:
        self._failure = error
        self._queue.put_nowait(None)

    async def next(self, wait_s: float) -> tuple[Position, T] | None:
        """The next entry, or None when none came within `wait_s` seconds."""
        if self._failure is not None:
            raise self._failure
        try:
            item = self._queue.get_nowait()  # no timer while entries are waiting
        except asyncio.QueueEmpty:
            try:
                item = await asyncio.wait_for(self._queue.get(), wait_s)
            except TimeoutError:
                return None
        if item is None:
            assert self._failure is not None
            raise self._failure
        return item

    def restart(self) -> None:
        """Forgets the queued entries and the overflow, before the watcher re-reads the log:
        whatever is dropped here is in the log already."""
        self.overflowed = False
        while not self._queue.empty():
            if self._queue.get_nowait() is None:
                self._queue.put_nowait(None)  # keep a failure for `next`
                return


class StreamHub(Generic[T]):
    """Follows the logs that have feeds with one blocking XREAD on its own connection."""

    def __init__(
        self,
        client: Valkey,
        decode: Decode[T],
        *,
        block_ms: int,
        queue_limit: int = 1024,
        on_error: Callable[[Exception], Exception] = lambda e: e,
        outage_seconds: float = DEFAULT_OUTAGE_S,
    ) -> None:
        self._client = client
        self._outage_seconds = outage_seconds
        self._decode = decode
        self._block_ms = block_ms
        self._queue_limit = queue_limit
        self._on_error = on_error
        self._feeds: dict[str, set[Feed[T]]] = {}
        self._positions: dict[str, str] = {}  # the last entry id read (or known) per log
        self._task: asyncio.Task[None] | None = None
        self._reader_id: int | None = None
        self._changes = 0  # bumped whenever a log is added
        self._seen = 0  # the changes that the reader's current XREAD includes
        # For tests and benchmarks: readers started, XREADs sent, feeds that overflowed,
        # reconnections after Valkey went away.
        self.reconnects = 0
        self.readers_started = 0
        self.reads = 0
        self.overflows = 0

    @property
    def followed(self) -> int:
        """How many logs have live watchers."""
        return len(self._feeds)

    @property
    def reader_id(self) -> int | None:
        """The reader's Valkey connection (CLIENT ID) while it runs."""
        return self._reader_id

    async def subscribe(self, key: str) -> Feed[T]:
        """A feed of the entries the reader reads from now on (all after the log's end now)."""
        feed: Feed[T] = Feed(key, self._queue_limit)
        if key not in self._feeds:
            # Entries added after this are above `last`, so the reader will read them.
            last = await self._last_id(key)
            if key not in self._feeds:  # no other watcher added it meanwhile
                self._feeds[key] = set()
                self._positions[key] = last
                self._changes += 1
        self._feeds[key].add(feed)
        # Envoy hashes a job's watches to one planner replica: its log shows which one.
        watchers = len(self._feeds[key])
        log.info("watcher joined", extra={"fields": {"log": key, "watchers": watchers}})
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="valkey-hub")
            self.readers_started += 1
        try:
            await self._wake(lambda: self._seen >= self._changes)
        except BaseException:
            self._discard(feed)  # the caller never gets the feed to unsubscribe
            raise
        return feed

    async def unsubscribe(self, feed: Feed[T]) -> None:
        self._discard(feed)
        if not self._feeds:
            # Cut the reader's wait short, so no connection stays blocked for nobody.
            await self._wake(lambda: bool(self._feeds))

    def _discard(self, feed: Feed[T]) -> None:
        feeds = self._feeds.get(feed.key)
        if feeds is not None:
            feeds.discard(feed)
            if not feeds:
                del self._feeds[feed.key]
                del self._positions[feed.key]

    async def _last_id(self, key: str) -> str:
        newest = await self._client.xrevrange(key, count=1)
        return _text(newest[0][0]) if newest else "0-0"

    async def _wake(self, done: Callable[[], bool]) -> None:
        """Unblocks the reader's XREAD until `done()` holds or the reader has stopped. A
        reader between two XREADs cannot be unblocked: it is retried until it is blocked
        again or has already looked at the change."""
        delay = 0.0005
        while self._task is not None and not done():
            reader = self._reader_id
            try:
                if reader is not None and await self._client.client_unblock(reader):
                    return
            except valkey_errors.ValkeyError as e:
                # Valkey is gone: the reader fails on its own and tells every watcher.
                log.info(
                    "could not wake the event log reader", extra={"fields": {"error": repr(e)}}
                )
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, WAKE_MAX_DELAY_S)

    async def _run(self) -> None:
        reader = self._client.client()  # one connection of the pool, held by the reader
        loop = asyncio.get_running_loop()
        lost_since: float | None = None
        delay = RECONNECT_INITIAL_S
        try:
            while self._feeds:
                try:
                    if self._reader_id is None:
                        self._reader_id = int(await reader.client_id())
                    self._seen = self._changes
                    self.reads += 1
                    reply = await reader.xread(
                        dict(self._positions), count=READ_COUNT, block=self._block_ms
                    )
                except _LOST as e:
                    # A dropped connection reconnects on the next command.
                    self._reader_id = None
                    lost_since = loop.time() if lost_since is None else lost_since
                    if loop.time() - lost_since >= self._outage_seconds:
                        raise
                    log.info("event log reader reconnecting", extra={"fields": {"error": repr(e)}})
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RECONNECT_MAX_S)
                    continue
                if lost_since is not None:
                    lost_since, delay = None, RECONNECT_INITIAL_S
                    self.reconnects += 1
                    log.info("event log reader reconnected")
                self._dispatch(reply or [])
        except Exception as e:  # noqa: BLE001 - handed to every watcher, not swallowed
            log.warning("event log reader failed", extra={"fields": {"error": repr(e)}})
            self._fail_all(self._on_error(e))  # every watcher must hear of it
        finally:
            # In the same step as the loop's last check: a watcher that comes now starts a
            # new reader instead of joining one that is leaving.
            if self._task is asyncio.current_task():
                self._task = None
            self._reader_id = None
            await reader.aclose()

    def _dispatch(self, reply: list[Any]) -> None:
        for raw_key, entries in reply:
            key = _text(raw_key)
            feeds = self._feeds.get(key)
            if not entries or feeds is None:
                continue
            for entry_id, fields in entries:
                cursor = _text(entry_id)
                item = (position(cursor), self._decode(cursor, fields))
                for feed in feeds:
                    behind = feed.overflowed
                    feed.offer(item)
                    self.overflows += feed.overflowed and not behind
            # Forward only: a log re-followed during this read may already start later.
            if position(cursor) > position(self._positions[key]):
                self._positions[key] = cursor

    def _fail_all(self, error: Exception) -> None:
        for feeds in self._feeds.values():
            for feed in feeds:
                feed.fail(error)
        self._feeds.clear()
        self._positions.clear()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
