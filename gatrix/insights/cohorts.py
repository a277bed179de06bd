"""Retention cohorts (README "Retention"); `gatrix/retention.py` is the other retention, how
long events are kept.

A visitor's cohort is the interval (day, week from Monday, month, in the project's time
zone) of their first `start` step in the range; they returned at offset n when they did the
`return` step in the interval n after it, inside the range. Offset 0 is the cohort itself
(its size, 100%). Both steps default to "any event".
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gatrix.clickhouse.store import Store
from gatrix.insights.identity import resolution
from gatrix.insights.query import InvalidQuery, Query, bucket_starts
from gatrix.insights.sql import base_params, filtered_sessions, from_first_event, tz_literal
from gatrix.insights.steps import Step, prefilter

INTERVALS = ("day", "week", "month")
MAX_COHORTS = 180


def _bucket(column: str, interval: str, tz: str) -> str:
    """The interval's first day, as a Date in the project's zone (weeks from Monday)."""
    return {
        "day": f"toDate({column}, {tz})",
        "week": f"toMonday({column}, {tz})",
        "month": f"toStartOfMonth({column}, {tz})",
    }[interval]


def _offset(cohort: str, later: str, interval: str) -> str:
    if interval == "month":
        return f"toInt32(dateDiff('month', {cohort}, {later}))"
    days = f"toInt32(dateDiff('day', {cohort}, {later}))"
    return f"intDiv({days}, 7)" if interval == "week" else days


def retention(
    store: Store,
    q: Query,
    interval: str,
    start: Step | None = None,
    returned: Step | None = None,
) -> dict[str, Any]:
    if interval not in INTERVALS:
        raise InvalidQuery(f"interval must be one of {', '.join(INTERVALS)}")
    q = from_first_event(store, q)
    starts = [s for s in bucket_starts(q.range, interval) if q.now is None or s <= q.now]
    if len(starts) > MAX_COHORTS:
        raise InvalidQuery(
            f"more than {MAX_COHORTS} {interval} cohorts: pick a longer interval or a shorter range"
        )
    db, params = store.db, base_params(q)
    v = resolution(store, q.project_id)
    tz = tz_literal(q.range.timezone)
    where = [
        "project_id = {project:String}",
        "created_at >= {start:DateTime64(3, 'UTC')}",
        "created_at < {end:DateTime64(3, 'UTC')}",
    ]
    sessions = filtered_sessions(db, q, params)
    if sessions:
        where.append(sessions)
    base = " AND ".join(where)
    start_cond = start.sql(params) if start else "1"
    return_cond = returned.sql(params) if returned else "1"
    if start and returned:
        base += f" AND {prefilter([start, returned], params)}"
    # one pass over the events, grouped by visitor: the first start's interval and the
    # intervals with a return (a join of two per-visitor aggregates cost ~3x more)
    per_visitor = (
        f"SELECT {v.expr()} AS visitor, countIf({start_cond}) AS starts, "
        f"{_bucket(f'minIf(created_at, {start_cond})', interval, tz)} AS cohort, "
        f"groupUniqArrayIf({_bucket('created_at', interval, tz)}, {return_cond}) AS buckets "
        f"FROM {db}.events{v.join()} WHERE {base} GROUP BY visitor"
    )
    rows = store.query_rows(
        f"SELECT toString(cohort), offset, count() FROM (SELECT cohort, "
        f"arrayConcat([0], arrayFilter(o -> o > 0, arrayMap(b -> "
        f"{_offset('cohort', 'b', interval)}, buckets))) AS offsets "
        f"FROM ({per_visitor}) WHERE starts > 0) "
        f"ARRAY JOIN offsets AS offset GROUP BY cohort, offset",
        params.values,
    )
    counts = {(str(day), int(offset)): int(n) for day, offset, n in rows}
    return {
        "range": q.range.as_dict(),
        "interval": interval,
        "start": start.text() if start else None,
        "return": returned.text() if returned else None,
        "cohorts": [_cohort(i, s, starts, counts) for i, s in enumerate(starts)],
    }


def _cohort(
    index: int, begins: datetime, starts: list[datetime], counts: dict[tuple[str, int], int]
) -> dict[str, Any]:
    day = begins.date().isoformat()
    size = counts.get((day, 0), 0)
    values = []
    # only offsets whose interval has begun, inside the range: a triangle, not a square
    for offset in range(len(starts) - index):
        returned = counts.get((day, offset), 0)
        share = round(100 * returned / size, 1) if size else 0.0
        values.append({"offset": offset, "visitors": returned, "share": share})
    return {"cohort": day, "size": size, "values": values}
