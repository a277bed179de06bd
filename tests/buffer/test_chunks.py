"""Whole-list claims inserted chunk by chunk: a batch taken over after a crash is cut the same
way, so every chunk's retry is deduplicated (rollups included) and stored chunks are skipped."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import uuid
from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis

from gatrix.buffer.flush import Flusher
from gatrix.buffer.queue import Buffer
from gatrix.clickhouse.store import Store
from gatrix.ingest.pipeline import ch_time

NOW = datetime.now(UTC).replace(microsecond=0)


def events(project: str, count: int) -> list[bytes]:
    """Buffer items as the push script leaves them: kind byte, session columns first."""
    out = []
    for n in range(count):
        at = int((NOW - timedelta(seconds=n)).timestamp() * 1000)
        row = {
            "session_id": f"s{n % 7}",
            "session_start": (NOW - timedelta(minutes=5)).timestamp(),
            "device_id": f"d{n % 7}",
            "id": str(uuid.uuid4()),
            "project_id": project,
            "name": "screen_view",
            "path": f"/{n}",
            "created_at": ch_time(at),
            "received_at": ch_time(at),
        }
        out.append(b"e" + json.dumps(row).encode())
    return out


def stored(store: Store, project: str, table: str = "events", column: str = "count()") -> int:
    return int(
        store.query_rows(
            f"SELECT {column} FROM {store.db}.{table} WHERE project_id = {{p:String}}",
            {"p": project},
        )[0][0]
    )


async def test_a_claim_takes_the_whole_list_when_it_fits_else_its_head(
    redis: Redis, prefix: str
) -> None:
    buffer = Buffer(redis, prefix)
    await buffer.push_raw(events("whole", 250))
    batch = await buffer.claim(100, chunk=100, whole=300)
    assert batch is not None and batch.size == 250 and batch.chunk == 100
    assert await buffer.depth() == 0
    assert len(await buffer.read(batch, 200, 100)) == 50
    await buffer.ack(batch)

    await buffer.push_raw(events("whole", 400))
    head = await buffer.claim(100, chunk=100, whole=300)
    assert head is not None and head.size == 100
    assert await buffer.depth() == 300
    await buffer.ack(head)
    assert (await buffer.stats())["claimed_batches"] == 0


async def test_one_claim_is_inserted_a_chunk_at_a_time(
    redis: Redis, prefix: str, scratch_store: Store
) -> None:
    buffer = Buffer(redis, prefix)
    await buffer.push_raw(events("chunks", 250))
    flusher = Flusher(buffer, scratch_store, batch_size=100)
    assert await flusher.run() == 250
    assert stored(scratch_store, "chunks") == 250
    assert flusher.stats.batches == 3  # inserts of 100, 100 and 50 rows
    stats = await buffer.stats()
    assert stats["depth"] == 0 and stats["claimed_batches"] == 0


async def test_a_batch_taken_over_mid_way_stores_nothing_twice(
    redis: Redis, prefix: str, scratch_store: Store
) -> None:
    buffer = Buffer(redis, prefix)
    await buffer.push_raw(events("takeover", 250))
    dying = Flusher(buffer, scratch_store, batch_size=100)
    batch = await buffer.claim(100, chunk=100, whole=2000)
    assert batch is not None and batch.size == 250
    await dying.write(batch)  # every chunk inserted... and the process dies before the ack
    # ...having recorded only the first chunk as stored
    await redis.hset(buffer.keys.progress, batch.id, 100)
    assert stored(scratch_store, "takeover") == 250

    survivor = Flusher(buffer, scratch_store, batch_size=100, lease_ms=0)
    taken = await buffer.take_stale(0)
    assert taken is not None and taken.id == batch.id and taken.done == 100
    await buffer.release(taken)
    assert await survivor.run() == 150  # the chunks after the recorded one, deduplicated
    assert stored(scratch_store, "takeover") == 250
    assert stored(scratch_store, "takeover", "hourly", "sum(pageviews)") == 250  # the rollups too
    assert stored(scratch_store, "takeover", "sessions", "sum(pageviews)") == 250
    assert (await buffer.stats())["claimed_batches"] == 0


async def test_a_flusher_with_another_chunk_size_cuts_a_batch_as_its_claimer_did(
    redis: Redis, prefix: str, scratch_store: Store
) -> None:
    buffer = Buffer(redis, prefix)
    await buffer.push_raw(events("resized", 250))
    batch = await buffer.claim(100, chunk=100, whole=2000)
    assert batch is not None
    await Flusher(buffer, scratch_store, batch_size=100).write(batch)  # dies before the ack
    await Flusher(buffer, scratch_store, batch_size=30, lease_ms=0).run()
    assert stored(scratch_store, "resized") == 250


async def test_a_claim_made_before_chunks_keeps_its_token(
    redis: Redis, prefix: str, scratch_store: Store
) -> None:
    # a batch id without a chunk size: claimed by an older flusher, which inserted the whole
    # batch as one block with the token "{batch id}:{table}" and died before its ack
    buffer = Buffer(redis, prefix)
    items = events("upgrade", 40)
    old_id = uuid.uuid4().hex
    await redis.rpush(buffer.keys.processing(old_id), *items)
    await redis.zadd(buffer.keys.claims, {old_id: 0})
    scratch_store.insert_json_rows("events", [i[1:] for i in items], f"{old_id}:events")

    await Flusher(buffer, scratch_store, batch_size=10, lease_ms=0).run()
    assert stored(scratch_store, "upgrade") == 40
    assert (await buffer.stats())["claimed_batches"] == 0


class _HeldProfiles:
    """The real store, except that an insert into `profiles` waits until it is let go:
    the moment a shutdown cancels the flush job, between a chunk's events and its profiles."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.reached = threading.Event()
        self.go = threading.Event()

    def insert_json(self, table: str, body: bytes, token: str) -> None:
        if table == "profiles":
            self.reached.set()
            self.go.wait(10)
        self.store.insert_json(table, body, token)


async def test_a_flush_cancelled_mid_chunk_gives_its_claim_back_for_the_last_flush(
    redis: Redis, prefix: str, scratch_store: Store
) -> None:
    buffer = Buffer(redis, prefix)
    profile = {
        "project_id": "cancelled",
        "profile_id": "p1",
        "email": "a@b.c",
        "updated_at": ch_time(int(NOW.timestamp() * 1000)),
    }
    await buffer.push_raw([*events("cancelled", 20), b"p" + json.dumps(profile).encode()])
    held = _HeldProfiles(scratch_store)
    job = asyncio.create_task(Flusher(buffer, held, lease_ms=60_000).run())  # type: ignore[arg-type]
    assert await asyncio.to_thread(held.reached.wait, 10)
    job.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await job
    held.go.set()  # the thread's insert finishes on its own; its token makes a retry a no-op
    # the server's last flush: the claim is still leased for a minute, yet it is taken now
    assert await Flusher(buffer, scratch_store, lease_ms=60_000).run() == 21
    assert stored(scratch_store, "cancelled") == 20
    assert stored(scratch_store, "cancelled", "profiles") == 1
    assert (await buffer.stats())["claimed_batches"] == 0
