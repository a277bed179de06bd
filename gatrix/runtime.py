"""The process's long-lived parts, started and stopped in order by the app's lifespan.

Start: data dir → embedded Redis (if no URL) → metadata DB (+ migrations) → ClickHouse
(+ migrations) → salts and geo table → buffer writer → flush worker (embedded mode).
Stop runs backwards and drains: the writer sends what it holds, the worker finishes its job,
and in embedded mode one last flush empties the buffer into ClickHouse.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import time
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from sqlalchemy import text
from sqlalchemy.engine import Engine

from gatrix.buffer.embedded import EmbeddedRedis
from gatrix.buffer.flush import Flusher
from gatrix.buffer.queue import Buffer, BufferWriter
from gatrix.buffer.supervisor import Supervisor
from gatrix.buffer.worker import enqueue_early_flush, make_queue, make_worker, stop_worker
from gatrix.clickhouse.store import Store
from gatrix.ingest.counters import IngestCounters
from gatrix.ingest.enrich.geo import GeoLookup
from gatrix.ingest.enrich.useragent import is_bot, parse_user_agent
from gatrix.ingest.pipeline import Context
from gatrix.ingest.routes import IngestApp, IngestConfig
from gatrix.ingest.salts import SESSION_TIMEOUT_MS, SaltBook
from gatrix.meta import models
from gatrix.meta.projects import Directory, default_client_id
from gatrix.metrics import RequestMetrics
from gatrix.settings import Settings
from gatrix.web.auth import WebAuth
from gatrix.web.tracker import bundle as tracker_bundle
from gatrix.web.vendor import plotly_bundle

log = logging.getLogger("gatrix")
# Concurrent requests share one group-commit call, so few connections serve many requests;
# the pool is still sized on purpose for health checks, the worker and bursts.
REDIS_MAX_CONNECTIONS = 64


def connect_redis(url: str) -> Redis:
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=REDIS_MAX_CONNECTIONS,
        timeout=5,
        socket_timeout=10,
        socket_connect_timeout=3,
        health_check_interval=30,
    )
    return Redis(connection_pool=pool)


class Runtime:
    def __init__(self, settings: Settings, run_worker: bool | None = None) -> None:
        self.settings = settings
        self.run_worker = settings.embedded_worker if run_worker is None else run_worker
        self.embedded_redis: EmbeddedRedis | None = None
        self.engine: Engine | None = None
        self.store: Store | None = None
        self.redis: Redis | None = None
        self.buffer: Buffer | None = None
        self.writer: BufferWriter | None = None
        self.counters: IngestCounters | None = None
        self.web_auth: WebAuth | None = None
        self.ingest: IngestApp | None = None
        self.flusher: Flusher | None = None
        self.queue: Any = None
        self.worker: Any = None
        self._worker_task: asyncio.Task[None] | None = None
        self.supervisor: Supervisor | None = None
        self.started_at = time.time()
        self.request_metrics = RequestMetrics()

    async def start(self) -> None:
        s = self.settings
        s.data_path.mkdir(parents=True, exist_ok=True)
        redis_url = s.redis_dsn
        if not redis_url:
            self.embedded_redis = EmbeddedRedis(s.data_path, s.buffer_max_mb)
            # started on the event loop's thread, not a pool thread: see EmbeddedRedis.launch
            redis_url = self.embedded_redis.start()
        self.engine = models.make_engine(s.database_dsn)
        self.store = Store(s.clickhouse_dsn, s.clickhouse_database, s.clickhouse_cluster)
        if s.auto_migrate:
            await asyncio.to_thread(models.migrate, self.engine)
            await asyncio.to_thread(self.store.migrate)
        salts = SaltBook(self.engine)
        await asyncio.to_thread(salts.ensure, datetime.now(UTC).date())
        geo = GeoLookup(s.geoip_path)
        await asyncio.to_thread(geo.load)

        self.redis = connect_redis(redis_url)
        self.buffer = Buffer(self.redis, s.redis_prefix)
        self.queue = make_queue(self.redis, s.redis_prefix)
        self.flusher = Flusher(
            self.buffer, self.store, s.flush_batch_size, int(s.flush_lease_seconds * 1000)
        )
        self.writer = BufferWriter(
            self.buffer, SESSION_TIMEOUT_MS, s.flush_batch_size, self._early_flush
        )
        self.writer.start()
        self.web_auth = WebAuth(self.redis, s.redis_prefix)
        self.counters = IngestCounters(self.redis, s.redis_prefix)
        self.counters.start()
        default_id = s.default_client_id or await asyncio.to_thread(default_client_id, self.engine)
        self.ingest = IngestApp(
            IngestConfig(
                max_body_bytes=s.max_body_bytes,
                trusted_proxies=tuple(
                    ipaddress.ip_network(c, strict=False) for c in s.trusted_proxies
                ),
                default_client_id=default_id,
            ),
            Directory(self.engine),
            self.writer,
            Context(
                salts=salts,
                geo=geo,
                keys=self.buffer.keys,
                max_event_age_ms=s.max_event_age_days * 86_400_000,
            ),
            self.counters,
        )
        self._salt_task = asyncio.create_task(self._refresh_salts(salts))
        if self.run_worker:
            await self.start_worker()
        self.supervisor = Supervisor(
            self.buffer,
            self.writer,
            s.buffer_high_water_mb * 1024 * 1024,
            self.embedded_redis,
            self._revive_worker if self.run_worker else None,
        )
        await self.supervisor.observe()
        self.supervisor.start()
        # Startup loaded large static tables (UA regexes, crawler list, geo ranges): move them
        # out of the collector's sight, or every full collection rescans them (p99 spikes).
        await asyncio.to_thread(_warm_up, geo)
        gc.collect()
        gc.freeze()

    async def start_worker(self) -> None:
        assert self.queue is not None and self.flusher is not None
        await self.queue.connect()
        self.worker = make_worker(
            self.queue, self.flusher, embedded=True, interval=self.settings.flush_interval
        )
        self._worker_task = asyncio.create_task(self.worker.start(), name="gatrix-flush-worker")

    async def _revive_worker(self) -> bool:
        """Start the embedded flush worker again if its task ended (e.g. Redis vanished)."""
        if self._worker_task is None or not self._worker_task.done():
            return False
        with contextlib.suppress(BaseException):
            self._worker_task.result()
        await self.start_worker()
        return True

    async def _early_flush(self) -> None:
        if self.queue is not None:
            await enqueue_early_flush(self.queue)

    async def _refresh_salts(self, salts: SaltBook) -> None:
        # Create tomorrow's salt well before midnight so no request waits on the database.
        while True:
            await asyncio.sleep(600)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(salts.ensure, datetime.now(UTC).date())

    async def stop(self) -> None:
        if self.supervisor is not None:
            await self.supervisor.stop()
        if getattr(self, "_salt_task", None):
            self._salt_task.cancel()
        if self.writer is not None:
            await self.writer.close()
        if self.counters is not None:
            await self.counters.stop()
        if self.worker is not None and self._worker_task is not None:
            await stop_worker(self.worker, self._worker_task)
        if self.run_worker and self.flusher is not None:
            with contextlib.suppress(Exception):
                await self.flusher.run(max_seconds=10.0)
        if self.redis is not None:
            with contextlib.suppress(Exception):
                await self.redis.aclose()
        if self.store is not None:
            self.store.close()
        if self.engine is not None:
            self.engine.dispose()
        if self.embedded_redis is not None:
            self.embedded_redis.stop()

    async def health(self) -> tuple[bool, dict[str, Any]]:
        checks: dict[str, Any] = {}
        state = await self.supervisor.observe() if self.supervisor else None
        if state is not None and state.redis_up:
            checks["redis"] = {"ok": True}
        else:
            checks["redis"] = {"ok": False, "error": state.error if state else "not started"}
        if state is not None and state.over_high_water:
            checks["buffer"] = {
                "ok": False,
                "error": "over the high-water mark: /track answers 503 until the flush catches up",
            }
        else:
            checks["buffer"] = {"ok": True}
        try:
            assert self.store is not None
            await asyncio.wait_for(asyncio.to_thread(self.store.command, "SELECT 1"), timeout=5)
            checks["clickhouse"] = {"ok": True, "embedded": self.store.embedded}
            if self.flusher and self.flusher.stats.unavailable:
                checks["clickhouse"] = {"ok": False, "error": self.flusher.stats.unavailable}
        except Exception as exc:
            checks["clickhouse"] = {"ok": False, "error": _short(exc)}
        try:
            assert self.engine is not None
            await asyncio.wait_for(asyncio.to_thread(_ping_sql, self.engine), timeout=5)
            checks["database"] = {"ok": True, "dialect": self.engine.dialect.name}
        except Exception as exc:
            checks["database"] = {"ok": False, "error": _short(exc)}
        last = state.last_flush_ms if state else None
        ok = all(c["ok"] for c in checks.values())
        return ok, {
            "status": "ok" if ok else "degraded",
            **checks,
            "buffer": {
                **checks["buffer"],
                "depth": state.depth if state else None,
                "bytes": state.bytes if state else None,
                "high_water_bytes": self.settings.buffer_high_water_mb * 1024 * 1024,
                "oldest_event_age_s": state.oldest_age_s() if state else None,
                "claimed_batches": state.claimed_batches if state else None,
                "dead_letters": state.dead_letters if state else None,
            },
            "last_flush": (datetime.fromtimestamp(last / 1000, UTC).isoformat() if last else None),
            "ingest": {
                "group_commits": self.writer.round_trips if self.writer else 0,
                "items": self.writer.items_sent if self.writer else 0,
            },
            "redis_restarts": self.embedded_redis.restarts if self.embedded_redis else 0,
            "uptime_s": round(time.time() - self.started_at, 1),
        }


def _warm_up(geo: GeoLookup) -> None:
    """Load the lazily built parsers now, before the first visitor pays for them."""
    ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"
    parse_user_agent(ua)
    is_bot(ua)
    geo.lookup("8.8.8.8")
    tracker_bundle()
    plotly_bundle()


def _ping_sql(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]
