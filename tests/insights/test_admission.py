"""Report reads take turns per caller: one client's backlog never holds up another's reads,
a caller with too many waiting is told to come back, and `/health` stays up meanwhile."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from gatrix.insights.admission import ReadGate, ReadsBusy, caller
from gatrix.meta.projects import create_project
from tests.conftest import LiveServer, make_settings

pytestmark = pytest.mark.anyio


def as_caller(gate: ReadGate, who: str, fn: Any, *args: Any) -> Any:
    """A read asked by `who`, in a task of its own (as each request is)."""

    async def ask() -> Any:
        caller.set(who)
        return await gate.run(fn, *args)

    return asyncio.create_task(ask())


def held(release: threading.Event, order: list[str], name: str) -> str:
    release.wait(10)
    order.append(name)
    return name


async def settle() -> None:
    for _ in range(5):  # let the tasks reach their place in the queues
        await asyncio.sleep(0)


async def test_another_callers_read_goes_before_a_backlog() -> None:
    gate = ReadGate(slots=1, waiting_per_caller=100, wait_s=10)
    release, order = threading.Event(), []
    first = as_caller(gate, "a", held, release, order, "a0")
    await settle()
    backlog = [as_caller(gate, "a", held, release, order, f"a{i}") for i in range(1, 6)]
    await settle()
    other = as_caller(gate, "b", held, release, order, "b0")
    await settle()
    assert (gate.running, gate.waiting) == (1, 6)
    release.set()
    await asyncio.gather(first, *backlog, other)
    # turns alternate: a0 was running, a1 had the next turn, then b0, not after a5
    assert order[:3] == ["a0", "a1", "b0"]
    assert order[3:] == ["a2", "a3", "a4", "a5"]
    assert (gate.running, gate.waiting) == (0, 0)
    gate.close()


async def test_a_caller_past_its_queue_is_refused_at_once() -> None:
    gate = ReadGate(slots=1, waiting_per_caller=2, wait_s=10)
    release, order = threading.Event(), []
    tasks = [as_caller(gate, "a", held, release, order, f"a{i}") for i in range(5)]
    await settle()
    done = [t for t in tasks if t.done()]
    assert len(done) == 2  # one runs, two wait, two are refused without waiting
    for task in done:
        refused = task.exception()
        assert isinstance(refused, ReadsBusy)
        assert refused.limit == "queue" and refused.retry_after > 0
    # another caller has a queue of its own
    other = as_caller(gate, "b", held, release, order, "b0")
    await settle()
    assert not other.done()
    release.set()
    ran = await asyncio.gather(*[t for t in tasks if t not in done], other)
    assert sorted(ran) == ["a0", "a1", "a2", "b0"]
    assert gate.stats.refused_queue == 2
    gate.close()


async def test_a_read_that_waits_too_long_is_refused_and_frees_its_place() -> None:
    gate = ReadGate(slots=1, waiting_per_caller=5, wait_s=0.2)
    release, order = threading.Event(), []
    running = as_caller(gate, "a", held, release, order, "a0")
    await settle()
    with pytest.raises(ReadsBusy) as caught:
        await as_caller(gate, "b", held, release, order, "b0")
    assert caught.value.limit == "wait"
    assert gate.waiting == 0
    release.set()
    assert await running == "a0"
    assert (gate.running, gate.waiting) == (0, 0)
    assert await as_caller(gate, "b", held, release, order, "b1") == "b1"
    gate.close()


async def test_a_cancelled_read_keeps_its_slot_until_its_thread_ends() -> None:
    gate = ReadGate(slots=1, waiting_per_caller=5, wait_s=10)
    release, order = threading.Event(), []
    running = as_caller(gate, "a", held, release, order, "a0")
    waiting = as_caller(gate, "a", held, release, order, "a1")
    await settle()
    waiting.cancel()  # a client that went away while waiting: its place is freed
    running.cancel()  # one that went away while its read runs: the engine is still busy
    await settle()
    assert (gate.running, gate.waiting) == (1, 0)
    later = as_caller(gate, "b", held, release, order, "b0")
    await settle()
    assert not later.done()
    release.set()
    assert await later == "b0"
    assert order == ["a0", "b0"]
    assert gate.running == 0
    gate.close()


# --- over HTTP, with a real engine: one slot, four waiting places per caller

SLOW_S = 6  # longer than /health's own 5 s limit on each check
SLOW = f"SELECT sum(sleepEachRow(0.1)) FROM numbers({SLOW_S * 10}) SETTINGS max_block_size = 1"


@pytest.fixture(scope="module")
def tight_server(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[LiveServer]:
    own = tmp_path_factory.mktemp("admission")
    live = LiveServer(
        make_settings(
            own,
            clickhouse_url=f"chdb://{data_dir / 'clickhouse'}",
            query_slots=1,
            query_queue=4,
            query_wait_seconds=30,
        )
    ).start()
    yield live
    live.stop()


def client_headers(created: Any) -> dict[str, str]:
    return {
        "openpanel-client-id": created.client_id,
        "openpanel-client-secret": created.client_secret,
    }


def test_one_clients_backlog_gets_429_while_others_and_health_are_served(
    tight_server: LiveServer,
) -> None:
    engine = tight_server.services.engine
    busy = create_project(engine, f"busy {uuid.uuid4().hex[:6]}")
    quiet = create_project(engine, f"quiet {uuid.uuid4().hex[:6]}")
    services = tight_server.services

    async def hold_the_store() -> Any:  # a heavy report of the busy client's
        caller.set(f"client:{busy.client_id}")
        return await services.reads.run(services.store.query_rows, SLOW)

    heavy = asyncio.run_coroutine_threadsafe(hold_the_store(), tight_server.loop)
    deadline = time.monotonic() + 10
    while services.reads.running == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert services.reads.running == 1
    started = time.monotonic()

    def metrics(created: Any) -> httpx.Response:
        with httpx.Client(base_url=tight_server.url, timeout=60) as http:
            return http.get(
                f"/insights/{created.project_id}/metrics",
                params={"range": "7d"},
                headers=client_headers(created),
            )

    with ThreadPoolExecutor(max_workers=10) as pool:
        flood = [pool.submit(metrics, busy) for _ in range(8)]
        time.sleep(1.0)  # all eight are queued or refused by now
        other = pool.submit(metrics, quiet)
        with httpx.Client(base_url=tight_server.url, timeout=30) as http:
            health = http.get("/health")
        health_took = time.monotonic() - started
        replies = [f.result() for f in flood]
        other_reply = other.result()
    assert heavy.result(timeout=30) is not None

    # the heavy read was still running: /health answered without queueing behind it
    assert health_took < SLOW_S
    assert health.status_code == 200, health.text
    assert health.json()["clickhouse"] == {"ok": True, "embedded": True, "busy": True}
    assert health.json()["reads"]["waiting"] >= 4

    statuses = sorted(r.status_code for r in replies)
    assert statuses == [200] * 4 + [429] * 4
    refused = [r for r in replies if r.status_code == 429]
    assert all(r.json()["error"] == "too_many_queries" for r in refused)
    assert all(r.headers["retry-after"] == "5" for r in refused)
    assert other_reply.status_code == 200, other_reply.text
    assert other_reply.json()["pageviews"] == 0
