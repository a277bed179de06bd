"""Per-project outcome counters: accepted events and every drop/rejection reason.

Counting is a dict increment on the request path; a background task adds the deltas to a
Redis hash per UTC day every couple of seconds, so all processes' counts meet in one place
(the admin page and /metrics read them) without an extra round trip per request. The same
write records when each project last had an event accepted (to within that interval), so the
install check can say so before the events reach ClickHouse.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter

from redis.asyncio import Redis

from gatrix.buffer.keys import INGEST_STATS_TTL_S, RedisKeys


class IngestCounters:
    def __init__(self, redis: Redis, keys: RedisKeys) -> None:
        self.redis = redis
        self.keys = keys
        self.totals: Counter[tuple[str, str]] = Counter()  # since start, for /metrics
        self._pending: Counter[tuple[str, str]] = Counter()
        self._task: asyncio.Task[None] | None = None

    def count(self, project_id: str, outcome: str, n: int = 1) -> None:
        key = (project_id or "-", outcome)
        self.totals[key] += n
        self._pending[key] += n

    def day_key(self, day: str) -> str:
        return self.keys.ingest_stats(day)

    async def flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, Counter()
        now = time.time()
        key = self.day_key(time.strftime("%Y-%m-%d", time.gmtime(now)))
        accepted = {p for (p, outcome) in pending if outcome == "accepted" and p != "-"}
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for (project, outcome), n in pending.items():
                    pipe.hincrby(key, f"{project}|{outcome}", n)
                pipe.expire(key, INGEST_STATS_TTL_S)
                if accepted:
                    last = self.keys.last_accepted
                    pipe.zadd(last, dict.fromkeys(accepted, int(now * 1000)), gt=True)
                    pipe.expire(last, INGEST_STATS_TTL_S)
                await pipe.execute()
        except Exception:
            self._pending.update(pending)  # keep them for the next try

    async def read_day(self, day: str, project_id: str | None = None) -> dict[str, int]:
        raw = await self.redis.hgetall(self.day_key(day))
        out: dict[str, int] = {}
        for field, value in raw.items():
            project, _, outcome = field.decode().partition("|")
            if project_id is None or project == project_id:
                out[outcome] = out.get(outcome, 0) + int(value)
        return out

    async def last_accepted_ms(self, project_id: str) -> int | None:
        """When the project last had an event accepted (ms since the epoch), if ever recorded."""
        score = await self.redis.zscore(self.keys.last_accepted, project_id)
        return None if score is None else int(score)

    async def forget(self, project_id: str) -> None:
        """A deleted project's figures: a new project may be given the same id (its slug)."""
        for key in [k for k in self._pending if k[0] == project_id]:
            del self._pending[key]
        today = self.day_key(time.strftime("%Y-%m-%d", time.gmtime()))
        fields = [
            f for f in await self.redis.hkeys(today) if f.startswith(f"{project_id}|".encode())
        ]
        async with self.redis.pipeline(transaction=False) as pipe:
            if fields:
                pipe.hdel(today, *fields)
            pipe.zrem(self.keys.last_accepted, project_id)
            await pipe.execute()

    def start(self, every: float = 2.0) -> None:
        async def loop() -> None:
            while True:
                await asyncio.sleep(every)
                await self.flush()

        self._task = asyncio.create_task(loop(), name="gatrix-counters")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
