"""SAQ queue and worker for flushing. Embedded mode runs the worker inside the web process
(chDB admits one process per data directory); server mode runs `gatrix worker` processes.

Every worker ticks once per flush interval and enqueues a `flush` job keyed by the time
slot, so however many workers run, each slot gets one job; the ingest writer enqueues an
early one when the buffer passes a batch. Slot keys (rather than one fixed cron key) matter
after a crash: a job left "active" by a killed process cannot block the jobs that follow.

The daily `retention` job (gatrix/retention.py) is a SAQ cron job: its fixed key means one
run per day however many workers there are, and its timeout lets the sweeper clear a run a
killed process left "active" before the next day's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from saq import CronJob, Queue, Worker

if TYPE_CHECKING:  # ingest processes enqueue flushes without loading the ClickHouse client
    from gatrix.buffer.flush import Flusher

JOB_OPTIONS = {"timeout": 60, "ttl": 60, "retries": 1}
# every day at 03:17 UTC: off the hour, when most sites are quiet
RETENTION_CRON = "17 3 * * *"
RETENTION_TIMEOUT_S = 6 * 3600
# a retention pass given the time it runs at (and optionally one project); returns what it cut
Retention = Callable[[datetime, str | None], Awaitable[list[Any]]]
# every minute: build the session hours that ended (gatrix/insights/sealed.py); a run builds
# a week of hours at most, so a first backfill spreads over several
SEAL_CRON = "* * * * *"
SEAL_TIMEOUT_S = 600
# a sealing pass; returns how many hours it built
Sealing = Callable[[], Awaitable[int]]


async def flush(ctx: dict[str, Any]) -> int:
    flusher: Flusher = ctx["flusher"]
    return await flusher.run(max_seconds=5.0)


async def retention(ctx: dict[str, Any], *, only: str | None = None) -> list[dict[str, Any]]:
    keep: Retention = ctx["retention"]
    return [r.summary() for r in await keep(datetime.now(UTC), only)]


async def seal_sessions(ctx: dict[str, Any]) -> int:
    seal: Sealing = ctx["seal"]
    return await seal()


def make_queue(redis: Any, name: str) -> Queue:
    from saq.queue.redis import RedisQueue

    return RedisQueue(redis, name=name)


async def enqueue_flush(queue: Queue, interval: float, label: str = "flush") -> None:
    slot = int(time.time() / interval)
    await queue.enqueue("flush", key=f"{label}:{slot}", **JOB_OPTIONS)


async def enqueue_early_flush(queue: Queue) -> None:
    await enqueue_flush(queue, 0.2, label="flush-early")


async def _tick(queue: Queue, interval: float) -> None:
    while True:
        with contextlib.suppress(Exception):  # Redis blips must not kill the schedule
            await enqueue_flush(queue, interval)
        await asyncio.sleep(interval - (time.time() % interval))


class _QuietStop(logging.Filter):
    """SAQ warns at every stop that its upkeep loops "did not finish within the shutdown grace
    period" (they never do; they are cancelled by design). Our own drain follows the stop, so
    the line would only alarm operators."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "did not finish within the shutdown grace period" not in record.getMessage()


logging.getLogger("saq").addFilter(_QuietStop())


class EmbeddedWorker(Worker):
    # Signals belong to the web server in embedded mode; it stops us on shutdown.
    SIGNALS: list = []


def make_worker(
    queue: Queue,
    flusher: Flusher,
    embedded: bool,
    interval: float,
    keep: Retention | None = None,
    seal: Sealing | None = None,
) -> Worker:
    async def startup(ctx: dict[str, Any]) -> None:
        ctx["ticker"] = asyncio.create_task(_tick(queue, max(interval, 0.05)))

    async def shutdown(ctx: dict[str, Any]) -> None:
        ticker = ctx.get("ticker")
        if ticker is not None:
            ticker.cancel()

    cls = EmbeddedWorker if embedded else Worker
    crons = []
    if keep is not None:
        crons.append(CronJob(retention, cron=RETENTION_CRON, timeout=RETENTION_TIMEOUT_S))
    if seal is not None:
        crons.append(CronJob(seal_sessions, cron=SEAL_CRON, timeout=SEAL_TIMEOUT_S))
    worker = cls(
        queue,
        functions=[flush, retention, seal_sessions],
        cron_jobs=crons,
        concurrency=2,
        startup=startup,
        shutdown=shutdown,
        timers={"schedule": 1, "sweep": 30, "abort": 5, "worker_info": 10},
    )
    worker.context["flusher"] = flusher
    worker.context["retention"] = keep
    worker.context["seal"] = seal
    return worker


async def stop_worker(worker: Worker, task: asyncio.Task[None]) -> None:
    await worker.stop()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await asyncio.wait_for(task, timeout=10)
