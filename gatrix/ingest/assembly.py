"""The ingest side of a process, put together: what `/track` and the other senders' paths need
(Redis buffer writer, counters, client directory, salts, geo table, pipeline context).

The primary process and every ingest process build it with the same function, so a hit is
handled the same way whichever process accepted its connection. Nothing here opens ClickHouse:
an ingest process must not, because embedded chDB belongs to one process only.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import BlockingConnectionPool, Redis
from sqlalchemy.engine import Engine

from gatrix.buffer.keys import RedisKeys
from gatrix.buffer.queue import Buffer
from gatrix.buffer.writer import BufferWriter
from gatrix.ingest.counters import IngestCounters
from gatrix.ingest.enrich.geo import GeoLookup
from gatrix.ingest.pipeline import Context
from gatrix.ingest.routes import IngestApp, IngestConfig
from gatrix.ingest.salts import SESSION_TIMEOUT_MS, SaltBook
from gatrix.meta.projects import Directory, failure_share
from gatrix.settings import Settings

# Concurrent requests share one group-commit call, so few connections serve many requests;
# the pool is still sized on purpose for health checks, the worker and bursts.
REDIS_MAX_CONNECTIONS = 64
# tomorrow's salt is made this often, well before midnight, so no request waits on the database
SALT_REFRESH_S = 600


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


@dataclass(frozen=True)
class IngestParts:
    """The started ingest side of a process; its writer and counters run until stopped."""

    ingest: IngestApp
    writer: BufferWriter
    counters: IngestCounters
    directory: Directory
    salts: SaltBook
    geo: GeoLookup


async def start_ingest(
    settings: Settings,
    *,
    engine: Engine,
    redis: Redis,
    keys: RedisKeys,
    buffer: Buffer,
    early_flush: Callable[[], Awaitable[None]],
    default_client_id: str | None,
    processes: int,
) -> IngestParts:
    """Load the tables, start the writer and the counters, and build the handler, the same
    in the primary and in every ingest process (`processes`: how many share the port)."""
    salts, geo = SaltBook(engine), GeoLookup(settings.geoip_path)
    await load_tables(salts, geo)
    writer = BufferWriter(buffer, SESSION_TIMEOUT_MS, settings.flush_batch_size, early_flush)
    writer.start()
    counters = IngestCounters(redis, keys)
    counters.start()
    directory = Directory(engine)
    directory.secret_failures = failure_share(processes)
    ingest = _ingest_app(settings, directory, writer, counters, salts, geo, keys, default_client_id)
    return IngestParts(ingest, writer, counters, directory, salts, geo)


def _ingest_app(
    settings: Settings,
    directory: Directory,
    writer: BufferWriter,
    counters: IngestCounters,
    salts: SaltBook,
    geo: GeoLookup,
    keys: RedisKeys,
    default_client_id: str | None,
) -> IngestApp:
    return IngestApp(
        IngestConfig(
            max_body_bytes=settings.max_body_bytes,
            trusted_proxies=tuple(
                ipaddress.ip_network(c, strict=False) for c in settings.trusted_proxies
            ),
            default_client_id=default_client_id,
        ),
        directory,
        writer,
        Context(
            salts=salts,
            geo=geo,
            keys=keys,
            max_event_age_ms=settings.max_event_age_days * 86_400_000,
        ),
        counters,
    )


async def load_tables(salts: SaltBook, geo: GeoLookup) -> None:
    """Today's salts and the geo table, off the event loop (both block)."""
    await asyncio.to_thread(salts.ensure, datetime.now(UTC).date())
    await asyncio.to_thread(geo.load)


async def refresh_salts(salts: SaltBook) -> None:
    while True:
        await asyncio.sleep(SALT_REFRESH_S)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(salts.ensure, datetime.now(UTC).date())
