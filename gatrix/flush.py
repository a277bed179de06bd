"""Buffer → ClickHouse: claim a batch, insert it with one statement per table, acknowledge.

Order of work in one run: first batches whose flusher died or gave up (same batch id, so the
same deduplication token), then fresh batches until the buffer is short of a full batch or
the run's time is up. When ClickHouse is unavailable the batch is released untouched and the
run stops; when ClickHouse rejects rows, the batch is split until the bad rows are isolated and
those go to the dead-letter list with the error, so one bad row never blocks the rest.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field

from gatrix.buffer import KINDS, Batch, Buffer
from gatrix.metrics import Histogram
from gatrix.store import RowsRejected, Store, StoreUnavailable

log = logging.getLogger("gatrix.flush")
CLAIM_LEASE_MS = 60_000


@dataclass
class FlushStats:
    batches: int = 0
    rows: int = 0
    dead_letters: int = 0
    errors: int = 0
    unavailable: str = ""
    histogram: Histogram = field(default_factory=Histogram)


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

    async def run(self, max_seconds: float = 5.0) -> int:
        """Flush until the buffer is drained (or `max_seconds`); returns rows written."""
        deadline = time.monotonic() + max_seconds
        written = 0
        while time.monotonic() < deadline:
            batch = await self.buffer.take_stale(self.lease_ms)
            if batch is None:
                batch = await self.buffer.claim(self.batch_size)
            if batch is None:
                break
            try:
                written += await self.write(batch)
            except StoreUnavailable as exc:
                self.stats.unavailable = str(exc)[:500]
                self.stats.errors += 1
                log.warning(
                    "ClickHouse unavailable, %d items stay in Redis: %s",
                    len(batch.items),
                    str(exc)[:200],
                )
                await self.buffer.release(batch)
                break
            self.stats.unavailable = ""
            await self.buffer.ack(batch)
            if len(batch.items) < self.batch_size:
                break
        return written

    async def write(self, batch: Batch) -> int:
        started = time.perf_counter()
        by_table: dict[str, list[bytes]] = defaultdict(list)
        for item in batch.items:
            table = KINDS.get(item[0]) if item else None
            if table is None:
                await self.buffer.dead_letter(item, "unknown buffer item kind")
                self.stats.dead_letters += 1
                continue
            by_table[table].append(item[1:])
        rows = 0
        for table, lines in by_table.items():
            rows += await self._insert(table, lines, f"{batch.id}:{table}")
        duration = time.perf_counter() - started
        self.stats.batches += 1
        self.stats.rows += rows
        self.stats.histogram.observe(duration)
        return rows

    async def _insert(self, table: str, lines: list[bytes], token: str) -> int:
        try:
            await asyncio.to_thread(self.store.insert_json_rows, table, lines, token)
            return len(lines)
        except RowsRejected as exc:
            self.stats.errors += 1
            if len(lines) == 1:
                # A lone row that fails may still mean a broken table, not a bad row.
                if not await asyncio.to_thread(self.store.events_writable):
                    raise StoreUnavailable(str(exc)) from exc
                await self.buffer.dead_letter(lines[0], f"{table}: {exc}")
                self.stats.dead_letters += 1
                return 0
            mid = len(lines) // 2
            return await self._insert(table, lines[:mid], token + ".0") + await self._insert(
                table, lines[mid:], token + ".1"
            )
