"""Keeps the process's moving parts alive and knows how full the buffer is.

Every half second: restart the embedded Redis if it died (it replays its append-only file),
restart the embedded flush worker if its task ended, and read the buffer's size. While the
buffered events pass the high-water mark the ingest writer refuses new ones (503 with
Retry-After) instead of letting Redis reach its memory cap; `/health` and `/metrics` read the
same `BufferState`, so they say why within a second of the cause, and recover as fast.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gatrix.buffer.embedded import EmbeddedRedis
from gatrix.buffer.queue import Buffer
from gatrix.buffer.writer import BufferWriter

log = logging.getLogger("gatrix.supervisor")
TICK_S = 0.5
# how long after Redis refused a write for want of memory /health keeps saying so
OOM_MEMORY_S = 10.0
RESUME_SHARE = 0.9
# fewer buffered items than this say too little about the size of one
MIN_ITEMS_FOR_ESTIMATE = 100


@dataclass
class BufferState:
    redis_up: bool = False
    error: str = ""
    depth: int | None = None
    bytes: int | None = None
    claimed_batches: int | None = None
    dead_letters: int | None = None
    last_flush_ms: int | None = None
    oldest_ms: int | None = None
    used_memory: int | None = None
    max_memory: int | None = None
    evicted_keys: int | None = None
    over_high_water: bool = False
    at_memory_cap: bool = False  # Redis refused a write for want of memory, moments ago

    def buffer_problem(self) -> str:
        """Why ingestion cannot take events now ("" when it can)."""
        if not self.redis_up:
            return "unknown while Redis is down"
        if self.at_memory_cap:
            return (
                f"Redis is full ({self.used_memory} of {self.max_memory} bytes) and refuses "
                "writes: /track answers 503 until memory is freed"
            )
        if self.over_high_water:
            return "over the high-water mark: /track answers 503 until the flush catches up"
        return ""

    def oldest_age_s(self, now_ms: int | None = None) -> float | None:
        if self.oldest_ms is None:
            return None
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        return max(0.0, (now_ms - self.oldest_ms) / 1000)


STOP_WAIT_S = 5.0


class Supervisor:
    def __init__(
        self,
        buffer: Buffer,
        writer: BufferWriter,
        high_water_bytes: int,
        embedded_redis: EmbeddedRedis | None = None,
        restart_worker: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self.buffer = buffer
        self.writer = writer
        self.high_water_bytes = high_water_bytes
        self.embedded_redis = embedded_redis
        self.restart_worker = restart_worker
        self.state = BufferState()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="gatrix-supervisor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            # waited for a bounded time, never joined: a tick stuck inside the Redis client
            # once held a server's whole shutdown until its watchdog killed it
            _, stuck = await asyncio.wait({self._task}, timeout=STOP_WAIT_S)
            if stuck:
                log.error("the supervisor did not stop in %.0f s; going on", STOP_WAIT_S)
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # the supervisor itself must never die
                log.exception("supervisor tick failed")
            await asyncio.sleep(TICK_S)

    async def tick(self) -> None:
        await self._keep_redis()
        if self.restart_worker is not None and await self.restart_worker():
            log.error("the flush worker had stopped; restarted it")
        await self.observe()

    async def _keep_redis(self) -> None:
        server = self.embedded_redis
        # Popen here, on the event loop's thread: the child's parent-death signal is bound to
        # the thread that started it, and this one lives as long as the server.
        if server is not None and server.relaunch_if_dead():
            await asyncio.to_thread(server.wait_ready)

    async def observe(self) -> BufferState:
        """Read the buffer's figures; decide whether ingestion must push back."""
        state = BufferState()
        try:
            stats = await asyncio.wait_for(self.buffer.stats(), timeout=2)
            memory = await asyncio.wait_for(self.buffer.redis.info(), timeout=2)
        except Exception as exc:
            state.error = f"{type(exc).__name__}: {exc}"[:300]
        else:
            state.redis_up = True
            state.depth = stats["depth"]
            state.bytes = stats["bytes"]
            state.claimed_batches = stats["claimed_batches"]
            state.dead_letters = stats["dead_letters"]
            state.last_flush_ms = stats["last_flush_ms"]
            state.oldest_ms = stats["oldest_ms"]
            state.used_memory = int(memory.get("used_memory", 0))
            state.max_memory = int(memory.get("maxmemory", 0)) or None
            state.evicted_keys = int(memory.get("evicted_keys", 0))
            # A full Redis first evicts visitor session keys (they carry a TTL; the buffer
            # does not), so being near the cap is no fault; refusing writes is.
            state.at_memory_cap = time.monotonic() - self.writer.last_full_at < OOM_MEMORY_S
            refusing = bool(self.writer.refuse)
            self.writer.known_depth = state.depth or 0  # the flush drains it meanwhile
            list_bytes = stats["list_bytes"]
            if (
                state.depth
                and list_bytes
                and state.depth >= MIN_ITEMS_FOR_ESTIMATE
                and not refusing
            ):
                # lets the writer stop between two ticks (see BufferWriter.high_water_items);
                # from the waiting list alone (claimed batches are not in `depth`), frozen
                # while refusing, so a new size estimate cannot flip the decision
                self.writer.high_water_items = max(
                    MIN_ITEMS_FOR_ESTIMATE, int(self.high_water_bytes / (list_bytes / state.depth))
                )
            # the writer's rule too, so /health and /track never disagree; once refusing,
            # accept again only below 90% of the mark, or each tick would flap
            share = RESUME_SHARE if refusing else 1.0
            items_limit = self.writer.high_water_items
            state.over_high_water = (state.bytes or 0) >= self.high_water_bytes * share or (
                items_limit is not None and (state.depth or 0) >= items_limit * share
            )
        was_refusing = bool(self.writer.refuse)
        self.state = state
        reason = "" if not state.redis_up or state.at_memory_cap else state.buffer_problem()
        if reason:
            self.writer.refuse = reason
            if not was_refusing:
                log.warning("refusing events (503): %s", reason)
        elif was_refusing:
            self.writer.refuse = ""
            log.info("the buffer has room again: accepting events")
        return state
