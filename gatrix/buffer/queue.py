"""The Redis buffer between `/track` and ClickHouse: pushing, claiming, acknowledging.

Events get their session id and device id inside the same Lua call that pushes them, so a
request costs one round trip shared with every concurrent request (group commit, see
`writer.py`). Flushers claim batches atomically (LRANGE+LTRIM into a per-batch processing
list, recorded in a sorted set of claims scored by lease time) and acknowledge only after
ClickHouse took the batch. A claim whose flusher died or gave up is retried with the same
batch id, so the insert deduplication token makes the retry harmless.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

from redis.asyncio import Redis

from gatrix.buffer.keys import VISIT_KEY_GRACE_MS, RedisKeys
from gatrix.buffer.rows import PUSH_SCRIPT, Pending, encode_push, received_ms

_CLAIM = r"""
local items = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #items == 0 then return items end
redis.call('LTRIM', KEYS[1], #items, -1)
for j = 1, #items, 1000 do
  redis.call('RPUSH', KEYS[3], unpack(items, j, math.min(j + 999, #items)))
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
return items
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
    items: list[bytes]
    retried: bool = False  # taken over from a claim that was released or whose flusher died


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

    async def claim(self, max_items: int, now_ms: int | None = None) -> Batch | None:
        batch_id = uuid.uuid4().hex
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        items = await self._claim(
            keys=[self.keys.buffer, self.keys.claims, self.keys.processing(batch_id)],
            args=[max_items, now_ms, batch_id],
        )
        return Batch(batch_id, list(items)) if items else None

    async def take_stale(self, lease_ms: int, now_ms: int | None = None) -> Batch | None:
        """Take over a claim whose flusher died or released it; None when there is none."""
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        batch_id = await self._take_stale(keys=[self.keys.claims], args=[now_ms - lease_ms, now_ms])
        if not batch_id:
            return None
        batch_id = batch_id.decode() if isinstance(batch_id, bytes) else str(batch_id)
        items = await self.redis.lrange(self.keys.processing(batch_id), 0, -1)
        if not items:  # acked by a slow owner meanwhile
            await self.redis.zrem(self.keys.claims, batch_id)
            return None
        return Batch(batch_id, list(items), retried=True)

    async def ack(self, batch: Batch, now_ms: int | None = None) -> None:
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.processing(batch.id))
            pipe.zrem(self.keys.claims, batch.id)
            pipe.hdel(self.keys.attempts, batch.id)
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
