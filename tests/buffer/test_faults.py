"""Faults injected into a real `gatrix serve` (and into the flush against the real chDB engine):
no input and no fault may stop ingestion for everyone, and nothing answered 2xx is lost."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from gatrix.buffer.embedded import EmbeddedRedis, EmbeddedRedisError
from gatrix.buffer.flush import Flusher
from gatrix.buffer.keys import RedisKeys
from gatrix.buffer.queue import Buffer
from gatrix.buffer.rows import Pending
from gatrix.buffer.supervisor import Supervisor
from gatrix.buffer.writer import BufferFull, BufferWriter
from gatrix.clickhouse.store import Store
from gatrix.ingest.pipeline import ch_time

from ..conftest import CHROME_UA, wait_for
from ..processes import ServeProcess, count_rows, server_env

NOW = datetime.now(UTC).replace(microsecond=0)


def raw_event(project: str, at: datetime, n: int) -> bytes:
    row = {
        "id": f"00000000-0000-4000-8000-{n:012d}",
        "project_id": project,
        "name": "screen_view",
        "path": f"/{n}",
        "device_id": "d",
        "session_id": f"s{n}",
        "session_start": at.timestamp(),
        "created_at": ch_time(int(at.timestamp() * 1000)),
        "received_at": ch_time(int(NOW.timestamp() * 1000)),
    }
    return b"e" + json.dumps(row).encode()


def months_back(n: int) -> datetime:
    year, month = divmod(NOW.year * 12 + NOW.month - 1 - n, 12)
    return datetime(year, month + 1, 1, 12, tzinfo=UTC)


def stored(store: Store, project: str) -> int:
    return store.query_rows(
        f"SELECT count() FROM {store.db}.events WHERE project_id = {{p:String}}", {"p": project}
    )[0][0]


# --- the flush: rejection is told from unavailability, and isolated per project


async def test_rows_over_120_months_neither_stop_other_projects_nor_retry_forever(
    redis: Redis, prefix: str, scratch_store: Store
) -> None:
    buffer = Buffer(redis, prefix)
    spread = [raw_event("attacker", months_back(m), m) for m in range(120)]
    bad = b'e{"id":"not-a-uuid","project_id":"attacker","name":"x","created_at":"2026-01-01"}'
    other = [raw_event("victim", NOW - timedelta(minutes=i), 1000 + i) for i in range(200)]
    # the attacker's rows interleaved with the victim's, as concurrent senders would be
    mixed = [row for pair in zip(spread, other, strict=False) for row in pair]
    await buffer.push_raw([*mixed, bad, *other[120:]])

    flusher = Flusher(buffer, scratch_store, batch_size=10_000)
    started = time.monotonic()
    await flusher.run()
    assert time.monotonic() - started < 10
    assert stored(scratch_store, "victim") == 200
    # rows that are each valid are all kept: a smaller block spans fewer partitions
    assert stored(scratch_store, "attacker") == 120
    dead = await buffer.dead_letters()
    assert [d["item"][:1] for d in dead] == ["e"] and "not-a-uuid" in dead[0]["item"]
    stats = await buffer.stats()
    assert stats["depth"] == 0 and stats["claimed_batches"] == 0
    assert flusher.stats.unavailable == ""
    assert flusher.stats.isolations >= 1 and flusher.stats.dead_letters == 1


async def test_a_dead_flushers_claim_is_retried_after_the_short_lease(
    redis: Redis, prefix: str, scratch_store: Store
) -> None:
    buffer = Buffer(redis, prefix)
    await buffer.push_raw([raw_event("lease", NOW, n) for n in range(30)])
    claimed_at = int(time.time() * 1000)
    assert await buffer.claim(100, now_ms=claimed_at)  # ...and the flusher dies
    flusher = Flusher(buffer, scratch_store, lease_ms=5_000)
    assert await buffer.take_stale(5_000, now_ms=claimed_at + 4_000) is None  # still leased
    await buffer.release(await buffer.take_stale(5_000, now_ms=claimed_at + 5_001))  # type: ignore[arg-type]
    assert await flusher.run() == 30
    assert stored(scratch_store, "lease") == 30


async def test_a_live_flusher_renews_its_lease_while_inserting(redis: Redis, prefix: str) -> None:
    buffer = Buffer(redis, prefix)
    await buffer.push_raw([raw_event("renew", NOW, 1)])
    batch = await buffer.claim(10, now_ms=1_000)
    assert batch is not None
    await buffer.renew([batch.id])
    assert await buffer.take_stale(5_000) is None  # renewed: not stale
    await buffer.ack(batch)
    await buffer.renew([batch.id])  # renewing an acknowledged claim must not revive it
    assert (await buffer.stats())["claimed_batches"] == 0


def test_ingestion_drops_client_times_outside_the_window(
    http: httpx.Client, server_project
) -> None:
    headers = {
        "openpanel-client-id": server_project.client_id,
        "openpanel-client-secret": server_project.client_secret,
    }
    old = [
        {
            "type": "track",
            "payload": {"name": "x", "properties": {"__timestamp": months_back(m).isoformat()}},
        }
        for m in range(2, 122)
    ]
    reply = http.post("/track/batch", json=old, headers=headers)
    assert reply.status_code == 200
    body = reply.json()
    assert body["accepted"] == 0 and body["dropped"] == 120
    assert {r["dropped"] for r in body["results"]} == {"timestamp_too_old"}


# --- the embedded Redis: private, ours only, restarted, never killed before the drain


def test_embedded_redis_lives_in_a_private_dir_behind_a_password(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "data", max_memory_mb=32)
    url = server.start()
    try:
        assert oct((tmp_path / "data" / "redis").stat().st_mode & 0o777) == "0o700"
        assert oct((tmp_path / "data" / "redis" / "password").stat().st_mode & 0o777) == "0o600"
        bare = SyncRedis(unix_socket_path=str(server.socket))
        with pytest.raises(Exception, match=r"(?i)auth"):
            bare.set("k", "v")
        client = SyncRedis.from_url(url)
        assert client.config_get("maxmemory")["maxmemory"] == str(32 * 1024 * 1024)
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "volatile-lru"
    finally:
        server.stop()


def test_a_long_data_dir_gets_a_random_private_socket_dir(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 90)
    server = EmbeddedRedis(deep, max_memory_mb=32)
    server.start()
    try:
        parent = server.socket.parent
        assert parent.name.startswith("gatrix-redis-") and parent.name != "gatrix-redis-"
        assert oct(parent.stat().st_mode & 0o777) == "0o700"
        # found again by the next start (the socket's place is remembered in the data dir)
        assert EmbeddedRedis(deep).locate() == server.url
    finally:
        server.stop()


def test_a_server_that_is_not_ours_is_never_reused(tmp_path: Path) -> None:
    ours = EmbeddedRedis(tmp_path / "a")
    ours.start()
    try:
        stranger = EmbeddedRedis(tmp_path / "b")
        stranger.locate()
        # someone else's server listening where ours should be
        (tmp_path / "b" / "redis" / "valkey.sock").symlink_to(ours.socket)
        with pytest.raises(EmbeddedRedisError, match="not ours"):
            stranger.start()
    finally:
        ours.stop()


def test_a_dead_embedded_redis_is_restarted_with_its_data(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "data")
    url = server.start()
    try:
        SyncRedis.from_url(url).set("kept", "1")
        time.sleep(1.2)  # appendfsync everysec
        assert server.pid is not None
        os.kill(server.pid, signal.SIGKILL)
        assert wait_for(lambda: server.relaunch_if_dead(), timeout=5)
        server.wait_ready()
        assert SyncRedis.from_url(url).get("kept") == b"1"
        assert server.restarts == 1
    finally:
        server.stop()


def test_deadletters_command_lists_and_replays(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = EmbeddedRedis(data)
    url = server.start()
    try:

        async def refuse() -> None:
            buffer = Buffer(Redis.from_url(url), "gatrix")
            await buffer.dead_letter(b'e{"id":"bad"}', "events: Cannot parse UUID")
            await buffer.redis.aclose()

        asyncio.run(refuse())
        cli = [sys.executable, "-m", "gatrix.cli", "deadletters", "--data-dir", str(data)]
        listed = subprocess.run(cli, capture_output=True, text=True, timeout=60, env=server_env())
        assert listed.returncode == 0, listed.stderr
        [record] = [json.loads(line) for line in listed.stdout.splitlines()]
        assert record["item"] == 'e{"id":"bad"}' and "UUID" in record["error"]
        replayed = subprocess.run(
            [*cli, "--replay"], capture_output=True, text=True, timeout=60, env=server_env()
        )
        assert json.loads(replayed.stdout) == {"replayed": 1}
        sync = SyncRedis.from_url(url)
        assert sync.lrange("gatrix:buffer", 0, -1) == [b'e{"id":"bad"}']
        assert sync.llen("gatrix:deadletter") == 0
    finally:
        server.stop()


# --- a real server under load


def _sender(url: str, seconds: float, codes: Counter, retry_after: list[str]) -> None:
    end = time.monotonic() + seconds
    n = 0
    with httpx.Client(timeout=15) as client:
        while time.monotonic() < end:
            n += 1
            reply = client.post(
                f"{url}/track",
                json={"type": "track", "payload": {"name": "load", "path": f"/{n}"}},
            )
            codes[reply.status_code] += 1
            if reply.status_code == 503:
                retry_after.append(reply.headers.get("retry-after", ""))


def _valkey_pid(data: Path) -> int:
    out = subprocess.run(
        ["pgrep", "-f", f"valkey-server unixsocket:{data}/redis/valkey.sock"],
        capture_output=True,
        text=True,
    )
    pids = [int(p) for p in out.stdout.split()]
    assert len(pids) == 1, out
    return pids[0]


def test_killed_redis_is_restarted_under_load_and_a_group_sigint_drains(tmp_path: Path) -> None:
    data = tmp_path / "data"
    serve = ServeProcess(data)
    try:
        serve.wait_ready()
        codes: Counter = Counter()
        retry_after: list[str] = []
        load = threading.Thread(target=_sender, args=(serve.url, 8.0, codes, retry_after))
        load.start()
        time.sleep(2)
        first = _valkey_pid(data)
        os.kill(first, signal.SIGKILL)
        killed_at = time.monotonic()

        def healthy() -> bool:
            return httpx.get(f"{serve.url}/health", timeout=5).status_code == 200

        assert wait_for(healthy, timeout=10, interval=0.2), serve.stderr()[-2000:]
        recovered_in = time.monotonic() - killed_at
        load.join()
        assert recovered_in < 5
        assert _valkey_pid(data) != first
        assert codes[200] > 100 and set(codes) <= {200, 503}, codes
        assert all(value == "5" for value in retry_after)
        assert httpx.get(f"{serve.url}/health").json()["redis_restarts"] == 1
        # Ctrl-C reaches the whole process group: the drain must still find Redis alive
        os.killpg(serve.proc.pid, signal.SIGINT)
        serve.proc.wait(60)
    finally:
        serve.stop()
    assert count_rows(data, "SELECT count(), uniqExact(path) FROM gatrix.events") == [
        [codes[200], codes[200]]
    ]
    time.sleep(0.5)
    assert subprocess.run(["pgrep", "-f", f"unixsocket:{data}"]).returncode == 1  # none left


def _embedded_buffer(data: Path, prefix: str = "gatrix") -> tuple[Buffer, SyncRedis]:
    url = EmbeddedRedis(data).locate()
    return Buffer(Redis.from_url(url), prefix), SyncRedis.from_url(url)


def test_full_buffer_pushes_back_and_a_kill_9_with_a_claim_loses_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    # no flush at all while we fill the buffer past its 1 MB high-water mark
    hold = {
        "GATRIX_FLUSH_INTERVAL": "3600",
        "GATRIX_FLUSH_BATCH_SIZE": "1000000",
        "GATRIX_BUFFER_HIGH_WATER_MB": "1",
        "GATRIX_BUFFER_MAX_MB": "16",
    }
    serve = ServeProcess(data, **hold)
    accepted = 0
    try:
        serve.wait_ready()
        refused = None
        with httpx.Client(base_url=serve.url, timeout=15) as client:
            for n in range(20_000):
                reply = client.post(
                    "/track",
                    json={"type": "track", "payload": {"name": "fill", "path": f"/{n}"}},
                    headers={"user-agent": CHROME_UA},
                )
                if reply.status_code == 200:
                    accepted += 1
                elif reply.status_code == 503:
                    refused = reply
                    break
        assert refused is not None, "the buffer never pushed back"
        assert refused.json()["error"] == "buffer_full"
        assert refused.headers["retry-after"] == "5"
        health = httpx.get(f"{serve.url}/health")
        assert health.status_code == 503 and health.json()["buffer"]["ok"] is False
        assert "high-water" in health.json()["buffer"]["error"]
        # the writer stops near the mark, not a supervisor tick (0.5 s of traffic) past it
        assert health.json()["buffer"]["bytes"] < 2 * 1024 * 1024
        metrics = httpx.get(f"{serve.url}/metrics").text
        assert "gatrix_buffer_over_high_water 1" in metrics and "gatrix_redis_up 1" in metrics
        assert 'outcome="buffer_full"' in metrics
        buffer, sync = _embedded_buffer(data)
        info = sync.info("memory")
        assert info["used_memory"] < info["maxmemory"] == 16 * 1024 * 1024

        # a flusher claims a batch... and the whole tree dies with it
        async def claim() -> None:
            assert await buffer.claim(500)
            await buffer.redis.aclose()

        asyncio.run(claim())
        serve.kill_tree()
    finally:
        serve.stop()
    assert 1000 < accepted < 20_000
    restarted = ServeProcess(data)
    try:
        restarted.wait_ready()
        started = time.monotonic()

        def drained() -> bool:
            report = httpx.get(f"{restarted.url}/health").json()["buffer"]
            return report["depth"] == 0 and report["claimed_batches"] == 0

        assert wait_for(drained, timeout=20, interval=0.2), restarted.stderr()[-2000:]
        assert time.monotonic() - started < 10
    finally:
        restarted.stop()
    assert count_rows(data, "SELECT count(), uniqExact(path) FROM gatrix.events") == [
        [accepted, accepted]
    ]


# --- a full Redis: visitor sessions give way, the buffer never does


def test_a_full_redis_evicts_visitor_sessions_never_buffered_events(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "data", max_memory_mb=8)
    url = server.start()

    async def flood() -> tuple[int, int]:
        buffer = Buffer(Redis.from_url(url), "f")
        kept = 0
        for round_ in range(400):
            # 500 new visitors a round, each with a long device id (a session key each)
            items = [
                Pending(
                    payload_tail=b'"n":1}',
                    ts_ms=1,
                    session_key=buffer.keys.session("p", f"{round_}-{n}-" + "x" * 180),
                    device_id=f"{round_}-{n}",
                )
                for n in range(500)
            ]
            await buffer.push(items, 30 * 60_000)
            kept += int(await buffer.redis.llen(buffer.keys.buffer))
            await buffer.redis.delete(buffer.keys.buffer)  # as a flush would
            info = await buffer.redis.info()
            if int(info["evicted_keys"]) > 1000:
                break
        await buffer.redis.aclose()
        return kept, int(info["evicted_keys"])

    try:
        kept, evicted = asyncio.run(flood())
        assert evicted > 1000  # the cap was reached and sessions made room...
        assert kept % 500 == 0 and kept >= 1000  # ...and every pushed event was kept
    finally:
        server.stop()


def test_redis_refusing_a_push_for_memory_is_buffer_full(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "data", max_memory_mb=8)
    url = server.start()

    async def fill() -> Exception:
        buffer = Buffer(Redis.from_url(url), "f")
        writer = BufferWriter(buffer, 60_000, backlog_threshold=10**9)
        writer.start()
        blob = b"x" * 100_000
        try:
            for n in range(200):  # buffered items carry no TTL: nothing can be evicted
                await buffer.push_raw([b"e" + blob + str(n).encode()])
        except Exception:
            pass
        try:
            await writer.submit(Pending(payload_tail=b'"n":1}', session_key="k", device_id="d"))
        except Exception as exc:
            return exc
        finally:
            await writer.close()
            await buffer.redis.aclose()
        raise AssertionError("Redis took a push past its cap")

    try:
        error = asyncio.run(fill())
        assert isinstance(error, BufferFull), error
    finally:
        server.stop()


def test_long_device_ids_cost_a_bounded_session_key() -> None:
    keys = RedisKeys("gatrix")
    long_one = keys.session("p", "d" * 2000)
    assert len(long_one) < 80 and long_one == keys.session("p", "d" * 2000)
    assert long_one != keys.session("p", "d" * 1999)
    assert keys.session("p", "short") == 'gatrix:s:p:"short"'


async def test_a_big_claimed_batch_does_not_shrink_the_high_water_estimate(
    redis: Redis, prefix: str
) -> None:
    buffer = Buffer(redis, prefix)
    writer = BufferWriter(buffer, 60_000, backlog_threshold=10**9)
    writer.start()
    supervisor = Supervisor(buffer, writer, high_water_bytes=2 * 1024 * 1024)
    row = raw_event("claims", NOW, 1)
    await buffer.push_raw([row] * 3000)
    assert await buffer.claim(2995)  # a flusher holds most of it; 5 items wait
    state = await supervisor.observe()
    assert state.depth == 5 and not state.over_high_water
    # the per-item size comes from the waiting list alone, never from claimed batches
    assert writer.high_water_items is None or writer.high_water_items >= 100
    for n in range(20):
        await writer.submit(Pending(payload_tail=b'"n":1}', session_key=f"k{n}", device_id="d"))
    assert not writer.refuse
    await writer.close()


async def test_the_writer_stops_concurrent_requests_at_the_mark(redis: Redis, prefix: str) -> None:
    buffer = Buffer(redis, prefix)
    writer = BufferWriter(buffer, 60_000, backlog_threshold=10**9)
    writer.start()
    writer.high_water_items = 1_000  # as the supervisor sets it from the item size
    writer.known_depth = 900

    async def request(n: int) -> str:
        items = [
            Pending(payload_tail=b'"n":1}', session_key=f"k{n}-{i}", device_id="d")
            for i in range(200)
        ]
        try:
            await writer.submit_many(items)
            return "ok"
        except BufferFull:
            return "full"

    outcomes = await asyncio.gather(*(request(n) for n in range(10)))
    await writer.close()
    # 10 requests of 200 items arrived together over a mark of 1,000 items: none may pass
    assert outcomes == ["full"] * 10
    assert await buffer.depth() == 0


async def test_a_stuck_supervisor_cannot_hold_the_shutdown(
    redis: Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    buffer = Buffer(redis, prefix)
    released = asyncio.Event()

    async def stuck_tick() -> None:  # a step that swallows its cancellation
        while not released.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await released.wait()

    monkeypatch.setattr("gatrix.buffer.supervisor.STOP_WAIT_S", 0.3, raising=False)
    writer = BufferWriter(buffer, 60_000, backlog_threshold=10**9)
    supervisor = Supervisor(buffer, writer, high_water_bytes=1 << 20)
    monkeypatch.setattr(supervisor, "tick", stuck_tick)
    supervisor.start()
    task = supervisor._task
    assert task is not None
    await asyncio.sleep(0.05)
    stopping = asyncio.create_task(supervisor.stop())
    await asyncio.wait({stopping}, timeout=10)
    stopped_alone = stopping.done()  # without the bound: stop() waits as long as the tick
    released.set()
    assert stopped_alone and not task.done()  # the shutdown went on without the stuck tick
    await asyncio.sleep(0.05)
    task.cancel()  # now in the loop's own sleep: this one is honoured
    await asyncio.wait({task}, timeout=1)
    assert task.done()
