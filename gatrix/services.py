"""The process's long-lived parts: built once, in order, by `Runtime.start`, and handed to
request handlers as one typed `Services` (Litestar dependency injection), never looked up.

Start: data dir → embedded Redis (if no URL) → metadata DB (+ migrations) → ClickHouse
(+ migrations) → salts and geo table → buffer writer → flush worker (embedded mode) →
supervisor. Stop runs backwards and drains: the writer sends what it holds, the worker
finishes its job, and in embedded mode one last flush empties the buffer into ClickHouse.
`gatrix worker` builds its flush parts with the same functions (`open_store`, `make_flusher`).
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import gc
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from saq import Queue, Worker
from sqlalchemy import text
from sqlalchemy.engine import Engine

from gatrix.buffer.embedded import EmbeddedRedis
from gatrix.buffer.flush import Flusher
from gatrix.buffer.keys import RedisKeys
from gatrix.buffer.queue import Buffer
from gatrix.buffer.supervisor import Supervisor
from gatrix.buffer.worker import (
    Retention,
    Sealing,
    enqueue_early_flush,
    make_queue,
    make_worker,
    stop_worker,
)
from gatrix.buffer.writer import BufferWriter
from gatrix.clickhouse.store import QueryBudget, Store
from gatrix.ingest.assembly import connect_redis, refresh_salts, start_ingest
from gatrix.ingest.counters import IngestCounters
from gatrix.ingest.enrich.geo import GeoLookup
from gatrix.ingest.enrich.useragent import is_bot, parse_user_agent
from gatrix.ingest.pool import IngestPool, PoolPlan
from gatrix.ingest.routes import IngestApp
from gatrix.ingest.siblings import announce_change
from gatrix.ingest.wire import WireApp
from gatrix.insights import sealed
from gatrix.insights.admission import ReadGate
from gatrix.meta import models
from gatrix.meta.projects import Directory, default_client_id
from gatrix.metrics import RequestMetrics
from gatrix.retention import Expired, expire_all
from gatrix.settings import Settings
from gatrix.web.auth import WebAuth
from gatrix.web.tracker import bundle as tracker_bundle
from gatrix.web.vendor import HTMX, PLOTLY, read_bundle

log = logging.getLogger("gatrix")
# `gatrix serve` exits this long after a stop began if it has not ended by itself
STOP_WATCHDOG_S = 50


def open_reads(settings: Settings) -> ReadGate:
    # the store runs one statement at a time (embedded chDB by nature, a server's client over
    # one session): a second slot keeps the next read ready on its lock, so the engine never
    # idles between two callers' reads, and a caller waits behind at most two of another's
    slots = settings.query_slots or 2
    return ReadGate(slots, settings.query_queue, settings.query_wait_seconds)


def open_store(settings: Settings) -> Store:
    budget = QueryBudget(
        settings.query_max_seconds, settings.query_max_rows, settings.query_max_memory_mb
    )
    return Store(
        settings.clickhouse_dsn, settings.clickhouse_database, settings.clickhouse_cluster, budget
    )


def retention_job(engine: Engine, store: Store) -> Retention:
    """The worker's daily retention pass over this process's metadata and ClickHouse."""

    async def keep(now: datetime, only: str | None = None) -> list[Expired]:
        return await expire_all(engine, store, now, only)

    return keep


def sealing_job(store: Store) -> Sealing:
    """The worker's minutely pass that seals the session hours that ended."""

    async def seal() -> int:
        return await asyncio.to_thread(sealed.seal, store)

    return seal


def make_flusher(settings: Settings, buffer: Buffer, store: Store) -> Flusher:
    return Flusher(
        buffer, store, settings.flush_batch_size, int(settings.flush_lease_seconds * 1000)
    )


@dataclass(frozen=True)
class Services:
    """Everything a request handler may use, all of it started."""

    settings: Settings
    engine: Engine
    store: Store
    redis: Redis
    keys: RedisKeys
    buffer: Buffer
    directory: Directory  # client lookups with a short cache: ingest and the insights API
    writer: BufferWriter
    counters: IngestCounters
    web_auth: WebAuth
    ingest: IngestApp
    wire: WireApp  # Umami, Plausible and Segment senders, through `ingest`
    flusher: Flusher
    supervisor: Supervisor
    request_metrics: RequestMetrics
    embedded_redis: EmbeddedRedis | None  # None with a configured Redis: nothing to supervise
    started_at: float
    plan: PoolPlan | None  # this server's ingest processes, if it runs any
    processes: Callable[[], list[dict[str, Any]]]  # their state, for /health
    reads: ReadGate  # every report's reads go through it, one caller at a time in turn


class Runtime:
    """Starts and stops the services, and owns the background tasks that keep them going."""

    def __init__(
        self,
        settings: Settings,
        run_worker: bool | None = None,
        request_metrics: RequestMetrics | None = None,
        owns_process: bool = False,
        plan: PoolPlan | None = None,
    ) -> None:
        self.settings = settings
        # `gatrix serve --workers N`: the ingest processes this primary keeps running
        self.plan = plan
        self.pool: IngestPool | None = None
        # True under `gatrix serve`: a stop that hangs may end the process (see stop)
        self.owns_process = owns_process
        self.run_worker = settings.embedded_worker if run_worker is None else run_worker
        self.request_metrics = request_metrics or RequestMetrics()
        self._services: Services | None = None
        self._queue: Queue | None = None
        self._worker: Worker | None = None
        self._worker_task: asyncio.Task[None] | None = None
        self._salt_task: asyncio.Task[None] | None = None
        self._retention: Retention | None = None
        self._seal: Sealing | None = None

    @property
    def services(self) -> Services:
        if self._services is None:
            raise RuntimeError("the runtime has not started")
        return self._services

    async def start(self) -> Services:
        s = self.settings
        s.data_path.mkdir(parents=True, exist_ok=True)
        _keep_private(s.data_path)
        embedded_redis = None
        redis_url = s.redis_dsn
        if not redis_url:
            embedded_redis = EmbeddedRedis(s.data_path, s.buffer_max_mb)
            # started on the event loop's thread, not a pool thread: see EmbeddedRedis.launch
            redis_url = embedded_redis.start()
        engine = models.make_engine(s.database_dsn)
        store = open_store(s)
        if s.auto_migrate:
            await asyncio.to_thread(models.migrate, engine)
            await asyncio.to_thread(store.migrate)
        redis = connect_redis(redis_url)
        keys = RedisKeys(s.redis_prefix)
        buffer = Buffer(redis, s.redis_prefix)
        self._queue = make_queue(redis, keys.queue_name)
        flusher = make_flusher(s, buffer, store)
        default_id = s.default_client_id or await asyncio.to_thread(default_client_id, engine)
        parts = await start_ingest(
            s,
            engine=engine,
            redis=redis,
            keys=keys,
            buffer=buffer,
            early_flush=self._early_flush,
            default_client_id=default_id,
            processes=1 + (self.plan.count if self.plan is not None else 0),
        )
        salts, geo, writer = parts.salts, parts.geo, parts.writer
        counters, directory, ingest = parts.counters, parts.directory, parts.ingest
        if self.plan is not None and self.plan.count:
            # a client change made here reaches the ingest processes' caches within a second
            directory.on_forget = lambda: _spawn_quietly(announce_change(redis, keys))
        self._salt_task = asyncio.create_task(refresh_salts(salts))
        self._retention = retention_job(engine, store)
        self._seal = sealing_job(store)
        if self.run_worker:
            await self._start_worker(flusher)
        supervisor = Supervisor(
            buffer,
            writer,
            s.buffer_high_water_mb * 1024 * 1024,
            embedded_redis,
            self._revive_worker if self.run_worker else None,
        )
        self._services = Services(
            settings=s,
            engine=engine,
            store=store,
            redis=redis,
            keys=keys,
            buffer=buffer,
            directory=directory,
            writer=writer,
            counters=counters,
            web_auth=WebAuth(redis, keys),
            ingest=ingest,
            wire=WireApp(ingest, s.message_dedup_hours * 3_600_000),
            flusher=flusher,
            supervisor=supervisor,
            request_metrics=self.request_metrics,
            embedded_redis=embedded_redis,
            started_at=time.time(),
            plan=self.plan if self.plan is not None and self.plan.count else None,
            processes=self._processes,
            reads=open_reads(s),
        )
        await supervisor.observe()
        supervisor.start()
        # Startup loaded large static tables (UA regexes, crawler list, geo ranges): move them
        # out of the collector's sight, or every full collection rescans them (p99 spikes).
        await asyncio.to_thread(_warm_up, geo)
        gc.collect()
        gc.freeze()
        if self.plan is not None and self.plan.count:
            # started last: they need the buffer's Redis, the migrated metadata and the
            # default client, and must not take hits the primary could not yet flush
            child = s.model_copy(
                update={"redis_url": redis_url, "default_client_id": default_id or ""}
            )
            self.pool = IngestPool(self.plan, child)
            self.pool.start()
        return self._services

    def _processes(self) -> list[dict[str, Any]]:
        primary: dict[str, Any] = {"index": 0, "pid": os.getpid(), "alive": True, "role": "primary"}
        if self.pool is None:
            return [primary]
        return [primary, *({**p, "role": "ingest"} for p in self.pool.status())]

    async def _start_worker(self, flusher: Flusher) -> None:
        assert self._queue is not None  # made before the worker, in start()
        await self._queue.connect()
        self._worker = make_worker(
            self._queue,
            flusher,
            embedded=True,
            interval=self.settings.flush_interval,
            keep=self._retention,
            seal=self._seal,
        )
        self._worker_task = asyncio.create_task(self._worker.start(), name="gatrix-flush-worker")

    async def _revive_worker(self) -> bool:
        """Start the embedded flush worker again if its task ended (e.g. Redis vanished)."""
        if self._worker_task is None or not self._worker_task.done():
            return False
        with contextlib.suppress(BaseException):
            self._worker_task.result()
        await self._start_worker(self.services.flusher)
        return True

    async def _early_flush(self) -> None:
        if self._queue is not None:
            await enqueue_early_flush(self._queue)

    async def stop(self) -> None:
        services = self._services
        if services is None:
            return
        # A stop that hangs loses nothing (the buffer is on disk), but it would keep a
        # deploy waiting with no word of why: after the watchdog's delay every thread's
        # stack goes to stderr and the process exits.
        if self.owns_process:
            faulthandler.dump_traceback_later(STOP_WATCHDOG_S, exit=True)
        started = time.monotonic()
        if self.pool is not None:
            # first: what they accepted goes into the buffer before the last flush below
            await _bounded("ingest processes", self.pool.stop(), 20)
        log.info("stopping: draining the buffer")
        await services.supervisor.stop()
        if self._salt_task is not None:
            self._salt_task.cancel()
        await _bounded("writer", services.writer.close(), 10)
        await _bounded("counters", services.counters.stop(), 5)
        if self._worker is not None and self._worker_task is not None:
            await _bounded("worker", stop_worker(self._worker, self._worker_task), 15)
        if self.run_worker:
            await _bounded("last flush", services.flusher.run(max_seconds=10.0), 15)
        await _bounded("redis client", services.redis.aclose(), 5)
        services.reads.close()
        services.store.close()
        services.engine.dispose()
        if services.embedded_redis is not None:
            services.embedded_redis.stop()
        if self.plan is not None and self.plan.count:
            # the private socket's directory (made by `gatrix serve`); listeners are closed
            shutil.rmtree(os.path.dirname(self.plan.primary_socket), ignore_errors=True)
        log.info("stopped in %.1f s", time.monotonic() - started)


async def _bounded(step: str, work: Any, seconds: float) -> None:
    """One shutdown step, logged and never allowed to stop the ones after it."""
    began = time.monotonic()
    try:
        await asyncio.wait_for(work, timeout=seconds)
    except TimeoutError:
        log.error("stopping: %s did not finish in %.0f s; going on", step, seconds)
    except Exception as exc:
        log.error("stopping: %s failed: %s", step, _short(exc))
    else:
        log.info("stopping: %s done in %.2f s", step, time.monotonic() - began)


async def health_report(services: Services) -> tuple[bool, dict[str, Any]]:
    checks: dict[str, Any] = {}
    state = await services.supervisor.observe()
    checks["redis"] = {"ok": True} if state.redis_up else {"ok": False, "error": state.error}
    problem = state.buffer_problem()
    checks["buffer"] = {"ok": False, "error": problem} if problem else {"ok": True}
    try:
        answer = await asyncio.wait_for(asyncio.to_thread(services.store.check), timeout=5)
        checks["clickhouse"] = {"ok": True, "embedded": services.store.embedded}
        if answer == "busy":
            checks["clickhouse"]["busy"] = True
        if services.flusher.stats.unavailable:
            checks["clickhouse"] = {"ok": False, "error": services.flusher.stats.unavailable}
    except Exception as exc:
        checks["clickhouse"] = {"ok": False, "error": _short(exc)}
    try:
        await asyncio.wait_for(asyncio.to_thread(_ping_sql, services.engine), timeout=5)
        checks["database"] = {"ok": True, "dialect": services.engine.dialect.name}
    except Exception as exc:
        checks["database"] = {"ok": False, "error": _short(exc)}
    last = state.last_flush_ms
    ok = all(c["ok"] for c in checks.values())
    return ok, {
        "status": "ok" if ok else "degraded",
        **checks,
        "buffer": {
            **checks["buffer"],
            "depth": state.depth,
            "bytes": state.bytes,
            "high_water_bytes": services.settings.buffer_high_water_mb * 1024 * 1024,
            "oldest_event_age_s": state.oldest_age_s(),
            "claimed_batches": state.claimed_batches,
            "dead_letters": state.dead_letters,
        },
        "last_flush": (datetime.fromtimestamp(last / 1000, UTC).isoformat() if last else None),
        "ingest": {
            "group_commits": services.writer.round_trips,
            "items": services.writer.items_sent,
        },
        "reads": {"running": services.reads.running, "waiting": services.reads.waiting},
        "redis_restarts": services.embedded_redis.restarts if services.embedded_redis else 0,
        "processes": services.processes(),
        "uptime_s": round(time.time() - services.started_at, 1),
    }


def _keep_private(data_path: Path) -> None:
    """The data dir holds password hashes, share tokens, visitor salts and raw events: only
    its owner may enter it. A directory someone else owns is left as it is, with a warning."""
    info = data_path.stat()
    if info.st_uid != os.getuid():
        log.warning("%s belongs to another user; its permissions are left as they are", data_path)
    elif info.st_mode & 0o077:
        data_path.chmod(0o700)


def _warm_up(geo: GeoLookup) -> None:
    """Load the lazily built parsers now, before the first visitor pays for them."""
    ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"
    parse_user_agent(ua)
    is_bot(ua)
    geo.lookup("8.8.8.8")
    tracker_bundle()
    read_bundle(PLOTLY)
    read_bundle(HTMX)


def _spawn_quietly(work: Any) -> None:
    """Run a best-effort coroutine from synchronous code on the running loop."""
    try:
        asyncio.get_running_loop().create_task(work)
    except RuntimeError:  # no loop (a CLI path): nothing to tell
        work.close()


def _ping_sql(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]
