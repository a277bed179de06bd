"""An ingest process: `gatrix serve --workers N` runs N-1 of these beside the primary.

One Python process spends ~30 µs of CPU per hit, so one process keeps one core busy and no
more. Ingestion only needs Redis, so these processes take the ingestion paths (`/track`,
`/track/batch` and the other senders' formats) on every other core: each one listens on the
server's port (SO_REUSEPORT: the kernel spreads connections over the processes), writes to the
same Redis buffer as the primary and answers exactly as it would. Everything else (dashboard,
insights API, admin, health) is forwarded to the primary, the only process that opens
ClickHouse. The primary starts and restarts them; one exits by itself when its primary is gone.

Started as `python -m gatrix.ingest.process --index K --primary-socket PATH --server TAG
--parent PID`,
with the primary's resolved settings as JSON on standard input.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import sys
import time
from typing import Any

from gatrix.buffer.keys import RedisKeys
from gatrix.buffer.queue import Buffer
from gatrix.buffer.supervisor import Supervisor
from gatrix.buffer.worker import enqueue_early_flush, make_queue
from gatrix.ingest.assembly import connect_redis, refresh_salts, start_ingest
from gatrix.ingest.forward import Forwarder
from gatrix.ingest.listen import listening_socket, server_config
from gatrix.ingest.routes import INGEST_PATHS
from gatrix.ingest.siblings import keep_in_touch
from gatrix.ingest.wire import WIRE_PATHS, WireApp
from gatrix.logs import configure as configure_logs
from gatrix.meta import models
from gatrix.metrics import RequestMetrics
from gatrix.settings import Settings

log = logging.getLogger("gatrix.ingest.process")
ORPHAN_CHECK_S = 1.0


class IngestProcess:
    """The ASGI app of an ingest process: ingestion here, the rest forwarded to the primary."""

    def __init__(self, settings: Settings, index: int, primary_socket: str, server: str) -> None:
        self.settings = settings
        self.index = index
        self.server = server
        self.root = settings.root_path
        self.forward = Forwarder(primary_socket)
        self.metrics = RequestMetrics()
        self.track_latency = self.metrics.histogram("track", 200)
        self.ingest: Any = None
        self.wire: Any = None
        self._stop: list[Any] = []  # shutdown steps, run in reverse order
        self._tasks: list[asyncio.Task[None]] = []

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":
            await send({"type": "websocket.close", "code": 1003})
            return
        path = scope["path"]
        root = self.root
        if root and (path == root or path.startswith(root + "/")):
            path = path[len(root) :] or "/"
            local = {**scope, "path": path, "raw_path": path.encode()}
        else:
            local = scope
        started = time.perf_counter()
        if path in WIRE_PATHS:
            status = await self.wire(local, receive, send)
            self.metrics.observe(WIRE_PATHS[path], status, time.perf_counter() - started)
        elif path in INGEST_PATHS:
            status = await self.ingest(local, receive, send)
            elapsed = time.perf_counter() - started
            if status == 200:
                self.track_latency.observe(elapsed)
            else:
                self.metrics.observe("track", status, elapsed)
        else:
            # the primary times and logs it; counting it here too would count it twice
            await self.forward(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as exc:
                    log.exception("ingest process %d could not start", self.index)
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def start(self) -> None:
        s = self.settings
        engine = models.make_engine(s.database_dsn)
        self._stop.append(engine.dispose)
        redis = connect_redis(s.redis_dsn)
        self._stop.append(redis.aclose)
        keys = RedisKeys(s.redis_prefix)
        buffer = Buffer(redis, s.redis_prefix)
        queue = make_queue(redis, keys.queue_name)

        async def early_flush() -> None:
            await enqueue_early_flush(queue)

        parts = await start_ingest(
            s,
            engine=engine,
            redis=redis,
            keys=keys,
            buffer=buffer,
            early_flush=early_flush,
            default_client_id=s.default_client_id or None,
            processes=s.process_count,
        )
        salts, writer, counters, directory = (
            parts.salts,
            parts.writer,
            parts.counters,
            parts.directory,
        )
        self.ingest = parts.ingest
        self.wire = WireApp(self.ingest, s.message_dedup_hours * 3_600_000)
        # /track answers 503 over the high-water mark here as in the primary; only the
        # primary restarts an embedded Redis or the flush worker
        supervisor = Supervisor(buffer, writer, s.buffer_high_water_mb * 1024 * 1024)
        await supervisor.observe()
        supervisor.start()
        self._stop += [self.forward.close, counters.stop, writer.close, supervisor.stop]
        self._tasks = [
            asyncio.create_task(refresh_salts(salts)),
            asyncio.create_task(
                keep_in_touch(
                    redis, keys, self.server, self.index, directory, self.metrics, counters
                )
            ),
        ]
        gc.collect()
        gc.freeze()  # as in the primary: startup's large tables out of the collector's sight

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for step in reversed(self._stop):
            try:
                result = step()
                if asyncio.iscoroutine(result):
                    await asyncio.wait_for(result, timeout=10)
            except Exception as exc:
                log.error("ingest process %d: stopping step failed: %s", self.index, exc)


async def _exit_when_orphaned(server: Any, parent: int) -> None:
    """The primary is gone (even by kill -9): stop taking connections and drain."""
    while os.getppid() == parent:
        await asyncio.sleep(ORPHAN_CHECK_S)
    log.warning("the primary process is gone; this ingest process stops")
    server.should_exit = True


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    parser = argparse.ArgumentParser(prog="gatrix-ingest")
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--primary-socket", required=True)
    parser.add_argument("--server", required=True)
    # the primary's pid, given rather than read: it may die before this process gets that far
    parser.add_argument("--parent", type=int, required=True)
    args = parser.parse_args(argv)
    settings = Settings.model_validate_json(sys.stdin.buffer.read())
    configure_logs(settings.log_level, settings.log_format)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the primary logs every request
    app = IngestProcess(settings, args.index, args.primary_socket, args.server)
    config = server_config(app)
    server = uvicorn.Server(config)
    sock = listening_socket(settings.host, settings.port)
    parent = args.parent

    async def run() -> None:
        watcher = asyncio.create_task(_exit_when_orphaned(server, parent))
        try:
            await server.serve(sockets=[sock])
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    import uvloop

    uvloop.run(run())
    return 0 if server.started else 1


if __name__ == "__main__":
    raise SystemExit(main())
