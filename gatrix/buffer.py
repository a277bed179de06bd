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
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import msgspec
from redis.asyncio import Redis

_json = msgspec.json.Encoder().encode
KINDS = {b"e"[0]: "events", b"p"[0]: "profiles", b"c"[0]: "profile_counters"}

_PUSH = r"""
local buf = KEYS[1]
local n = tonumber(ARGV[1])
local timeout = tonumber(ARGV[2])
local out, vals = {}, {}
for i = 0, n - 1 do
  local a = 3 + i * 6
  if ARGV[a] == 'r' then
    vals[#vals + 1] = ARGV[a + 5]
    out[#out + 1] = ''
    out[#out + 1] = ''
  else
    local ts = tonumber(ARGV[a + 1])
    -- device ids arrive JSON-encoded (client-chosen ids may hold quotes); flag = which one
    local sid, did, flag = ARGV[a + 2], ARGV[a + 3], '0'
    local key, prevkey = KEYS[2 + i * 2], KEYS[3 + i * 2]
    local cur = redis.call('GET', key)
    if (not cur) and prevkey ~= key then
      -- a visit that started under yesterday's salt keeps that identity while it is active
      local prev = redis.call('GET', prevkey)
      if prev then
        local last = tonumber(string.sub(prev, string.find(prev, '|', 1, true) + 1))
        if math.abs(ts - last) <= timeout then
          cur, key, did, flag = prev, prevkey, ARGV[a + 4], '1'
        end
      end
    end
    local store = true
    if cur then
      local sep = string.find(cur, '|', 1, true)
      local last = tonumber(string.sub(cur, sep + 1))
      if ts - last <= timeout and last - ts <= timeout then
        sid = string.sub(cur, 1, sep - 1)
        if ts < last then ts = last end
      elseif ts < last then
        store = false -- a late event from long ago must not end the live session
      end
    end
    if store then redis.call('SET', key, sid .. '|' .. ts, 'PX', timeout + 60000) end
    vals[#vals + 1] = 'e{"session_id":"' .. sid .. '","device_id":' .. did .. ',' .. ARGV[a + 5]
    out[#out + 1] = flag
    out[#out + 1] = sid
  end
end
for j = 1, #vals, 1000 do
  redis.call('RPUSH', buf, unpack(vals, j, math.min(j + 999, #vals)))
end
out[#out + 1] = redis.call('LLEN', buf)
return out
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
    future: asyncio.Future[tuple[str, str]] = field(default=None)  # type: ignore[assignment]


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
        self.session_prefix = f"{prefix}:s:"

    def processing(self, batch_id: str) -> str:
        return f"{self.buffer}:processing:{batch_id}"

    def session(self, project_id: str, device_id: str) -> str:
        return f"{self.session_prefix}{project_id}:{device_id}"


class Buffer:
    def __init__(self, redis: Redis, prefix: str = "gatrix") -> None:
        self.redis = redis
        self.keys = BufferKeys(prefix)
        self._push = redis.register_script(_PUSH)
        self._claim = redis.register_script(_CLAIM)
        self._take_stale = redis.register_script(_TAKE_STALE)

    # --- writing

    async def push(self, items: list[Pending], session_timeout_ms: int) -> tuple[list, int]:
        keys: list[str] = [self.keys.buffer]
        args: list[object] = [len(items), session_timeout_ms]
        for item in items:
            if item.session:
                keys += (item.session_key, item.prev_session_key or item.session_key)
                args += (
                    "e",
                    item.ts_ms,
                    str(uuid.uuid4()),
                    _json(item.device_id),
                    _json(item.prev_device_id or item.device_id),
                    item.payload_tail,
                )
            else:
                keys += (self.keys.buffer, self.keys.buffer)
                args += ("r", 0, "", "", "", item.payload_tail)
        out = await self._push(keys=keys, args=args)
        return out[:-1], int(out[-1])

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
            pipe.set(self.keys.last_flush, now_ms)
            await pipe.execute()

    async def release(self, batch: Batch) -> None:
        """Give a claim back (ClickHouse unavailable): score 0 makes it the first retried."""
        await self.redis.zadd(self.keys.claims, {batch.id: 0})

    async def dead_letter(self, item: bytes, error: str) -> None:
        record = json.dumps(
            {"error": error[:2000], "item": item.decode("utf-8", "replace"), "at": time.time()}
        )
        await self.redis.rpush(self.keys.deadletter, record)

    async def dead_letters(self, limit: int = 100) -> list[dict]:
        rows = await self.redis.lrange(self.keys.deadletter, 0, limit - 1)
        return [json.loads(row) for row in rows]

    async def stats(self) -> dict[str, int | None]:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.llen(self.keys.buffer)
            pipe.zcard(self.keys.claims)
            pipe.llen(self.keys.deadletter)
            pipe.get(self.keys.last_flush)
            depth, claims, dead, last = await pipe.execute()
        return {
            "depth": int(depth),
            "claimed_batches": int(claims),
            "dead_letters": int(dead),
            "last_flush_ms": int(last) if last else None,
        }


def resolve_ids(item: Pending, flag: bytes | str, session_id: bytes | str) -> tuple[str, str]:
    """(device id, session id) of a pushed item; flag b"1" = yesterday's visitor id kept."""
    if not item.session:
        return "", ""
    sid = session_id.decode() if isinstance(session_id, bytes) else session_id
    used_prev = flag in (b"1", "1")
    return (item.prev_device_id if used_prev and item.prev_device_id else item.device_id), sid


class BufferUnavailable(ConnectionError):
    """Redis did not take the items: the request must fail (503), never pretend success."""


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
        self._queue: list[Pending] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._last_backlog_signal = 0.0
        self.round_trips = 0
        self.items_sent = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="gatrix-buffer-writer")

    async def submit(self, item: Pending) -> tuple[str, str]:
        if self._closing:
            raise BufferUnavailable("server is shutting down")
        item.future = asyncio.get_running_loop().create_future()
        self._queue.append(item)
        self._wakeup.set()
        return await item.future

    async def submit_many(self, items: list[Pending]) -> list[tuple[str, str]]:
        if self._closing:
            raise BufferUnavailable("server is shutting down")
        loop = asyncio.get_running_loop()
        for item in items:
            item.future = loop.create_future()
        self._queue.extend(items)
        self._wakeup.set()
        return list(await asyncio.gather(*(item.future for item in items)))

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                batch, self._queue = self._queue, []
                await self._send(batch)
            if self._closing and not self._queue:
                return

    async def _send(self, batch: list[Pending]) -> None:
        self.round_trips += 1
        self.items_sent += len(batch)
        try:
            ids, depth = await self.buffer.push(batch, self.session_timeout_ms)
        except Exception as exc:  # Redis down: every request in this call gets the error
            error = BufferUnavailable(f"{type(exc).__name__}: {exc}")
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(error)
            return
        for n, item in enumerate(batch):
            if not item.future.done():
                did, sid = ids[2 * n], ids[2 * n + 1]
                item.future.set_result(
                    (
                        did.decode() if isinstance(did, bytes) else did,
                        sid.decode() if isinstance(sid, bytes) else sid,
                    )
                )
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
