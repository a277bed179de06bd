"""Group commit: one in-flight Redis call carries every item queued since the last one.

Each request waits for the call that carried its items before it answers, so a 2xx always
means "in Redis"; while the supervisor says the buffer is over its high-water mark, items are
refused before they reach Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from redis.exceptions import OutOfMemoryError

from gatrix.buffer.queue import Buffer
from gatrix.buffer.rows import Pending, resolve_ids


class BufferUnavailable(ConnectionError):
    """Redis did not take the items: the request must fail (503), never pretend success."""


class BufferFull(BufferUnavailable):
    """The buffer is over its high-water mark (or Redis at its memory cap): 503, retry later."""


def _push_error(exc: Exception) -> BufferUnavailable:
    text = f"{type(exc).__name__}: {exc}"
    # at maxmemory with nothing left to evict Redis refuses writes: "OOM command not allowed
    # when used memory > 'maxmemory'" (redis-py strips the OOM prefix into the class name)
    if isinstance(exc, OutOfMemoryError) or "maxmemory" in str(exc):
        return BufferFull(text)
    return BufferUnavailable(text)


def _fail(entries: list[tuple[list[Pending], asyncio.Future]], error: Exception) -> None:
    for _, future in entries:
        if not future.done():
            future.set_exception(error)


def _swallow(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


class BufferWriter:
    def __init__(
        self,
        buffer: Buffer,
        session_timeout_ms: int,
        backlog_threshold: int,
        on_backlog: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.buffer = buffer
        self.session_timeout_ms = session_timeout_ms
        self.backlog_threshold = backlog_threshold
        self.on_backlog = on_backlog
        # each entry: the items of one request and the future that request awaits
        self._queue: list[tuple[list[Pending], asyncio.Future[list[tuple[str, str]]]]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._last_backlog_signal = 0.0
        # set by the supervisor while the buffer is over its high-water mark: new items are
        # refused before they reach Redis, so the cap is never hit by events
        self.refuse = ""
        # the buffer length at which the high-water mark is reached, from the supervisor's
        # last reading of bytes per item: the writer stops there without waiting for a tick
        self.high_water_items: int | None = None
        self.last_full_at = float("-inf")  # when Redis last refused a push for want of memory
        # the buffer's length as last seen (after our push, or by the supervisor's reading)
        self.known_depth = 0
        self.round_trips = 0
        self.items_sent = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="gatrix-buffer-writer")

    async def submit(self, item: Pending) -> tuple[str, str]:
        # submit_many's body inlined: this runs once per /track request
        if self._closing or self.refuse:
            raise self._refusal()
        future: asyncio.Future[list[tuple[str, str]]] = asyncio.get_running_loop().create_future()
        self._queue.append(([item], future))
        self._wakeup.set()
        return (await future)[0]

    async def submit_many(self, items: list[Pending]) -> list[tuple[str, str]]:
        """Queue one request's items; resolves to their (device id, session id) pairs."""
        if self._closing or self.refuse:
            raise self._refusal()
        future: asyncio.Future[list[tuple[str, str]]] = asyncio.get_running_loop().create_future()
        self._queue.append((items, future))
        self._wakeup.set()
        return await future

    def _refusal(self) -> BufferUnavailable:
        if self._closing:
            return BufferUnavailable("server is shutting down")
        return BufferFull(self.refuse)

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                entries, self._queue = self._queue, []
                await self._send(entries)
            if self._closing and not self._queue:
                return

    async def _send(self, entries: list[tuple[list[Pending], asyncio.Future]]) -> None:
        batch = [item for items, _ in entries for item in items]
        limit = self.high_water_items
        if limit is not None and self.known_depth + len(batch) > limit and self.known_depth:
            # concurrent large requests would all pass the check at their door: the mark is
            # enforced here too, so the buffer overshoots it by one group commit at most
            self.refuse = self.refuse or f"buffer near {self.known_depth} items, at the mark"
            _fail(entries, BufferFull(self.refuse))
            return
        self.round_trips += 1
        self.items_sent += len(batch)
        try:
            ids, depth = await self.buffer.push(batch, self.session_timeout_ms)
        except Exception as exc:  # Redis down: every request in this call gets the error
            error = _push_error(exc)
            if isinstance(error, BufferFull):
                self.last_full_at = time.monotonic()
            _fail(entries, error)
            return
        offset = 0
        for items, future in entries:
            results = [resolve_ids(item, ids[offset + n]) for n, item in enumerate(items)]
            offset += len(items)
            if not future.done():
                future.set_result(results)
        self.known_depth = depth
        if self.high_water_items is not None and depth >= self.high_water_items:
            self.refuse = self.refuse or f"buffer holds {depth} items, over the high-water mark"
        if depth >= self.backlog_threshold and self.on_backlog is not None:
            now = time.monotonic()
            if now - self._last_backlog_signal > 0.2:
                self._last_backlog_signal = now
                # not awaited: the next group commit must not wait for the job queue
                task = asyncio.create_task(self.on_backlog())
                task.add_done_callback(_swallow)

    async def close(self) -> None:
        """Send what is queued, then stop: SIGTERM loses nothing that was accepted."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, timeout=10)
            self._task = None
