"""Admission of report reads: which caller's read goes to the store next, and who is told
to come back later.

The store runs few statements at once (embedded chDB: one), so reads queue. Left to the
engine's lock, they queue in threads: one client sending eighty heavy reports fills the
thread pool, and every other project's report, a login that needs a thread, and `/health`
wait behind all eighty. Here each caller (an API client, a logged-in user, a share link)
has its own queue, and a freed slot goes to the next caller in turn (round robin), so a
caller waits behind at most one read of each other busy caller, never behind a backlog.
A caller with too many reads already waiting is refused at once (429); a read that waited
longer than the wait limit is refused (503). Both say when to come back.

Reads run on the gate's own threads, as many as it has slots: the default thread pool
stays free for the metadata database, password checks and health checks.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from gatrix.clickhouse.store import QueryTooHeavy

T = TypeVar("T")

# Who is reading, set where a request is authorised. Reads with no caller share one queue.
caller: contextvars.ContextVar[str] = contextvars.ContextVar("gatrix_reader", default="")


class ReadsBusy(QueryTooHeavy):
    """Too many reads are waiting: `limit` is "queue" (this caller's own backlog is full) or
    "wait" (the store stayed busy for the whole wait limit). Every place that shows a
    report over budget shows this one the same way, with its own advice."""

    def __init__(self, limit: str, retry_after: int) -> None:
        super().__init__(limit, f"reads busy ({limit})")
        self.retry_after = retry_after

    @property
    def advice(self) -> str:
        if self.limit == "queue":
            return (
                "Too many of your reports are already waiting for this server: let them "
                f"finish, then ask again in {self.retry_after} seconds."
            )
        return f"The server is busy with other reports: ask again in {self.retry_after} seconds."


@dataclass
class GateStats:
    admitted: int = 0
    refused_queue: int = 0
    refused_wait: int = 0


class ReadGate:
    def __init__(self, slots: int, waiting_per_caller: int, wait_s: float) -> None:
        if slots < 1 or waiting_per_caller < 1:
            raise ValueError("a read gate needs at least one slot and one waiting place")
        self.slots = slots
        self.waiting_per_caller = waiting_per_caller
        self.wait_s = wait_s
        self.stats = GateStats()
        self._free = slots
        # callers with waiting reads, in turn order; each holds its waiters in arrival order
        self._queues: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()
        self._pool = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="gatrix-read")

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._queues.values())

    @property
    def running(self) -> int:
        return self.slots - self._free

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on one of the gate's threads once this caller's turn comes."""
        await self._enter(caller.get())
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        work = loop.run_in_executor(self._pool, functools.partial(context.run, fn, *args))
        # the slot is the thread's: it frees when the read ends, even if its asker went away
        work.add_done_callback(lambda _: self._leave())
        self.stats.admitted += 1
        return await asyncio.shield(work)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _enter(self, key: str) -> None:
        if self._free and not self._queues:
            self._free -= 1
            return
        queue = self._queues.get(key)
        if queue is not None and len(queue) >= self.waiting_per_caller:
            self.stats.refused_queue += 1
            raise ReadsBusy("queue", retry_after=5)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(key, deque()).append(waiter)
        try:
            async with asyncio.timeout(self.wait_s):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self._leave()  # granted just as its asker gave up: hand the slot on
            else:
                self._forget(key, waiter)
            if isinstance(exc, TimeoutError):
                self.stats.refused_wait += 1
                raise ReadsBusy("wait", retry_after=30) from None
            raise

    def _leave(self) -> None:
        """A slot came free: give it to the first waiter of the caller whose turn it is."""
        while self._queues:
            key, queue = next(iter(self._queues.items()))
            waiter = queue.popleft()
            if queue:
                self._queues.move_to_end(key)  # its next read waits for the others' turns
            else:
                del self._queues[key]
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1

    def _forget(self, key: str, waiter: asyncio.Future[None]) -> None:
        queue = self._queues.get(key)
        if queue is None:
            return
        try:
            queue.remove(waiter)
        except ValueError:
            return
        if not queue:
            del self._queues[key]
