"""SAQ queue and worker for flushing. Embedded mode runs the worker inside the web process
(chDB admits one process per data directory); server mode runs `gatrix worker` processes.

The flush job runs every second by cron, and is also enqueued early by the ingest writer
when the buffer passes one batch. Both use fixed job keys, so they never pile up.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from saq import CronJob, Queue, Worker

from gatrix.flush import Flusher

EARLY_JOB_KEY = "flush-early"


async def flush(ctx: dict[str, Any]) -> int:
    flusher: Flusher = ctx["flusher"]
    return await flusher.run(max_seconds=5.0)


def make_queue(redis: Any, name: str) -> Queue:
    from saq.queue.redis import RedisQueue

    return RedisQueue(redis, name=name)


class EmbeddedWorker(Worker):
    # Signals belong to the web server in embedded mode; it stops us on shutdown.
    SIGNALS: list = []


def make_worker(queue: Queue, flusher: Flusher, embedded: bool, interval: float) -> Worker:
    cron = "* * * * * *" if interval <= 1 else f"* * * * * */{int(interval)}"
    cls = EmbeddedWorker if embedded else Worker
    worker = cls(
        queue,
        functions=[flush],
        cron_jobs=[CronJob(flush, cron=cron, timeout=60)],
        concurrency=2,
        timers={"schedule": 1, "sweep": 30, "abort": 5, "worker_info": 10},
    )
    worker.context["flusher"] = flusher
    return worker


async def enqueue_early_flush(queue: Queue) -> None:
    await queue.enqueue("flush", key=EARLY_JOB_KEY, timeout=60)


async def stop_worker(worker: Worker, task: asyncio.Task[None]) -> None:
    await worker.stop()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await asyncio.wait_for(task, timeout=10)
