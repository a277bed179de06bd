"""The flush phase: buffer → ClickHouse insert throughput alone, without HTTP or the pipeline.

`python -m tools.bench ingest` runs this as `python -m tools.bench.flushphase N` rather than
calling it, because it opens a chDB data path and a process may hold only one; the benchmark
process itself never opens one. It fills a fresh embedded Redis with N realistic event rows
(not timed), then times one flusher draining them into a fresh embedded ClickHouse, the way
the embedded server's worker does. The JSON result is the last line on stdout.

Its baseline, in the same process and run: the same rows inserted straight into a copy of
the events table without rollups, in the same chunks, no Redis (`baseline_events_per_s`,
the mean of one run before the flush and one after, as background merges slow whichever
comes second). `insert_seconds` is the flush's time inside ClickHouse inserts; the rest of
`seconds` is claiming, reading and splitting the buffer.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from gatrix.buffer.embedded import EmbeddedRedis
from gatrix.buffer.flush import Flusher
from gatrix.buffer.queue import Buffer
from gatrix.clickhouse.store import Store
from gatrix.services import connect_redis
from gatrix.settings import Settings

DEFAULT_EVENTS = 200_000
PUSH_CHUNK = 10_000
FLUSH_BUDGET_S = 600.0
DEVICES = 5_000
# Rows spread over the last few minutes, like live traffic: one monthly partition, except for
# a run right at a month boundary, which is what production sees then too.
SPREAD_MS = 10 * 60 * 1000

ORIGIN = "https://bench.example"
CUSTOM_NAMES = ("signup", "add_to_cart", "checkout", "search", "video_play")
PATHS = ("/", "/pricing", "/docs/getting-started", "/blog/post-{n}", "/product/{n}", "/account")
TITLES = ("Home", "Pricing", "Getting started", "Blog", "Product", "Account")
# (url, name, channel type), as the referrer step would have resolved them
REFERRERS = (
    ("", "", ""),
    ("", "", ""),
    ("https://www.google.com/", "Google", "search"),
    ("https://news.ycombinator.com/", "Hacker News", "social"),
    ("https://t.co/", "X", "social"),
    ("https://blog.example.org/links", "", "link"),
)
# (utm_source, utm_medium, utm_campaign)
UTMS = (("", "", ""), ("", "", ""), ("newsletter", "email", "spring"), ("google", "cpc", "brand"))
# (browser, version, os, os version, device, brand, model)
CLIENTS = (
    ("Chrome", "131.0.0.0", "Windows", "10", "desktop", "", ""),
    ("Safari", "18.1", "iOS", "18.1", "mobile", "Apple", "iPhone"),
    ("Firefox", "133.0", "Linux", "", "desktop", "", ""),
    ("Chrome", "131.0.0.0", "Android", "14", "mobile", "Samsung", "SM-S918B"),
    ("Edge", "131.0.0.0", "Mac OS", "14.6", "desktop", "Apple", "Macintosh"),
)
COUNTRIES = ("US", "DE", "GB", "FR", "IN", "BR", "JP", "SE")
SCREENS = ("1920x1080", "1440x900", "390x844", "412x915")
LANGUAGES = ("en-US", "de-DE", "fr-FR", "pt-BR", "ja-JP")


def _ch_time(ms: int) -> str:
    second = datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"{second}.{ms % 1000:03d}"


def event_rows(count: int, seed: int = 1) -> list[bytes]:
    """Buffer items (kind byte + JSONEachRow line) shaped like what `/track` produces."""
    rng = random.Random(seed)  # the same rows every run, so runs compare
    devices = [
        (uuid.UUID(int=rng.getrandbits(128)).hex, rng.choice(CLIENTS)) for _ in range(DEVICES)
    ]
    sessions = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(DEVICES)]
    now_ms = int(time.time() * 1000)
    encode = msgspec.json.Encoder().encode
    items: list[bytes] = []
    for _ in range(count):
        slot = rng.randrange(DEVICES)
        device_id, client = devices[slot]
        browser, browser_version, os_name, os_version, device, brand, model = client
        page = rng.randrange(len(PATHS))
        ref_url, ref_name, ref_type = rng.choice(REFERRERS)
        utm_source, utm_medium, utm_campaign = rng.choice(UTMS)
        query = (
            f"utm_source={utm_source}&utm_medium={utm_medium}&utm_campaign={utm_campaign}"
            if utm_source
            else ""
        )
        created_ms = now_ms - rng.randrange(SPREAD_MS)
        custom = rng.random() < 0.2
        properties: dict[str, str] = (
            {"plan": rng.choice(("free", "pro", "team")), "step": str(rng.randrange(1, 5))}
            if custom
            else ({"theme": "dark"} if rng.random() < 0.3 else {})
        )
        row: dict[str, Any] = {
            # the three fields the push script writes in front of the pipeline's row
            "session_id": sessions[slot],
            "session_start": round((now_ms - SPREAD_MS) / 1000 - slot % 600, 3),
            "device_id": device_id,
            "id": str(uuid.uuid4()),
            "project_id": "bench",
            "name": rng.choice(CUSTOM_NAMES) if custom else "screen_view",
            "profile_id": "",
            "created_at": _ch_time(created_ms),
            "received_at": _ch_time(created_ms + rng.randrange(5, 400)),
            "origin": ORIGIN,
            "path": PATHS[page].format(n=rng.randrange(500)),
            "query": query,
            "title": TITLES[page],
            "referrer": ref_url,
            "referrer_name": ref_name,
            "referrer_type": "paid" if utm_medium == "cpc" else ref_type,
            "utm_source": utm_source,
            "utm_medium": utm_medium,
            "utm_campaign": utm_campaign,
            "utm_term": "",
            "utm_content": "",
            "click_id_type": "",
            "click_id": "",
            "country": rng.choice(COUNTRIES),
            "region": "",
            "city": "",
            "browser": browser,
            "browser_version": browser_version,
            "os": os_name,
            "os_version": os_version,
            "device": device,
            "brand": brand,
            "model": model,
            "screen": rng.choice(SCREENS),
            "language": rng.choice(LANGUAGES),
            "duration": 0,
            "revenue": 0.0,
            "properties": properties,
            "sdk_name": "web",
            "sdk_version": "1.0.0",
        }
        items.append(b"e" + encode(row))
    return items


def _baseline(store: Store, lines: list[bytes], chunk: int, table: str) -> float:
    """Seconds to insert `lines` into `table` (no rollups) in chunks of `chunk` rows."""
    started = time.perf_counter()
    for n, start in enumerate(range(0, len(lines), chunk)):
        store.insert_json_rows(table, lines[start : start + chunk], f"{table}:{n}")
    return time.perf_counter() - started


async def _flush(redis_url: str, store: Store, events: int, chunk: int) -> tuple[float, float]:
    """(seconds, of which inside inserts) for one flusher to drain `events` buffered rows."""
    redis = connect_redis(redis_url)
    try:
        buffer = Buffer(redis, "bench")
        items = event_rows(events)
        for start in range(0, len(items), PUSH_CHUNK):
            await buffer.push_raw(items[start : start + PUSH_CHUNK])
        del items  # the rows now live in Redis; keep the flusher's heap as in production
        flusher = Flusher(buffer, store, batch_size=chunk)
        started = time.perf_counter()
        await flusher.run(max_seconds=FLUSH_BUDGET_S)
        return time.perf_counter() - started, flusher.stats.insert_seconds
    finally:
        await redis.aclose()


def _measure(redis_url: str, store: Store, events: int, chunk: int) -> dict[str, Any]:
    store.command(f"CREATE TABLE {store.db}.baseline_events AS {store.db}.events")
    store.command(f"CREATE TABLE {store.db}.baseline_after AS {store.db}.events")
    lines = [item[1:] for item in event_rows(events, seed=2)]
    before = _baseline(store, lines, chunk, "baseline_events")
    seconds, inserting = asyncio.run(_flush(redis_url, store, events, chunk))
    after = _baseline(store, lines, chunk, "baseline_after")
    rows = int(store.query_rows(f"SELECT count() FROM {store.db}.events")[0][0])
    baseline = (before + after) / 2

    def rate(s: float) -> float | None:
        return round(events / s, 1) if s > 0 else None

    return {
        "events": events,
        "chunk": chunk,
        "seconds": round(seconds, 3),
        "insert_seconds": round(inserting, 3),
        "events_per_s": rate(seconds),
        "rows": rows,
        "baseline_seconds": [round(before, 3), round(after, 3)],
        "baseline_events_per_s": rate(baseline),
        "ratio_to_baseline": round(baseline / seconds, 3) if seconds > 0 else None,
    }


def main(argv: list[str]) -> int:
    events = int(argv[1]) if len(argv) > 1 else DEFAULT_EVENTS
    # the chunk a server would use: GATRIX_FLUSH_BATCH_SIZE, else the product's default
    chunk = int(argv[2]) if len(argv) > 2 else Settings().flush_batch_size
    data_dir = tempfile.mkdtemp(prefix="gatrix-bench-flush-")
    redis_server = EmbeddedRedis(Path(data_dir))
    try:
        url = redis_server.start()
        store = Store(f"chdb://{data_dir}/clickhouse", "gatrix")
        # Migrating also warms chDB up, so its start-up cost stays out of the timed part.
        store.migrate()
        result = _measure(url, store, events, chunk)
    finally:
        redis_server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    print(json.dumps(result), flush=True)
    return 0 if result["rows"] == events else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
