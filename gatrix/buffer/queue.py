"""The Redis buffer between `/track` and ClickHouse: the only module that knows its keys.

Items are one kind byte followed by a JSONEachRow line: `e` events, `p` profile updates,
`c` profile counter deltas. Events get their session id and device id inside the same Lua call
that pushes them, so a request costs one round trip shared with every concurrent request
(group commit): the writer sends what has queued up while the previous call was in flight,
and each request waits for the call that carried its event before answering.

Flushers claim batches atomically (LRANGE+LTRIM into a per-batch processing list, recorded
in a sorted set of claims) and acknowledge only after ClickHouse took the batch. A claim whose
flusher died or gave up is retried, with the same batch id, so the insert deduplication token
makes the retry harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec
from redis.asyncio import Redis

from gatrix.ids import new_id

_json = msgspec.json.Encoder().encode
KINDS = {b"e"[0]: "events", b"p"[0]: "profiles", b"c"[0]: "profile_counters"}
KIND_OF_TABLE = {table: bytes([kind]) for kind, table in KINDS.items()}
# where an item says when the server received it (events; profile updates)
_RECEIVED = re.compile(rb'"(?:received_at|updated_at)":"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)')

_PUSH = r"""
-- ARGV[1] holds every item of the group commit as one blob (one argument instead of eight
-- per item: packing arguments was the writer's main cost). Items are separated by \0 and
-- their fields by \n: kind, ts, candidate session id, key, previous-salt key, device id,
-- previous-salt device id (both JSON-encoded, so neither separator can occur), payload.
local buf, blob, timeout = KEYS[1], ARGV[1], tonumber(ARGV[2])
local out, vals = {}, {}
local pos, len = 1, #blob
while pos <= len do
  local stop = string.find(blob, '\0', pos, true) or (len + 1)
  local rec = string.sub(blob, pos, stop - 1)
  pos = stop + 1
  local f, p = {}, 1
  for k = 1, 7 do
    local e = string.find(rec, '\n', p, true)
    f[k] = string.sub(rec, p, e - 1)
    p = e + 1
  end
  local payload = string.sub(rec, p)
  if f[1] == 'r' then
    vals[#vals + 1] = payload
    out[#out + 1] = ''
  else
    local ts, sid, key, prevkey, did, flag = tonumber(f[2]), f[3], f[4], f[5], f[6], '0'
    local cur = redis.call('GET', key)
    if (not cur) and prevkey ~= key then
      -- a visit that started under yesterday's salt keeps that identity while it is active
      local prev = redis.call('GET', prevkey)
      if prev then
        local p1 = string.find(prev, '|', 1, true)
        local p2 = string.find(prev, '|', p1 + 1, true)
        local last = tonumber(string.sub(prev, p1 + 1, (p2 or 0) - 1))
        if math.abs(ts - last) <= timeout then
          cur, key, did, flag = prev, prevkey, f[7], '1'
        end
      end
    end
    -- session state: "id|last event ms|start ms"; the start travels with every event so
    -- the sessions rollup can key a session by when it began
    local store, start, seen = true, ts, ts
    if cur then
      local s1 = string.find(cur, '|', 1, true)
      local s2 = string.find(cur, '|', s1 + 1, true)
      local last = tonumber(string.sub(cur, s1 + 1, (s2 or 0) - 1))
      if ts - last <= timeout and last - ts <= timeout then
        sid = string.sub(cur, 1, s1 - 1)
        start = s2 and tonumber(string.sub(cur, s2 + 1)) or last
        if ts < last then seen = last end
      elseif ts < last then
        store = false -- a late event from long ago must not end the live session
      end
    end
    if store then
      redis.call('SET', key, sid .. '|' .. seen .. '|' .. start, 'PX', timeout + 60000)
    end
    local started = string.format('%d.%03d', math.floor(start / 1000), start % 1000)
    vals[#vals + 1] = 'e{"session_id":"' .. sid .. '","session_start":' .. started ..
      ',"device_id":' .. did .. ',' .. payload
    out[#out + 1] = flag .. sid
  end
end
for j = 1, #vals, 1000 do
  redis.call('RPUSH', buf, unpack(vals, j, math.min(j + 999, #vals)))
end
return {table.concat(out, ','), redis.call('LLEN', buf)}
"""

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
class Pending:
    """One item waiting for the writer. `session` is False for items without a session."""

    payload_tail: bytes
    ts_ms: int = 0
    session_key: str = ""
    prev_session_key: str = ""
    device_id: str = ""
    prev_device_id: str = ""
    session: bool = True


@dataclass(slots=True)
class Batch:
    id: str
    items: list[bytes]


class BufferKeys:
    def __init__(self, prefix: str) -> None:
        self.buffer = f"{prefix}:buffer"
        self.claims = f"{prefix}:claims"
        self.deadletter = f"{prefix}:deadletter"
        self.last_flush = f"{prefix}:last_flush"
        self.attempts = f"{prefix}:claim_attempts"
        self.session_prefix = f"{prefix}:s:"

    def processing(self, batch_id: str) -> str:
        return f"{self.buffer}:processing:{batch_id}"

    def session(self, project_id: str, device_id: str) -> str:
        # JSON-encoded: a client-chosen device id cannot smuggle the push call's separators
        return f"{self.session_prefix}{project_id}:{_json(device_id).decode()}"


class Buffer:
    def __init__(self, redis: Redis, prefix: str = "gatrix") -> None:
        self.redis = redis
        self.keys = BufferKeys(prefix)
        self._push = redis.register_script(_PUSH)
        self._claim = redis.register_script(_CLAIM)
        self._take_stale = redis.register_script(_TAKE_STALE)
        self._renew = redis.register_script(_RENEW)

    # --- writing

    async def push(self, items: list[Pending], session_timeout_ms: int) -> tuple[list, int]:
        """Push items, assigning sessions; returns one `flag + session id` per item and depth."""
        records: list[bytes] = []
        for item in items:
            if item.session:
                did = _json(item.device_id)
                prev = _json(item.prev_device_id) if item.prev_device_id else did
                head = (
                    f"e\n{item.ts_ms}\n{new_id()}\n{item.session_key}\n"
                    f"{item.prev_session_key or item.session_key}\n"
                ).encode()
                records.append(b"".join((head, did, b"\n", prev, b"\n", item.payload_tail)))
            else:
                records.append(b"r\n\n\n\n\n\n\n" + item.payload_tail)
        joined, depth = await self._push(
            keys=[self.keys.buffer], args=[b"\0".join(records), session_timeout_ms]
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
        return Batch(batch_id, list(items))

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
        for batch_id in claimed:
            key = self.keys.processing(batch_id.decode())
            first = await self.redis.lindex(key, 0)
            when = received_ms(first) if first else None
            size = (size or 0) + int(await self.redis.memory_usage(key) or 0)
            if when is not None and (oldest is None or when < oldest):
                oldest = when
        return {
            "depth": int(depth),
            "claimed_batches": int(claims),
            "dead_letters": int(dead),
            "last_flush_ms": int(last) if last else None,
            "bytes": int(size or 0),
            "oldest_ms": oldest,
        }


def received_ms(item: bytes) -> int | None:
    """When the server received a buffered item (epoch ms), if the item says."""
    match = _RECEIVED.search(item, 0, 4096)
    if match is None:
        return None
    at = datetime.strptime(match.group(1).decode(), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    return int(at.timestamp() * 1000)


def resolve_ids(item: Pending, result: bytes) -> tuple[str, str]:
    """(device id, session id) of a pushed item from its `flag + session id` result, where
    flag 1 means the visitor kept yesterday's id (a visit crossing midnight)."""
    if not item.session or not result:
        return "", ""
    used_prev = result[:1] == b"1"
    device = item.prev_device_id if used_prev and item.prev_device_id else item.device_id
    return device, result[1:].decode()


class BufferUnavailable(ConnectionError):
    """Redis did not take the items: the request must fail (503), never pretend success."""


class BufferFull(BufferUnavailable):
    """The buffer is over its high-water mark (or Redis at its memory cap): 503, retry later."""


def _push_error(exc: Exception) -> BufferUnavailable:
    text = f"{type(exc).__name__}: {exc}"
    # noeviction at maxmemory: Redis refuses writes with an OOM error
    return BufferFull(text) if "OOM" in str(exc) else BufferUnavailable(text)


def _swallow(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


class BufferWriter:
    """Group commit: one in-flight Redis call carries every item queued since the last one."""

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
        self.round_trips += 1
        self.items_sent += len(batch)
        try:
            ids, depth = await self.buffer.push(batch, self.session_timeout_ms)
        except Exception as exc:  # Redis down: every request in this call gets the error
            error = _push_error(exc)
            for _, future in entries:
                if not future.done():
                    future.set_exception(error)
            return
        offset = 0
        for items, future in entries:
            results = [resolve_ids(item, ids[offset + n]) for n, item in enumerate(items)]
            offset += len(items)
            if not future.done():
                future.set_result(results)
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
