"""`python -m tools.bench product`: latency of the product reports (funnel, retention, paths,
goals) on the same synthetic data as `insights` (tools/bench/insights.py generates it).

Each report is timed in-process as the median of several runs after one warm-up. The funnel
is also run as ClickHouse's `windowFunnel` (levels only, no step times) to show what the
`arrayFold` that also yields the times costs beside it.
"""

from __future__ import annotations

import json
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gatrix.clickhouse.store import Store
from gatrix.insights import cohorts, funnels, goals, paths, reports
from gatrix.insights.query import Query, QueryParams, build_query
from gatrix.insights.steps import parse_step
from gatrix.meta.goals import GoalDef
from tools.bench.insights import PROJECT, RUNS, _median_ms, generate, settle

FUNNEL = ["page:/p0", "page:/p1", "event:signup", "event:purchase"]
GOALS = [
    GoalDef(1, "Signup", "event:signup", ""),
    GoalDef(2, "Purchase", "event:purchase", ""),
    GoalDef(3, "Pro purchase", "event:purchase[plan=pro]", ""),
    GoalDef(4, "Pricing", "page:/p1*", ""),
    GoalDef(5, "Share", "event:share", ""),
]


def window_funnel_counts(store: Store, q: Query) -> list[tuple]:
    """The same 4 steps with windowFunnel: the deepest level per visitor, nothing more."""
    return store.query_rows(
        f"SELECT level, count() FROM (SELECT device_id, windowFunnel(86400)("
        f"toDateTime(created_at), name = 'screen_view' AND path = '/p0', "
        f"name = 'screen_view' AND path = '/p1', name = 'signup', name = 'purchase') AS level "
        f"FROM {store.db}.events WHERE project_id = {{project:String}} "
        f"AND created_at >= {{start:DateTime64(3, 'UTC')}} "
        f"AND created_at < {{end:DateTime64(3, 'UTC')}} GROUP BY device_id) GROUP BY level",
        {"project": q.project_id, "start": q.range.start, "end": q.range.end},
    )


def measure(store: Store, now: datetime) -> dict[str, float]:
    def query(**params: Any) -> Query:
        return build_query(PROJECT, "UTC", QueryParams(**params), now)

    q30 = query(range="30d")
    weeks = query(
        range="custom",
        start=(now - timedelta(weeks=12)).date().isoformat(),
        end=now.date().isoformat(),
    )
    steps = [parse_step(s) for s in FUNNEL]
    day = 86400
    page_filtered = query(range="30d", filters=["pages:is:/p1"])
    return {
        # an existing report over the same raw events: how loaded the machine was
        "calibration_metrics_filtered_page": _median_ms(reports.metrics, store, page_filtered),
        "funnel_4_steps_30d": _median_ms(funnels.funnel, store, q30, steps, day),
        "funnel_windowfunnel_levels_only": _median_ms(window_funnel_counts, store, q30),
        "funnel_4_steps_by_browser": _median_ms(funnels.funnel, store, q30, steps, day, "browsers"),
        "funnel_4_steps_by_page": _median_ms(funnels.funnel, store, q30, steps, day, "pages"),
        "retention_week_12_weeks": _median_ms(cohorts.retention, store, weeks, "week"),
        "retention_day_30d_steps": _median_ms(
            cohorts.retention,
            store,
            q30,
            "day",
            parse_step("event:signup"),
            parse_step("event:purchase"),
        ),
        "paths_from_depth_3": _median_ms(paths.paths, store, q30, parse_step("page:/p0"), "from"),
        "paths_to_depth_3": _median_ms(paths.paths, store, q30, parse_step("page:/p1"), "to"),
        "goals_5": _median_ms(goals.goals, store, q30, GOALS),
        "goal_breakdown_referrers": _median_ms(
            goals.goal_breakdown, store, q30, GOALS[1], "referrers"
        ),
        "goal_breakdown_pages": _median_ms(goals.goal_breakdown, store, q30, GOALS[1], "pages"),
    }


def run_product_bench(args: Any) -> int:
    """`--keep` leaves the data in `--data-dir` and a later run with `--keep` measures it
    again (with its generation time `now`, kept beside it) instead of generating anew."""
    size = int(getattr(args, "events", None) or 10_000_000)
    keep = bool(getattr(args, "keep", False))
    data_dir = Path(getattr(args, "data_dir", None) or tempfile.mkdtemp(prefix="gatrix-bp-"))
    store = Store(f"chdb://{data_dir / 'clickhouse'}", f"bench_product_{size}")
    stamp = data_dir / f"bench_product_{size}.now"
    if keep and stamp.exists():
        now = datetime.fromisoformat(stamp.read_text().strip())
    else:
        now = datetime.now(UTC).replace(microsecond=0)
        store.command(f"DROP DATABASE IF EXISTS {store.db}")
        store.migrate()
        seconds = generate(store, size, now)
        print(f"events generated in {seconds:.1f} s", file=sys.stderr, flush=True)
        if keep:
            stamp.write_text(now.isoformat())
    rows = store.query_rows(f"SELECT count() FROM {store.db}.events")[0][0]
    print(f"{rows:,} events", file=sys.stderr, flush=True)
    settle(store)
    latencies = measure(store, now)
    for name, ms in latencies.items():
        print(f"  {size:>11,}  {name:<34} {ms:8.1f} ms", file=sys.stderr, flush=True)
    if not keep:
        store.command(f"DROP DATABASE {store.db}")
    report = {"now": now.isoformat(), "runs": RUNS, "events": rows, "median_ms": latencies}
    print(json.dumps(report))
    output = getattr(args, "output", None)
    if output:
        Path(output).write_text(json.dumps(report, indent=2) + "\n")
    return 0
