"""The buffer and the flush, written once and run against every Redis we have (embedded valkey,
and the machine's Redis when REDIS_URL is given) with the real chDB engine behind."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from gatrix.buffer.flush import Flusher
from gatrix.buffer.queue import Buffer
from gatrix.buffer.rows import Pending, resolve_ids
from gatrix.buffer.writer import BufferUnavailable, BufferWriter
from gatrix.clickhouse.store import Store
from gatrix.ingest.enrich.geo import GeoLookup
from gatrix.ingest.payloads import Hit
from gatrix.ingest.pipeline import Context, Request, process_profile, process_track
from gatrix.ingest.salts import SESSION_TIMEOUT_MS, SaltBook
from gatrix.insights.profiles import get_profile
from gatrix.meta.projects import ClientInfo

from ..conftest import CHROME_UA

T0 = datetime(2026, 4, 10, 9, 0, tzinfo=UTC)
MIN = 60_000


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


@pytest.fixture
def buffer(redis: Redis, prefix: str) -> Buffer:
    return Buffer(redis, prefix)


@pytest.fixture
def ctx(sql_engine: Any, buffer: Buffer) -> Context:
    return Context(salts=SaltBook(sql_engine), geo=GeoLookup(), keys=buffer.keys)


def client(project: str = "p1") -> ClientInfo:
    return ClientInfo("c1", project, "write", None, ("*",), "UTC")


def track(
    ctx: Context,
    at: datetime,
    *,
    project: str = "p1",
    ip: str = "8.8.8.8",
    path: str = "/",
    name: str = "screen_view",
    **reserved: Any,
) -> Pending:
    hit = Hit(
        type="track",
        name=name,
        reserved={"__path": f"https://a.io{path}", "__timestamp": at.isoformat(), **reserved},
    )
    req = Request(
        client=client(project), server_side=False, ip=ip, user_agent=CHROME_UA, received_ms=ms(at)
    )
    item = process_track(hit, req, ctx)
    assert isinstance(item, Pending)
    return item


async def push(buffer: Buffer, *items: Pending) -> list[tuple[str, str]]:
    ids, _ = await buffer.push(list(items), SESSION_TIMEOUT_MS)
    return [resolve_ids(item, ids[n]) for n, item in enumerate(items)]


async def test_session_continues_at_29_minutes_and_restarts_at_31(
    buffer: Buffer, ctx: Context
) -> None:
    [(d1, s1)] = await push(buffer, track(ctx, T0))
    [(d2, s2)] = await push(buffer, track(ctx, T0 + timedelta(minutes=29)))
    [(d3, s3)] = await push(buffer, track(ctx, T0 + timedelta(minutes=29 + 31)))
    assert d1 == d2 == d3
    assert s1 == s2  # 29 minutes of inactivity: same session
    assert s3 != s2  # 31 minutes: a new one
    rows = [json.loads(item[1:]) for item in await buffer.redis.lrange(buffer.keys.buffer, 0, -1)]
    starts = [row["session_start"] for row in rows]
    assert starts == [ms(T0) / 1000, ms(T0) / 1000, ms(T0 + timedelta(minutes=60)) / 1000]


async def test_different_visitors_get_different_sessions(buffer: Buffer, ctx: Context) -> None:
    (a, sa), (b, sb) = await push(
        buffer, track(ctx, T0, ip="8.8.8.8"), track(ctx, T0, ip="1.1.1.1")
    )
    assert a != b and sa != sb


async def test_session_survives_the_midnight_salt_rotation(buffer: Buffer, ctx: Context) -> None:
    night = datetime(2026, 4, 10, 23, 50, tzinfo=UTC)
    [(d1, s1)] = await push(buffer, track(ctx, night))
    [(d2, s2)] = await push(buffer, track(ctx, night + timedelta(minutes=20)))
    assert (d2, s2) == (d1, s1)
    # the next morning the visitor is new again (yesterday's salt is the one before)
    [(d3, s3)] = await push(buffer, track(ctx, night + timedelta(hours=10)))
    assert d3 != d1 and s3 != s1


async def test_late_event_from_long_ago_does_not_end_live_session(
    buffer: Buffer, ctx: Context
) -> None:
    [(_, live)] = await push(buffer, track(ctx, T0 + timedelta(hours=2)))
    [(_, old)] = await push(buffer, track(ctx, T0))  # delivered late, 2 hours old
    [(_, again)] = await push(buffer, track(ctx, T0 + timedelta(hours=2, minutes=5)))
    assert old != live and again == live


async def test_device_id_override_and_profile_id(buffer: Buffer, ctx: Context) -> None:
    [(device, _)] = await push(buffer, track(ctx, T0, __deviceId='dev-"42\\'))
    assert device == 'dev-"42\\'
    stored = await buffer.redis.lrange(buffer.keys.buffer, -1, -1)
    assert json.loads(stored[0][1:])["device_id"] == 'dev-"42\\'  # escaped, still valid JSON


async def test_claims_are_atomic_between_two_flushers(
    redis: Redis, prefix: str, ctx: Context
) -> None:
    first, second = Buffer(redis, prefix), Buffer(Redis.from_url(_url(redis)), prefix)
    items = [
        track(ctx, T0 + timedelta(seconds=i), ip=f"9.9.{i // 250}.{i % 250}") for i in range(600)
    ]
    await first.push(items, SESSION_TIMEOUT_MS)
    claimed: list[bytes] = []

    async def drain(buf: Buffer) -> None:
        while batch := await buf.claim(37):
            claimed.extend(await buf.read(batch))
            await buf.ack(batch)

    await asyncio.gather(drain(first), drain(second), drain(first), drain(second))
    assert len(claimed) == 600 and len(set(claimed)) == 600
    await second.redis.aclose()


def _url(redis: Redis) -> str:
    kwargs = redis.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}?password={kwargs.get('password') or ''}"
    return f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}"


def count(store: Store, table: str = "events", project: str = "p1") -> int:
    return store.query_rows(
        f"SELECT count() FROM {store.db}.{table} WHERE project_id = {{p:String}}", {"p": project}
    )[0][0]


async def test_flush_inserts_everything_once_and_acks(
    buffer: Buffer, ctx: Context, scratch_store: Store
) -> None:
    await buffer.push(
        [track(ctx, T0 + timedelta(seconds=i)) for i in range(250)], SESSION_TIMEOUT_MS
    )
    flusher = Flusher(buffer, scratch_store, batch_size=100)
    assert await flusher.run() == 250
    assert count(scratch_store) == 250
    stats = await buffer.stats()
    assert stats["depth"] == 0 and stats["claimed_batches"] == 0
    assert stats["last_flush_ms"] is not None
    row = scratch_store.query_dicts(f"SELECT * FROM {scratch_store.db}.events LIMIT 1")[0]
    assert row["browser"] == "Chrome" and row["country"] == "US" and row["session_id"]


async def test_crash_between_insert_and_ack_does_not_duplicate(
    buffer: Buffer, ctx: Context, scratch_store: Store
) -> None:
    await buffer.push(
        [track(ctx, T0 + timedelta(seconds=i)) for i in range(120)], SESSION_TIMEOUT_MS
    )
    dying = Flusher(buffer, scratch_store, batch_size=1000)
    batch = await buffer.claim(1000)
    assert batch is not None
    await dying.write(batch)  # inserted... and the process dies before ack
    assert count(scratch_store) == 120
    assert (await buffer.stats())["claimed_batches"] == 1
    survivor = Flusher(buffer, scratch_store, batch_size=1000, lease_ms=0)
    await survivor.run()
    assert count(scratch_store) == 120  # retried with the same token: deduplicated
    db = scratch_store.db
    [[hourly]] = scratch_store.query_rows(f"SELECT sum(pageviews) FROM {db}.hourly")
    [[sessions]] = scratch_store.query_rows(f"SELECT sum(pageviews) FROM {db}.sessions")
    assert hourly == sessions == 120  # and so are the rollups fed by materialized views
    assert (await buffer.stats())["claimed_batches"] == 0


async def test_clickhouse_unavailable_keeps_events_until_it_returns(
    buffer: Buffer, ctx: Context, scratch_store: Store
) -> None:
    await buffer.push(
        [track(ctx, T0 + timedelta(seconds=i)) for i in range(50)], SESSION_TIMEOUT_MS
    )
    scratch_store.command(f"DETACH TABLE {scratch_store.db}.events")
    flusher = Flusher(buffer, scratch_store, batch_size=1000)
    try:
        assert await flusher.run() == 0
        assert flusher.stats.unavailable
        stats = await buffer.stats()
        assert stats["claimed_batches"] == 1 and stats["dead_letters"] == 0
    finally:
        scratch_store.command(f"ATTACH TABLE {scratch_store.db}.events")
    assert await flusher.run() == 50
    assert count(scratch_store) == 50
    assert flusher.stats.unavailable == ""
    assert (await buffer.stats())["claimed_batches"] == 0


async def test_rejected_rows_go_to_dead_letter_and_never_block_the_rest(
    buffer: Buffer, ctx: Context, scratch_store: Store
) -> None:
    good = [track(ctx, T0 + timedelta(seconds=i)) for i in range(40)]
    await buffer.push(good[:20], SESSION_TIMEOUT_MS)
    await buffer.push_raw(
        [
            b'e{"id":"not-a-uuid","project_id":"p1","name":"x","created_at":"2026-04-10 09:00:00"}',
            b"zunknown kind",
        ]
    )
    await buffer.push(good[20:], SESSION_TIMEOUT_MS)
    flusher = Flusher(buffer, scratch_store, batch_size=1000)
    assert await flusher.run() == 40
    assert count(scratch_store) == 40
    dead = await buffer.dead_letters()
    assert len(dead) == 2
    assert any("not-a-uuid" in d["item"] and "uuid" in d["error"].lower() for d in dead)
    assert any(d["error"] == "unknown buffer item kind" for d in dead)
    assert (await buffer.stats())["depth"] == 0


async def test_identify_increment_decrement_build_the_profile(
    buffer: Buffer, scratch_store: Store, ctx: Context
) -> None:
    def req(at: datetime) -> Request:
        return Request(
            client=client(), server_side=True, ip="1.1.1.1", user_agent="", received_ms=ms(at)
        )

    items = [
        *process_profile(
            Hit(
                type="identify",
                profile_id="u1",
                first_name="Ada",
                email="a@x.io",
                properties={"plan": "free", "team": "core"},
            ),
            req(T0),
            ctx,
        ),
        *process_profile(
            Hit(type="identify", profile_id="u1", last_name="Lovelace", properties={"plan": "pro"}),
            req(T0 + timedelta(minutes=1)),
            ctx,
        ),
        *process_profile(
            Hit(type="increment", profile_id="u1", property="logins", value=3), req(T0), ctx
        ),
        *process_profile(
            Hit(type="decrement", profile_id="u1", property="logins", value=-1), req(T0), ctx
        ),
    ]
    await buffer.push(items, SESSION_TIMEOUT_MS)
    await Flusher(buffer, scratch_store).run()
    profile = get_profile(scratch_store, "p1", "u1")
    assert profile is not None
    assert (profile["first_name"], profile["last_name"], profile["email"]) == (
        "Ada",
        "Lovelace",
        "a@x.io",
    )
    assert profile["properties"] == {"plan": "pro", "team": "core"}
    assert profile["counters"] == {"logins": 2.0}
    assert get_profile(scratch_store, "p1", "nobody") is None


async def test_writer_group_commits_concurrent_requests(buffer: Buffer, ctx: Context) -> None:
    writer = BufferWriter(buffer, SESSION_TIMEOUT_MS, backlog_threshold=10**9)
    writer.start()
    items = [track(ctx, T0, ip=f"7.7.{i // 250}.{i % 250}") for i in range(500)]
    results = await asyncio.gather(*(writer.submit(item) for item in items))
    await writer.close()
    assert len({sid for _, sid in results}) == 500
    assert await buffer.depth() == 500
    assert writer.round_trips < 100  # shared round trips, not one per request
    stored = await buffer.redis.lrange(buffer.keys.buffer, 0, 0)
    row = json.loads(stored[0][1:])
    assert row["session_id"] and row["device_id"] and row["project_id"] == "p1"


async def test_writer_reports_redis_down(ctx: Context) -> None:
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    writer = BufferWriter(Buffer(dead, "x"), SESSION_TIMEOUT_MS, backlog_threshold=10)
    writer.start()
    with pytest.raises(BufferUnavailable):
        await writer.submit(track(ctx, T0))
    await writer.close()
    await dead.aclose()
