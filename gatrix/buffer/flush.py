"""Buffer → ClickHouse: claim a batch, insert it chunk by chunk with one statement per table
per chunk, acknowledge.

A claim takes everything waiting (up to `CLAIM_CHUNKS` chunks) in one constant-time step
(a longer list gives up its first `HEAD_CLAIM_ITEMS`);
the flusher then reads `batch_size` items at a time, so its memory stays bounded by a chunk
and each insert is large enough that the rollups' per-insert cost stays small. Order of work
in one run: first batches whose flusher died or gave up (same batch id and chunk size, so
the same deduplication tokens; chunks recorded as stored are skipped), then fresh batches
until the buffer holds less than a chunk or the run's time is up. A flusher renews the lease
of the batches it holds while it works, so a claim whose lease lapsed belongs to a dead
process and is taken over within seconds.

Failures are told apart by what they say, not assumed:
- **Unavailable** (ClickHouse down, table detached, merges behind): the batch is released
  untouched and retried; nothing is dead-lettered, because nothing is wrong with the rows.
- **Rejected** (ClickHouse refused the data): the batch is split, first by project so one
  project's rows can never hold back another's, then in halves, until the bad rows stand
  alone; those go to the dead-letter list with the error and everything else is stored.
- A batch that keeps failing as "unavailable" while ClickHouse answers is isolated the same
  way after a few attempts, so an error we misread cannot stop the buffer forever. Rows are
  only dead-lettered when some other part of the batch went in (proof that ClickHouse works).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field

from gatrix.buffer.queue import Batch, Buffer
from gatrix.buffer.rows import KIND_OF_TABLE, project_of, table_bodies
from gatrix.clickhouse.store import RowsRejected, Store, StoreUnavailable
from gatrix.metrics import Histogram

log = logging.getLogger("gatrix.flush")
CLAIM_LEASE_MS = 5_000
# A batch released this many times while ClickHouse answers is isolated row group by row group.
MAX_UNAVAILABLE_ATTEMPTS = 3
# Inserts that may fail during one isolation before we conclude ClickHouse itself is unwell.
ISOLATION_FAILURE_BUDGET = 24
# A holder stops renewing after this long, so a hung insert cannot keep a batch forever.
MAX_HOLD_S = 120.0
# A claim takes the whole waiting list when it holds at most this many chunks: a renamed
# list is free to claim, and a takeover resumes after the last chunk stored. One flusher then
# holds all of it, so with several flushers a backlog is shared only beyond this size.
CLAIM_CHUNKS = 20
# A longer list has its head copied inside a script, ~5 us an item during which Redis serves
# no one: at most this many items (~50 ms) per claim.
HEAD_CLAIM_ITEMS = 10_000
# A cancelled flush gives its claim back within this long, or leaves it to lapse.
RELEASE_WAIT_S = 2.0


@dataclass
class FlushStats:
    batches: int = 0
    rows: int = 0
    dead_letters: int = 0
    errors: int = 0
    isolations: int = 0
    unavailable: str = ""
    last_success: float = 0.0
    insert_seconds: float = 0.0  # spent inside ClickHouse inserts (the rest: Redis, Python)
    histogram: Histogram = field(default_factory=Histogram)


# one chunk of a batch: (JSONEachRow body, row count) per table, and items of unknown kind
_Chunk = tuple[dict[str, tuple[bytes, int]], list[bytes]]


@dataclass
class _Isolation:
    """Book-keeping of one batch being split: did anything go in, how much failed."""

    active: bool
    successes: int = 0
    failures: int = 0


class Flusher:
    def __init__(
        self,
        buffer: Buffer,
        store: Store,
        batch_size: int = 10_000,
        lease_ms: int = CLAIM_LEASE_MS,
    ) -> None:
        self.buffer = buffer
        self.store = store
        self.batch_size = batch_size
        self.lease_ms = lease_ms
        self.stats = FlushStats()
        self._held: dict[str, float] = {}

    async def run(self, max_seconds: float = 5.0) -> int:
        """Flush until the buffer is drained (or `max_seconds`); returns rows written."""
        renewer = asyncio.create_task(self._renew_leases())
        try:
            return await self._run(max_seconds)
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer

    async def _run(self, max_seconds: float) -> int:
        deadline = time.monotonic() + max_seconds
        written = 0
        head = min(self.batch_size, HEAD_CLAIM_ITEMS)
        while time.monotonic() < deadline:
            batch = await self.buffer.take_stale(self.lease_ms)
            if batch is None:
                batch = await self.buffer.claim(
                    head,
                    chunk=self.batch_size,
                    whole=self.batch_size * CLAIM_CHUNKS,
                )
            if batch is None:
                break
            self._held[batch.id] = time.monotonic()
            try:
                written += await self.write(batch)
            except StoreUnavailable as exc:
                self.stats.unavailable = str(exc)[:500]
                self.stats.errors += 1
                log.warning(
                    "ClickHouse unavailable, %d items stay in Redis: %s",
                    batch.size - batch.done,
                    str(exc)[:200],
                )
                await self.buffer.release(batch)
                break
            except asyncio.CancelledError:
                # stopped mid-batch (a shutdown cancels the flush job): the claim goes back at
                # once, so the server's last flush finishes it now rather than leaving the
                # tables not yet written (a chunk's profiles after its events) in Redis until
                # the next start; chunks already stored are skipped by their tokens
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.buffer.release(batch), RELEASE_WAIT_S)
                raise
            finally:
                self._held.pop(batch.id, None)
            self.stats.unavailable = ""
            self.stats.last_success = time.time()
            await self.buffer.ack(batch)
            # a whole list shorter than one insert: the buffer is drained (a head: more waits)
            if batch.size < self.batch_size and batch.size != head:
                break
        return written

    async def _renew_leases(self) -> None:
        """Keep our claims fresh while we work: only a dead flusher's claims go stale."""
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            now = time.monotonic()
            live = [bid for bid, since in self._held.items() if now - since < MAX_HOLD_S]
            if live:
                with contextlib.suppress(Exception):  # Redis blips: the claim may lapse
                    await self.buffer.renew(live)

    async def write(self, batch: Batch) -> int:
        """Insert every chunk of a claimed batch not yet known to be stored; rows written."""
        # only a batch seen before can have failed before: fresh claims skip the round trip
        attempts = await self.buffer.attempts(batch) if batch.retried else 0
        offsets = range(batch.done, batch.size, batch.chunk)
        rows = 0
        # The next chunk is read and split while ClickHouse parses this one (its insert runs
        # in a thread without the GIL): Redis and Python then cost the flush little time.
        ahead = self._read_ahead(batch, offsets, 0)
        try:
            for n, offset in enumerate(offsets):
                chunk = await ahead
                ahead = self._read_ahead(batch, offsets, n + 1)
                rows += await self._write_chunk(batch, offset, chunk, attempts)
                if offset + batch.chunk < batch.size:
                    await self.buffer.mark_done(batch, offset + batch.chunk)
        finally:
            ahead.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await ahead
        return rows

    def _read_ahead(self, batch: Batch, offsets: range, n: int) -> asyncio.Future[_Chunk]:
        if n >= len(offsets):
            done: asyncio.Future[_Chunk] = asyncio.get_running_loop().create_future()
            done.set_result(({}, []))
            return done
        return asyncio.ensure_future(self._read_chunk(batch, offsets[n]))

    async def _read_chunk(self, batch: Batch, offset: int) -> _Chunk:
        return table_bodies(await self.buffer.read(batch, offset, batch.chunk))

    async def _write_chunk(self, batch: Batch, offset: int, chunk: _Chunk, attempts: int) -> int:
        started = time.perf_counter()
        by_table, unknown = chunk
        for item in unknown:
            await self.buffer.dead_letter(item, "unknown buffer item kind")
            self.stats.dead_letters += 1
        isolation = _Isolation(active=attempts >= MAX_UNAVAILABLE_ATTEMPTS)
        if isolation.active:
            self.stats.isolations += 1
            log.warning("batch %s failed %d times; isolating its rows", batch.id, attempts)
        rows = 0
        try:
            for table, (body, count) in by_table.items():
                token = batch.token(offset, table)
                rows += await self._insert(table, body, count, token, isolation)
        except StoreUnavailable:
            await self.buffer.count_attempt(batch)
            raise
        duration = time.perf_counter() - started
        self.stats.batches += 1
        self.stats.rows += rows
        self.stats.histogram.observe(duration)
        return rows

    async def _insert(
        self, table: str, body: bytes, count: int, token: str, isolation: _Isolation
    ) -> int:
        try:
            await self._timed_insert(table, body, token)
        except RowsRejected as exc:
            self.stats.errors += 1
            if not isolation.active:
                isolation.active = True
                self.stats.isolations += 1
            return await self._isolate(table, body, count, token, isolation, exc)
        except StoreUnavailable as exc:
            if not isolation.active:
                raise
            self.stats.errors += 1
            return await self._isolate(table, body, count, token, isolation, exc)
        isolation.successes += 1
        return count

    async def _timed_insert(self, table: str, body: bytes, token: str) -> None:
        started = time.perf_counter()
        try:
            await asyncio.to_thread(self.store.insert_json, table, body, token)
        finally:
            self.stats.insert_seconds += time.perf_counter() - started

    async def _isolate(
        self,
        table: str,
        body: bytes,
        count: int,
        token: str,
        isolation: _Isolation,
        exc: Exception,
    ) -> int:
        isolation.failures += 1
        unavailable = isinstance(exc, StoreUnavailable)
        if isolation.failures > ISOLATION_FAILURE_BUDGET and not isolation.successes:
            raise StoreUnavailable(f"isolation found no row ClickHouse accepts: {exc}")
        if count == 1:
            return await self._lone_row(table, body, isolation, exc, unavailable)
        total = 0
        for n, part in enumerate(_split(body.split(b"\n"))):
            total += await self._insert(
                table, b"\n".join(part), len(part), f"{token}.{n}", isolation
            )
        return total

    async def _lone_row(
        self, table: str, line: bytes, isolation: _Isolation, exc: Exception, unavailable: bool
    ) -> int:
        # A lone row that fails may still mean a broken table, not a bad row: dead-letter it
        # only when ClickHouse demonstrably takes writes.
        writable = await asyncio.to_thread(self.store.events_writable)
        if not writable or (unavailable and not isolation.successes):
            raise StoreUnavailable(str(exc))
        await self.buffer.dead_letter(KIND_OF_TABLE[table] + line, f"{table}: {exc}")
        self.stats.dead_letters += 1
        log.warning(
            "dead-lettered a %s row of project %r: %s", table, project_of(line), str(exc)[:300]
        )
        return 0


def _split(lines: list[bytes]) -> list[list[bytes]]:
    """Rows of different projects apart first (deterministic order, so a retry after a crash
    produces the same sub-batches and deduplication tokens), then halves."""
    groups: dict[str, list[bytes]] = defaultdict(list)
    for line in lines:
        groups[project_of(line)].append(line)
    if len(groups) > 1:
        return [groups[key] for key in sorted(groups)]
    mid = len(lines) // 2
    return [lines[:mid], lines[mid:]]
