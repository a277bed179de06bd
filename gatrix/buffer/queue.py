"""The Redis buffer between `/track` and ClickHouse: pushing, claiming, acknowledging.

Events get their session id and device id inside the same Lua call that pushes them, so a
request costs one round trip shared with every concurrent request (group commit, see
`writer.py`). Flushers claim batches atomically (the waiting list renamed to a per-batch
processing list, recorded in a sorted set of claims scored by lease time), read them in
chunks and acknowledge only after ClickHouse took every chunk. A claim whose flusher died or
gave up is retried with the same batch id and chunk size, so each chunk's insert
deduplication token makes the retry harmless; the chunks known to be stored are skipped.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

from redis.asyncio import Redis

from gatrix.buffer.keys import VISIT_KEY_GRACE_MS, RedisKeys
from gatrix.buffer.rows import PUSH_SCRIPT, Pending, encode_push, received_ms

# The whole waiting list becomes the batch when it fits: RENAME costs the same for ten items
# or a million, where copying them inside a script cost ~5 us each (measured: the claim was a
# fifth of the flush) and blocked every push meanwhile. Only a longer list has its head copied.
_CLAIM = r"""
local n = redis.call('LLEN', KEYS[1])
if n == 0 then return 0 end
local whole, head = tonumber(ARGV[1]), tonumber(ARGV[4])
if n <= whole then
  redis.call('RENAME', KEYS[1], KEYS[3])
else
  n = head
  for j = 0, n - 1, 1000 do
    local part = redis.call('LRANGE', KEYS[1], j, math.min(j + 999, n - 1))
    redis.call('RPUSH', KEYS[3], unpack(part))
  end
  redis.call('LTRIM', KEYS[1], n, -1)
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
return n
"""

_RENEW = r"""
local now = ARGV[1]
for j = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', now, ARGV[j]) end
return 0
"""

_TAKE_STALE = r"""
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1)
if #ids == 0 then return false end
redis.call('ZADD', KEYS[1], ARGV[2], ids[1])
return ids[1]
"""


@dataclass(slots=True)
class Batch:
    id: str
    size: int  # items in the processing list; the list never changes until the ack
    retried: bool = False  # taken over from a claim that was released or whose flusher died
    done: int = 0  # items at the head known to be stored: a takeover starts after them

    @property
    def chunk(self) -> int:
        """Items per insert. Part of the id, so every flusher cuts a batch the same way and
        a retried chunk carries the same deduplication token as the first try."""
        _, _, chunk = self.id.partition("-")
        return int(chunk) if chunk else self.size  # a claim made before chunks: one insert

    def token(self, offset: int, table: str) -> str:
        """The insert deduplication token of the chunk starting at `offset`."""
        if "-" not in self.id:
            return f"{self.id}:{table}"  # as the flusher that made this claim named it
        return f"{self.id}@{offset}:{table}"


class Buffer:
    def __init__(self, redis: Redis, prefix: str = "gatrix") -> None:
        self.redis = redis
        self.keys = RedisKeys(prefix)
        self._push = redis.register_script(PUSH_SCRIPT)
        self._claim = redis.register_script(_CLAIM)
        self._take_stale = redis.register_script(_TAKE_STALE)
        self._renew = redis.register_script(_RENEW)

    # --- writing

    async def push(self, items: list[Pending], session_timeout_ms: int) -> tuple[list, int]:
        """Push items, assigning sessions; returns one `flag + session id` per item and depth."""
        joined, depth = await self._push(
            keys=[self.keys.buffer],
            args=[encode_push(items), session_timeout_ms, VISIT_KEY_GRACE_MS],
        )
        return joined.split(b","), int(depth)

    async def push_raw(self, items: list[bytes]) -> None:
        """Append items that carry their kind byte already (tests and recovery tools)."""
        if items:
            await self.redis.rpush(self.keys.buffer, *items)

    # --- flushing

    async def depth(self) -> int:
        return int(await self.redis.llen(self.keys.buffer))

    async def claim(
        self, max_items: int, now_ms: int | None = None, chunk: int = 0, whole: int = 0
    ) -> Batch | None:
        """Claim the waiting items: all of them when at most `whole` (default `max_items`)
        wait, else the first `max_items`. The batch is read and inserted `chunk` items at a
        time (default: in one piece)."""
        chunk = chunk or max_items
        batch_id = f"{uuid.uuid4().hex}-{chunk}"
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        size = await self._claim(
            keys=[self.keys.buffer, self.keys.claims, self.keys.processing(batch_id)],
            args=[max(whole, max_items), now_ms, batch_id, max_items],
        )
        return Batch(batch_id, int(size)) if size else None

    async def read(self, batch: Batch, start: int = 0, count: int | None = None) -> list[bytes]:
        """Items of a claimed batch, `count` of them from `start` (default: to the end)."""
        stop = -1 if count is None else start + count - 1
        return list(await self.redis.lrange(self.keys.processing(batch.id), start, stop))

    async def take_stale(self, lease_ms: int, now_ms: int | None = None) -> Batch | None:
        """Take over a claim whose flusher died or released it; None when there is none."""
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        batch_id = await self._take_stale(keys=[self.keys.claims], args=[now_ms - lease_ms, now_ms])
        if not batch_id:
            return None
        batch_id = batch_id.decode() if isinstance(batch_id, bytes) else str(batch_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.llen(self.keys.processing(batch_id))
            pipe.hget(self.keys.progress, batch_id)
            size, done = await pipe.execute()
        if not size:  # acked by a slow owner meanwhile
            await self.redis.zrem(self.keys.claims, batch_id)
            return None
        return Batch(batch_id, int(size), retried=True, done=int(done or 0))

    async def mark_done(self, batch: Batch, done: int) -> None:
        """Record that the first `done` items are stored, so a takeover skips them."""
        await self.redis.hset(self.keys.progress, batch.id, done)
        batch.done = done

    async def ack(self, batch: Batch, now_ms: int | None = None) -> None:
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        async with self.redis.pipeline(transaction=True) as pipe:
            # freed in the background: a whole-buffer batch can hold a million items
            pipe.unlink(self.keys.processing(batch.id))
            pipe.zrem(self.keys.claims, batch.id)
            pipe.hdel(self.keys.attempts, batch.id)
            pipe.hdel(self.keys.progress, batch.id)
            pipe.set(self.keys.last_flush, now_ms)
            await pipe.execute()

    async def release(self, batch: Batch) -> None:
        """Give a claim back (ClickHouse unavailable): score 0 makes it the first retried."""
        await self.redis.zadd(self.keys.claims, {batch.id: 0})

    async def renew(self, batch_ids: list[str], now_ms: int | None = None) -> None:
        """Refresh the lease of claims we still work on (never re-adds an acked one)."""
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        await self._renew(keys=[self.keys.claims], args=[now_ms, *batch_ids])

    async def attempts(self, batch: Batch) -> int:
        """How often inserting this batch failed as "ClickHouse unavailable"."""
        return int(await self.redis.hget(self.keys.attempts, batch.id) or 0)

    async def count_attempt(self, batch: Batch) -> None:
        await self.redis.hincrby(self.keys.attempts, batch.id, 1)

    async def dead_letter(self, item: bytes, error: str) -> None:
        """Keep an item ClickHouse refused (kind byte included, so it can be replayed)."""
        record = json.dumps(
            {"error": error[:2000], "item": item.decode("utf-8", "replace"), "at": time.time()}
        )
        await self.redis.rpush(self.keys.deadletter, record)

    async def dead_letters(self, limit: int = 100) -> list[dict]:
        rows = await self.redis.lrange(self.keys.deadletter, 0, limit - 1)
        return [json.loads(row) for row in rows]

    async def replay_dead_letters(self, limit: int = 10_000) -> int:
        """Move dead-lettered items back into the buffer (after fixing what rejected them)."""
        moved = 0
        while moved < limit:
            raw = await self.redis.lpop(self.keys.deadletter)
            if raw is None:
                break
            await self.redis.rpush(self.keys.buffer, json.loads(raw)["item"].encode())
            moved += 1
        return moved

    async def stats(self) -> dict[str, int | None]:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.llen(self.keys.buffer)
            pipe.zcard(self.keys.claims)
            pipe.llen(self.keys.deadletter)
            pipe.get(self.keys.last_flush)
            pipe.memory_usage(self.keys.buffer)
            pipe.lindex(self.keys.buffer, 0)
            pipe.zrange(self.keys.claims, 0, 4)
            depth, claims, dead, last, size, head, claimed = await pipe.execute()
        oldest = received_ms(head) if head else None
        claimed_size = 0
        if claimed:  # the oldest items are in claimed batches, if any: one more round trip
            async with self.redis.pipeline(transaction=False) as pipe:
                for batch_id in claimed:
                    key = self.keys.processing(batch_id.decode())
                    pipe.lindex(key, 0)
                    pipe.memory_usage(key)
                replies = await pipe.execute()
            for first, size_of in zip(replies[::2], replies[1::2], strict=True):
                claimed_size += int(size_of or 0)
                when = received_ms(first) if first else None
                if when is not None and (oldest is None or when < oldest):
                    oldest = when
        return {
            "depth": int(depth),
            "claimed_batches": int(claims),
            "dead_letters": int(dead),
            "last_flush_ms": int(last) if last else None,
            "bytes": int(size or 0) + claimed_size,
            # the waiting list alone: with `depth` it gives the size of one item
            "list_bytes": int(size or 0),
            "oldest_ms": oldest,
        }
