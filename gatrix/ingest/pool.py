"""The primary's ingest processes: started after the primary is ready, restarted when one dies,
stopped (and drained into the buffer) before the primary's own last flush."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field

from gatrix.settings import Settings

log = logging.getLogger("gatrix.processes")
# a process that ran this long before dying is restarted at once; a crash loop backs off
STABLE_AFTER_S = 30.0
MAX_BACKOFF_S = 30.0
STOP_GRACE_S = 15.0


@dataclass(frozen=True)
class PoolPlan:
    """What `gatrix serve` decided: how many ingest processes, and where they reach the
    primary (its private Unix socket) and the port they share with it."""

    count: int
    primary_socket: str
    server: str  # this server's tag among servers sharing a Redis (siblings.server_tag)


@dataclass
class _Slot:
    index: int
    process: asyncio.subprocess.Process | None = None
    started: float = 0.0
    restarts: int = 0
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class IngestPool:
    def __init__(self, plan: PoolPlan, settings: Settings) -> None:
        self.plan = plan
        self.settings_json = settings.model_dump_json().encode()
        self.slots = [_Slot(i) for i in range(1, plan.count + 1)]
        self._stopping = False

    def start(self) -> None:
        for slot in self.slots:
            slot.task = asyncio.create_task(self._keep(slot), name=f"gatrix-ingest-{slot.index}")

    async def _spawn(self, slot: _Slot) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gatrix.ingest.process",
            "--index",
            str(slot.index),
            "--primary-socket",
            self.plan.primary_socket,
            "--server",
            self.plan.server,
            "--parent",
            str(os.getpid()),
            stdin=asyncio.subprocess.PIPE,
        )
        assert process.stdin is not None  # asked for above
        process.stdin.write(self.settings_json)
        await process.stdin.drain()
        process.stdin.close()
        slot.process, slot.started = process, time.monotonic()
        return process

    async def _keep(self, slot: _Slot) -> None:
        backoff = 1.0
        while not self._stopping:
            try:
                process = await self._spawn(slot)
            except Exception as exc:
                log.error("could not start ingest process %d: %s", slot.index, exc)
            else:
                code = await process.wait()
                if self._stopping:
                    return
                log.error(
                    "ingest process %d (pid %d) exited with %s; starting it again",
                    slot.index,
                    process.pid,
                    code,
                )
                slot.restarts += 1
                if time.monotonic() - slot.started > STABLE_AFTER_S:
                    backoff = 1.0
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    def status(self) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for slot in self.slots:
            process = slot.process
            alive = process is not None and process.returncode is None
            out.append(
                {
                    "index": slot.index,
                    "pid": process.pid if process is not None else None,
                    "alive": alive,
                    "restarts": slot.restarts,
                }
            )
        return out

    async def stop(self) -> None:
        """SIGTERM each process (it stops accepting, finishes its requests and sends what its
        writer holds to Redis), wait, then kill what is left."""
        self._stopping = True
        running = [s.process for s in self.slots if s.process and s.process.returncode is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        if running:
            await asyncio.wait(
                [asyncio.create_task(p.wait()) for p in running], timeout=STOP_GRACE_S
            )
            for process in running:
                if process.returncode is None:
                    log.error("ingest process pid %d did not stop; killing it", process.pid)
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    await process.wait()
        for slot in self.slots:
            if slot.task is not None:
                slot.task.cancel()
        await asyncio.gather(*(s.task for s in self.slots if s.task), return_exceptions=True)
