"""`python -m tools.bench people`: the People pages and erasure at scale.

The events are the insights benchmark's (generated inside ClickHouse, so every materialized
view fills as live ingestion would), with people on top: ~1M profiles identified (a profile
row and a device link each), half of the sessions of a profiled device log in after their
first event (so the person has events from before the login, and the events view adds its
own links), 5% of the profiles have an alias id with one event of its own, and the rest of
the devices stay anonymous. Measured in-process, median of several runs after a warm-up:
a narrow and a broad search, the default list, the list sorted by events, a person's page,
the KPIs with identity resolution against the same KPIs without it, and erasing one person.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any
from unittest import mock

from gatrix.clickhouse.store import Store
from gatrix.insights import reports
from gatrix.insights.erase import erase_person
from gatrix.insights.identity import DIRECT
from gatrix.insights.people import PeopleQuery, list_people
from gatrix.insights.person import Cursor, get_person
from gatrix.insights.query import QueryParams, build_query
from tools.bench.insights import GENERATE, PROJECT, settle

RUNS = 5
DEVICE = "toString(cityHash64(s, 'v') % {visitors}) AS device_id,"
PROFILE = "'' AS profile_id,"
# a device below {profiles} belongs to profile u<n>; half of its sessions log in after the
# first event
PEOPLE_DEVICE = "concat('d', toString(cityHash64(s, 'v') % {devices})) AS device_id,"
PEOPLE_PROFILE = (
    "if(cityHash64(s, 'v') % {devices} < {profiles} AND cityHash64(s, 'login') % 2 = 0 "
    "AND k >= 1, concat('u', toString(cityHash64(s, 'v') % {devices})), '') AS profile_id,"
)
FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Ken", "Margaret"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Thompson", "Hamilton"]
IDENTIFY = f"""
INSERT INTO {{db}}.profiles
SELECT '{PROJECT}', concat('u', toString(number)),
       {FIRST}[1 + number % {len(FIRST)}], {LAST}[1 + intDiv(number, 8) % {len(LAST)}],
       concat('user', toString(number), '@example', toString(number % 100), '.com'), '',
       map('plan', ['free', 'pro', 'team'][1 + number % 3],
           'company', concat('co', toString(number % 5000))),
       toDateTime64('{{now}}', 3, 'UTC') - toIntervalSecond(cityHash64(number, 'i') % (90 * 86400))
FROM numbers({{profiles}})
"""
LINKS = f"""
INSERT INTO {{db}}.identity_links
SELECT '{PROJECT}', concat('d', toString(number)), concat('u', toString(number)), 'device',
       toDateTime64('{{now}}', 3, 'UTC') - toIntervalSecond(cityHash64(number, 'i') % (90 * 86400))
FROM numbers({{profiles}})
"""
ALIASES = f"""
INSERT INTO {{db}}.identity_links
SELECT '{PROJECT}', concat('guest-', toString(number)), concat('u', toString(number)), 'alias',
       toDateTime64('{{now}}', 3, 'UTC') - toIntervalSecond(cityHash64(number, 'i') % (90 * 86400))
FROM numbers({{profiles}}) WHERE number % 20 = 0
"""
ALIAS_EVENTS = f"""
INSERT INTO {{db}}.events (id, project_id, name, device_id, profile_id, session_id,
                           session_start, created_at, received_at, path)
SELECT generateUUIDv4(), '{PROJECT}', 'screen_view', concat('guest-', toString(number)),
       concat('guest-', toString(number)), concat('g', toString(number)), at, at, at, '/cart'
FROM (SELECT number, toDateTime64('{{now}}', 3, 'UTC')
             - toIntervalSecond(cityHash64(number, 'g') % (90 * 86400)) AS at
      FROM numbers({{profiles}}) WHERE number % 20 = 0)
"""


def _timed(fn: Any, *args: Any) -> float:
    started = time.perf_counter()
    fn(*args)
    return (time.perf_counter() - started) * 1000


def _median_ms(fn: Any, *args: Any, runs: int = RUNS) -> float:
    fn(*args)  # warm-up
    return round(statistics.median(_timed(fn, *args) for _ in range(runs)), 1)


def generate(store: Store, events: int, profiles: int, now: datetime) -> dict[str, float]:
    sessions = max(1, events * 2 // 21)
    devices = max(profiles + 1, profiles * 6 // 5)
    sql = GENERATE.replace(DEVICE, PEOPLE_DEVICE).replace(PROFILE, PEOPLE_PROFILE)
    if sql == GENERATE:
        raise RuntimeError("the insights generator changed: update the people columns")
    fmt = {
        "db": store.db,
        "project": PROJECT,
        "visitors": devices,
        "devices": devices,
        "profiles": profiles,
        "sessions": sessions,
        "now": now.strftime("%Y-%m-%d %H:%M:%S"),
    }
    spent: dict[str, float] = {}
    for name, statement in (
        ("identify", IDENTIFY),
        ("links", LINKS),
        ("aliases", ALIASES),
        ("events", sql),
        ("alias_events", ALIAS_EVENTS),
    ):
        started = time.perf_counter()
        store.command(statement.format(**fmt))
        spent[name] = round(time.perf_counter() - started, 1)
        print(f"  generated {name} in {spent[name]} s", file=sys.stderr, flush=True)
    return spent


def measure(store: Store, now: datetime) -> dict[str, Any]:
    def people(**params: Any) -> Any:
        return list_people(store, PeopleQuery(PROJECT, **params))

    # a person with events before and after the login: the busiest of a sample
    busy = store.query_rows(
        f"SELECT key FROM {store.db}.visitor_sessions WHERE project_id = {{p:String}} "
        "AND key LIKE 'u%' AND key < 'u2' GROUP BY key ORDER BY sum(events) DESC LIMIT 4",
        {"p": PROJECT},
    )
    persons = [r[0] for r in busy]
    q30 = build_query(PROJECT, "UTC", QueryParams(range="30d"), now)
    out: dict[str, Any] = {
        "search_email": _median_ms(partial(people, q="user123456@")),
        "search_property": _median_ms(partial(people, q="co4242")),
        "search_broad": _median_ms(partial(people, q="example7.com")),
        "list_last_seen": _median_ms(people),
        "list_page_20": _median_ms(partial(people, page=20)),
        "list_sort_events": _median_ms(partial(people, sort="events"), runs=2),
        "profile_page": _median_ms(get_person, store, PROJECT, persons[0]),
        "profile_page_older": _median_ms(
            get_person, store, PROJECT, persons[0], Cursor(now.replace(day=1)), 20
        ),
        "metrics_resolved": _median_ms(reports.metrics, store, q30),
    }
    with mock.patch.object(reports, "resolution", lambda *_a, **_k: DIRECT):
        out["metrics_direct"] = _median_ms(reports.metrics, store, q30)
    profile = get_person(store, PROJECT, persons[0])
    out["profile_events"] = profile["totals"]["events"] if profile else 0
    erased = []
    for person in persons[1:4]:
        started = time.perf_counter()
        result = erase_person(store, PROJECT, person)
        erased.append((time.perf_counter() - started) * 1000)
        out.setdefault("erase_deleted", result["deleted"] if result else None)
    out["erase_one"] = round(statistics.median(erased), 1)
    return out


def run_people_bench(args: Any) -> int:
    """`--keep` leaves the data in `--data-dir` and a later run with `--keep` measures it
    again (with its generation time `now`, kept beside it) instead of generating anew. Each
    run erases three people, so a kept dataset loses a few hundred of its 10M events."""
    events, profiles = int(args.events), int(args.profiles)
    keep = bool(getattr(args, "keep", False))
    data_dir = Path(getattr(args, "data_dir", None) or tempfile.mkdtemp(prefix="gatrix-bp-"))
    store = Store(f"chdb://{data_dir / 'clickhouse'}", "bench_people")
    stamp = data_dir / f"bench_people_{events}_{profiles}.now"
    spent: dict[str, float] = {}
    if keep and stamp.exists():
        now = datetime.fromisoformat(stamp.read_text().strip())
        store.migrate()  # a newer schema's migrations, on the kept data
    else:
        now = datetime.now(UTC).replace(microsecond=0)
        store.command(f"DROP DATABASE IF EXISTS {store.db}")
        store.migrate()
        spent = generate(store, events, profiles, now)
        if keep:
            stamp.write_text(now.isoformat())
    counts = {
        table: store.query_rows(f"SELECT count() FROM {store.db}.{table}")[0][0]
        for table in ("events", "profiles", "identity_links", "visitor_sessions")
    }
    print(f"  rows: {counts}", file=sys.stderr, flush=True)
    print(f"  merges settled after {settle(store):.1f} s", file=sys.stderr, flush=True)
    latencies = measure(store, now)
    for name, value in latencies.items():
        print(f"  {name:<22} {value}", file=sys.stderr, flush=True)
    report = {
        "now": now.isoformat(),
        "runs": RUNS,
        "events": events,
        "profiles": profiles,
        "rows": counts,
        "generate_s": spent,
        "median_ms": latencies,
    }
    if not keep:
        store.command(f"DROP DATABASE {store.db}")
    print(json.dumps(report))
    if getattr(args, "output", None):
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    return 0
