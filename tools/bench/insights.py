"""`python -m tools.bench insights`: query latency of every insights report at 1M and 10M events.

Synthetic data is generated inside ClickHouse (INSERT … SELECT from numbers()), so the
materialized views build the rollups exactly as live ingestion does: 90 days, sessions of
1–20 events, ~20% custom events, Zipf-like paths and referrers, visitors with ~2 sessions.
Each report is timed in-process (the query layer every endpoint calls; HTTP adds ~1 ms),
as the median of several runs after one warm-up, on a 30-day range.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gatrix.clickhouse.store import Store
from gatrix.insights import reports, sealed
from gatrix.insights.live import live
from gatrix.insights.query import QueryParams, build_query

PROJECT = "bench"
RUNS = 7

# Session rows → events by ARRAY JOIN over the session's length; all randomness is hashing
# of (session, step), so a given size always produces the same data.
GENERATE = """
INSERT INTO {db}.events
SELECT
    generateUUIDv4() AS id,
    '{project}' AS project_id,
    if(cityHash64(s, k, 'n') % 5 = 0,
       ['signup', 'click', 'download', 'purchase', 'share'][1 + cityHash64(s, k, 'e') % 5],
       'screen_view') AS name,
    toString(cityHash64(s, 'v') % {visitors}) AS device_id,
    '' AS profile_id,
    hex(cityHash64(s, 'sid')) AS session_id,
    start AS session_start,
    start + toIntervalSecond(k * (20 + cityHash64(s, k, 'gap') % 160)) AS created_at,
    created_at AS received_at,
    'https://bench.example' AS origin,
    concat('/p', toString(toUInt32(pow((cityHash64(s, k, 'p') % 10000) / 10000, 4) * 800)))
        AS path,
    '' AS query, '' AS title,
    if(k = 0, referrer_name, '') AS referrer,
    if(k = 0, referrer_name, '') AS referrer_name,
    if(k = 0, multiIf(referrer_name = '', '', referrer_name IN ('Google', 'Bing', 'DuckDuckGo'),
                      'search', referrer_name IN ('X', 'Reddit', 'Hacker News', 'LinkedIn'),
                      'social', 'link'), '') AS referrer_type,
    if(k = 0 AND cityHash64(s, 'utm') % 10 = 0,
       ['newsletter', 'twitter', 'partner'][1 + cityHash64(s, 'us') % 3], '') AS utm_source,
    if(utm_source != '', 'email', '') AS utm_medium,
    if(utm_source != '', 'spring', '') AS utm_campaign,
    '' AS utm_term, '' AS utm_content, '' AS click_id_type, '' AS click_id,
    ['US', 'KR', 'DE', 'GB', 'FR', 'JP', 'IN', 'BR', 'CA', 'NL'][
        1 + toUInt32(pow((cityHash64(s, 'c') % 1000) / 1000, 2) * 10)] AS country,
    '' AS region, '' AS city,
    ['Chrome', 'Safari', 'Firefox', 'Edge', 'Samsung Internet'][
        1 + toUInt32(pow((cityHash64(s, 'b') % 1000) / 1000, 2) * 5)] AS browser,
    toString(100 + cityHash64(s, 'bv') % 30) AS browser_version,
    ['Windows', 'iOS', 'Android', 'Mac OS X', 'Linux'][1 + cityHash64(s, 'o') % 5] AS os,
    '' AS os_version,
    ['desktop', 'mobile', 'tablet'][1 + cityHash64(s, 'd') % 3] AS device,
    '' AS brand, '' AS model, '' AS screen, '' AS language,
    0 AS duration, 0 AS revenue,
    if(name = 'screen_view', map(), map('plan', ['free', 'pro', 'team'][1 + cityHash64(s) % 3]))
        AS properties,
    'bench' AS sdk_name, '1' AS sdk_version
FROM
(
    SELECT
        number AS s,
        1 + cityHash64(number, 'len') % 20 AS len,
        toDateTime64('{now}', 3, 'UTC') - toIntervalSecond(cityHash64(number, 't') % (90 * 86400))
            AS start,
        ['', '', '', 'Google', 'Google', 'Bing', 'DuckDuckGo', 'X', 'Reddit', 'Hacker News',
         'LinkedIn', 'news.example', 'blog.example'][
            1 + toUInt32(pow((cityHash64(number, 'r') % 1000) / 1000, 2) * 13)] AS referrer_name
    FROM numbers({sessions})
)
ARRAY JOIN range(len) AS k
"""


def _timed(fn: Any, *args: Any) -> float:
    started = time.perf_counter()
    fn(*args)
    return (time.perf_counter() - started) * 1000


def _median_ms(fn: Any, *args: Any) -> float:
    fn(*args)  # warm-up: caches and lazily loaded parts
    return round(statistics.median(_timed(fn, *args) for _ in range(RUNS)), 1)


class RecordingStore(Store):
    """A store that keeps the statements it ran, to ask the engine what each one reads."""

    def __init__(self, store: Store) -> None:
        super().__init__(store.dsn, store.db, budget=store.budget)
        self.statements: list[tuple[str, dict[str, Any] | None]] = []

    def query_rows(
        self, sql: str, parameters: dict[str, Any] | None = None, bounded: bool = True
    ) -> list[tuple]:
        self.statements.append((sql, parameters))
        return super().query_rows(sql, parameters, bounded)

    def query_dicts(
        self,
        sql: str,
        parameters: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
        bounded: bool = True,
    ) -> list[dict]:
        self.statements.append((sql, parameters))
        return super().query_dicts(sql, parameters, settings, bounded)


def live_rows_read(store: Store, now: datetime) -> list[int]:
    """Rows each of live's statements reads (EXPLAIN ESTIMATE): what must not grow with the
    table."""
    recording = RecordingStore(store)
    live(recording, PROJECT, now)
    return [
        sum(row[3] for row in store.query_rows("EXPLAIN ESTIMATE " + sql, params))
        for sql, params in recording.statements
    ]


def generate(store: Store, events: int, now: datetime) -> float:
    sessions = max(1, events * 2 // 21)  # mean session length 10.5 events
    started = time.perf_counter()
    store.command(
        GENERATE.format(
            db=store.db,
            project=PROJECT,
            visitors=max(1, sessions // 2),
            sessions=sessions,
            now=now.strftime("%Y-%m-%d %H:%M:%S"),
        )
    )
    return time.perf_counter() - started


def settle(store: Store, limit_s: float = 120.0) -> float:
    """Wait for the merges a bulk load triggers: a live system measures in that steady state."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit_s:
        running = store.query_rows(
            "SELECT count() FROM system.merges WHERE database = {db:String}", {"db": store.db}
        )[0][0]
        if not running:
            break
        time.sleep(0.5)
    return time.perf_counter() - started


def measure(store: Store, now: datetime) -> dict[str, float]:
    def query(**params: Any) -> Any:
        return build_query(PROJECT, "UTC", QueryParams(**params), now)

    q30 = query(range="30d")
    compared = query(range="30d", compare="previous")
    filtered = query(range="30d", filters=["countries:is:KR"])
    page_filtered = query(range="30d", filters=["pages:is:/p1"])
    event_filtered = query(range="30d", filters=["name:is:purchase"])
    out = {
        "metrics": _median_ms(reports.metrics, store, compared),
        "timeseries_day": _median_ms(reports.timeseries, store, q30, "visitors"),
        "timeseries_sessions": _median_ms(reports.timeseries, store, q30, "sessions"),
        "live": _median_ms(live, store, PROJECT, now),
        "metrics_filtered_country": _median_ms(reports.metrics, store, filtered),
        "metrics_filtered_page": _median_ms(reports.metrics, store, page_filtered),
        "metrics_filtered_event": _median_ms(reports.metrics, store, event_filtered),
        "timeseries_filtered": _median_ms(reports.timeseries, store, filtered, "pageviews"),
        "breakdown_pages_filtered": _median_ms(reports.breakdown, store, filtered, "pages"),
    }
    for dim in (
        "pages",
        "entry_pages",
        "exit_pages",
        "referrers",
        "channels",
        "utm_source",
        "countries",
        "browsers",
        "browser_versions",
        "os",
        "devices",
        "events",
    ):
        out[f"breakdown_{dim}"] = _median_ms(reports.breakdown, store, q30, dim)
    out["breakdown_property"] = _median_ms(reports.property_breakdown, store, q30, "signup", "plan")
    return out


def _sealed_any(store: Store) -> bool:
    db = store.db
    marks = f"(SELECT count() FROM {db}.session_hours) + (SELECT count() FROM {db}.page_days)"
    return bool(store.query_rows(f"SELECT {marks}")[0][0])


def seal_everything(store: Store) -> tuple[int, float]:
    """What the minutely job does over a while, at once: every finished hour and day built."""
    started = time.perf_counter()
    hours = 0
    while built := sealed.seal(store, margin=timedelta(0)):
        hours += built
    return hours, time.perf_counter() - started


def measure_sessions(store: Store, now: datetime) -> dict[str, float]:
    """The reports the sealed rollups answer, as they read before anything is sealed."""
    compared = build_query(PROJECT, "UTC", QueryParams(range="30d", compare="previous"), now)
    q30 = build_query(PROJECT, "UTC", QueryParams(range="30d"), now)
    out = {"metrics": _median_ms(reports.metrics, store, compared)}
    for dim in ("referrers", "countries", "entry_pages", "pages"):
        out[f"breakdown_{dim}"] = _median_ms(reports.breakdown, store, q30, dim)
    return out


def run_insights_bench(args: Any) -> int:
    """`--keep` leaves each dataset in `--data-dir`, and a later run with `--keep` measures
    it again (at its generation time `now`, kept beside it) instead of generating anew."""
    sizes = [int(n) for n in (getattr(args, "events", None) or [1_000_000, 10_000_000])]
    keep = bool(getattr(args, "keep", False))
    data_dir = Path(getattr(args, "data_dir", None) or tempfile.mkdtemp(prefix="gatrix-bi-"))
    report: dict[str, Any] = {"runs": RUNS, "sizes": {}}
    for size in sizes:
        store = Store(f"chdb://{data_dir / 'clickhouse'}", f"bench_{size}")
        stamp = data_dir / f"bench_insights_{size}.now"
        seconds = 0.0
        if keep and stamp.exists():
            now = datetime.fromisoformat(stamp.read_text().strip())
            store.migrate()  # a newer schema's migrations, on the kept data
        else:
            now = datetime.now(UTC).replace(microsecond=0)
            store.command(f"DROP DATABASE IF EXISTS {store.db}")
            store.migrate()
            seconds = generate(store, size, now)
            if keep:
                stamp.write_text(now.isoformat())
        report["now"] = now.isoformat()
        rows = store.query_rows(f"SELECT count() FROM {store.db}.events")[0][0]
        print(f"{rows:,} events generated in {seconds:.1f} s", file=sys.stderr, flush=True)
        settled = settle(store)
        print(f"background merges settled after {settled:.1f} s", file=sys.stderr, flush=True)
        # the session reports read raw first (no hour sealed), then from the sealed hours
        unsealed = measure_sessions(store, now) if not _sealed_any(store) else {}
        hours, seal_s = seal_everything(store)
        print(
            f"sealed {hours:,} session hours and days, page days and day totals in {seal_s:.1f} s",
            file=sys.stderr,
        )
        latencies = measure(store, now)
        report["sizes"][str(size)] = {
            "events": rows,
            "generate_s": round(seconds, 1),
            "median_ms": latencies,
            "unsealed_median_ms": unsealed,
            "sealed_hours": hours,
            "seal_s": round(seal_s, 1),
            "live_rows_read": live_rows_read(store, now),
        }
        for name, ms in unsealed.items():
            print(f"  {size:>11,}  {name + ' (raw)':<28} {ms:8.1f} ms", file=sys.stderr)
        for name, ms in latencies.items():
            print(f"  {size:>11,}  {name:<28} {ms:8.1f} ms", file=sys.stderr, flush=True)
        if not keep:
            store.command(f"DROP DATABASE {store.db}")
    print(json.dumps(report))
    output = getattr(args, "output", None)
    if output:
        Path(output).write_text(json.dumps(report, indent=2) + "\n")
    return 0
