"""The numbers the product shows: KPIs, time series and breakdowns, for one `Query`.

Definitions (README repeats them): visitors = distinct visitor ids with an event in the
range; a session counts in the range where it starts; bounce = a session with at most one
page view and no custom event; duration = last - first event of the session.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gatrix.clickhouse.store import Store
from gatrix.insights.filters import (
    SESSION_DIMENSIONS,
    Params,
    canonical_dimension,
)
from gatrix.insights.query import InvalidQuery, Query, bucket_starts
from gatrix.insights.sql import (
    CURRENT,
    DT,
    PREVIOUS,
    RATIO_METRICS,
    SESSION_AGGREGATES,
    Period,
    base_params,
    bucket_sql,
    events_where,
    from_first_event,
    session_kpis,
    sessions_sql,
    uses_rollups,
)
from gatrix.pageviews import PAGEVIEW_SQL

METRICS = (
    "visitors",
    "sessions",
    "pageviews",
    "events",
    "views_per_session",
    "bounce_rate",
    "avg_session_duration",
)
SERIES_METRICS = (
    "visitors",
    "pageviews",
    "sessions",
    "events",
    "views_per_session",
    "bounce_rate",
    "avg_session_duration",
)
# --- KPIs


def metrics(store: Store, q: Query) -> dict[str, Any]:
    """The KPIs of the range and, with `compare`, of the comparison period, in one statement.
    Without `compare` the previous period is not read and `previous` holds only None."""
    q = from_first_event(store, q)
    comparison = q.comparison()
    periods: list[tuple[Period, Query]] = [(CURRENT, q)]
    if comparison is not None:
        periods.append((PREVIOUS, comparison))
    db = store.db
    params = Params({"project": q.project_id})
    sql = " UNION ALL ".join(
        f"SELECT {i} AS period, e.*, s.* FROM ({_event_totals_sql(db, pq, params, period)}) AS e "
        f"CROSS JOIN (SELECT {SESSION_AGGREGATES} "
        f"FROM ({sessions_sql(db, pq, params, period=period)})) AS s"
        for i, (period, pq) in enumerate(periods)
    )
    rows = {int(r["period"]): r for r in store.query_dicts(sql, params.values)}
    out = {**_kpis(rows[0]), "range": q.range.as_dict()}
    if comparison is not None:
        out["previous"] = {**_kpis(rows[1]), "range": comparison.range.as_dict()}
    else:
        out["previous"] = {**dict.fromkeys(METRICS), "range": None}
    return out


def _kpis(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "visitors": int(row["visitors"] or 0),
        "pageviews": int(row["pageviews"] or 0),
        "events": int(row["events"] or 0),
        **session_kpis(row),
    }


def _event_totals_sql(db: str, q: Query, params: Params, period: Period) -> str:
    """One row: visitors, pageviews and events of the period."""
    period.bind(params, q)
    if uses_rollups(q):
        return (
            f"SELECT uniqMerge(visitors) AS visitors, sum(pageviews) AS pageviews, "
            f"sum(custom_events) AS events FROM {db}.hourly WHERE project_id = {{project:String}}"
            f" AND hour >= {period.start} AND hour < {period.end}"
        )
    return (
        f"SELECT uniq(device_id) AS visitors, countIf({PAGEVIEW_SQL}) AS pageviews, "
        f"countIf(NOT {PAGEVIEW_SQL}) AS events FROM {db}.events "
        f"WHERE {events_where(db, q, params, period=period)}"
    )


# --- time series


def timeseries(store: Store, q: Query, metric: str) -> dict[str, Any]:
    """`points` up to now (no bucket that has not begun); `axis` every bucket of the range,
    so a chart can span the whole period; `previous` the whole comparison period."""
    if metric not in SERIES_METRICS:
        raise InvalidQuery(f"unknown metric {metric!r}; use one of {', '.join(SERIES_METRICS)}")
    q = from_first_event(store, q)
    axis = bucket_starts(q.range, q.interval)
    begun = [b for b in axis if q.now is None or b <= q.now]
    out: dict[str, Any] = {
        "metric": metric,
        "interval": q.interval,
        "range": q.range.as_dict(),
        "points": _points(begun, _series_values(store, q, metric), metric),
        "axis": [b.isoformat() for b in axis],
    }
    comparison = q.comparison()
    if comparison is not None:
        out["previous"] = _points(
            bucket_starts(comparison.range, q.interval),
            _series_values(store, comparison, metric),
            metric,
        )
    return out


def _points(buckets: list[datetime], values: dict[str, Any], metric: str) -> list[dict[str, Any]]:
    empty = None if metric in RATIO_METRICS else 0
    return [
        {"bucket": b.isoformat(), "value": values.get(b.strftime("%Y-%m-%d %H:%M"), empty)}
        for b in buckets
    ]


def _series_values(store: Store, q: Query, metric: str) -> dict[str, Any]:
    db, tz = store.db, q.range.timezone
    params = base_params(q)
    if metric in ("sessions", *RATIO_METRICS):
        bucket = bucket_sql("first_at", q.interval, tz)
        rows = store.query_dicts(
            f"SELECT {bucket} AS bucket, {SESSION_AGGREGATES} "
            f"FROM ({sessions_sql(db, q, params)}) GROUP BY bucket",
            params.values,
        )
        return {r["bucket"]: session_kpis(r)[metric] for r in rows}
    column = {"visitors": "visitors", "pageviews": "pageviews", "events": "events"}[metric]
    if uses_rollups(q) and q.interval != "minute":
        bucket = bucket_sql("hour", q.interval, tz)
        sql = (
            f"SELECT {bucket} AS bucket, uniqMerge(visitors) AS visitors, "
            f"sum(pageviews) AS pageviews, sum(custom_events) AS events FROM {db}.hourly "
            f"WHERE project_id = {{project:String}} AND hour >= {{start:{DT}}} "
            f"AND hour < {{end:{DT}}} GROUP BY bucket"
        )
    else:
        bucket = bucket_sql("created_at", q.interval, tz)
        sql = (
            f"SELECT {bucket} AS bucket, uniq(device_id) AS visitors, "
            f"countIf({PAGEVIEW_SQL}) AS pageviews, countIf(NOT {PAGEVIEW_SQL}) AS events "
            f"FROM {db}.events WHERE {events_where(db, q, params)} GROUP BY bucket"
        )
    return {r["bucket"]: int(r[column] or 0) for r in store.query_dicts(sql, params.values)}


# --- breakdowns

# the sorts each kind of dimension offers, the default first: the column a table shows first
# (page views for the page dimensions, events for custom events, visitors otherwise)
SORTS = {
    "session": ("visitors", "sessions", "pageviews", "bounce_rate", "avg_session_duration"),
    "session_pages": ("pageviews", "visitors", "sessions", "bounce_rate", "avg_session_duration"),
    "pages": ("pageviews", "visitors"),
    "events": ("events", "visitors"),
}
PAGE_DIMENSIONS = ("pages", "entry_pages", "exit_pages")


def breakdown(
    store: Store, q: Query, dimension: str, limit: int = 10, page: int = 1, sort: str | None = None
) -> dict[str, Any]:
    if not 1 <= limit <= 1000:
        raise InvalidQuery("limit must be between 1 and 1000")
    if not 1 <= page <= 10_000:
        raise InvalidQuery("page must be between 1 and 10000")
    try:
        dimension = canonical_dimension(dimension)
    except ValueError as exc:
        raise InvalidQuery(str(exc)) from exc
    if dimension == "name":
        dimension = "events"
    kind = dimension
    if dimension in SESSION_DIMENSIONS:
        kind = "session_pages" if dimension in PAGE_DIMENSIONS else "session"
    sort = sort or SORTS[kind][0]
    if sort not in SORTS[kind]:
        raise InvalidQuery(f"sort for {dimension} must be one of {', '.join(SORTS[kind])}")
    offset = (page - 1) * limit
    if kind.startswith("session"):
        rows = _session_breakdown(store, q, SESSION_DIMENSIONS[dimension], sort, limit + 1, offset)
    else:
        rows = _event_breakdown(store, q, kind, sort, limit + 1, offset)
    return {
        "dimension": dimension,
        "range": q.range.as_dict(),
        "page": page,
        "limit": limit,
        "sort": sort,
        "has_more": len(rows) > limit,
        "rows": rows[:limit],
    }


def _session_breakdown(
    store: Store, q: Query, column: str, sort: str, limit: int, offset: int
) -> list[dict[str, Any]]:
    params = base_params(q)
    inner = sessions_sql(store.db, q, params, extra=(column,))
    rows = store.query_dicts(
        f"SELECT {column} AS value, uniq(device_id) AS visitors, {SESSION_AGGREGATES}, "
        f"countIf(pageviews <= 1 AND custom_events = 0) / count() * 100 AS bounce_rate, "
        f"avg(dateDiff('millisecond', first_at, last_at)) / 1000 AS avg_session_duration "
        f"FROM ({inner}) GROUP BY value "
        f"ORDER BY {'session_pageviews' if sort == 'pageviews' else sort} DESC, value ASC "
        f"LIMIT {int(limit)} OFFSET {int(offset)}",
        params.values,
    )
    return [
        {
            "value": r["value"],
            "visitors": int(r["visitors"]),
            "pageviews": int(r["session_pageviews"] or 0),
            **session_kpis(r),
        }
        for r in rows
    ]


# event-level breakdowns: (column, rollup table, rollup count column, count name, page views?)
EVENT_BREAKDOWNS = {
    "pages": ("path", "page_hourly", "pageviews", "pageviews", True),
    "events": ("name", "event_hourly", "events", "events", False),
}


def _event_breakdown(
    store: Store, q: Query, kind: str, sort: str, limit: int, offset: int
) -> list[dict[str, Any]]:
    column, rollup, rollup_count, count, pageviews = EVENT_BREAKDOWNS[kind]
    db, params = store.db, base_params(q)
    if uses_rollups(q):
        sql = (
            f"SELECT {column} AS value, uniqMerge(visitors) AS visitors, "
            f"sum({rollup_count}) AS {count} FROM {db}.{rollup} "
            f"WHERE project_id = {{project:String}} "
            f"AND hour >= {{start:{DT}}} AND hour < {{end:{DT}}} GROUP BY value"
        )
    else:
        sql = (
            f"SELECT {column} AS value, uniq(device_id) AS visitors, count() AS {count} "
            f"FROM {db}.events WHERE {events_where(db, q, params, pageviews_only=pageviews)} "
            f"GROUP BY value"
        )
    sql += f" ORDER BY {sort} DESC, value ASC LIMIT {int(limit)} OFFSET {int(offset)}"
    return [
        {"value": r["value"], "visitors": int(r["visitors"]), count: int(r[count])}
        for r in store.query_dicts(sql, params.values)
    ]


def property_breakdown(
    store: Store,
    q: Query,
    event: str,
    key: str,
    limit: int = 10,
    page: int = 1,
    sort: str | None = None,
) -> dict[str, Any]:
    if not 1 <= limit <= 1000 or not 1 <= page <= 10_000:
        raise InvalidQuery("limit must be 1–1000 and page 1–10000")
    sort = sort or "events"
    if sort not in SORTS["events"]:
        raise InvalidQuery("sort must be visitors or events")
    db, params = store.db, base_params(q)
    event_p, key_p = params.add(event), params.add(key)
    sql = (
        f"SELECT properties[{{{key_p}:String}}] AS value, uniq(device_id) AS visitors, "
        f"count() AS events FROM {db}.events WHERE {events_where(db, q, params)} "
        f"AND name = {{{event_p}:String}} AND mapContains(properties, {{{key_p}:String}}) "
        f"GROUP BY value ORDER BY {sort} DESC, value ASC "
        f"LIMIT {int(limit) + 1} OFFSET {int((page - 1) * limit)}"
    )
    rows = [
        {"value": r["value"], "visitors": int(r["visitors"]), "events": int(r["events"])}
        for r in store.query_dicts(sql, params.values)
    ]
    return {
        "dimension": f"properties/{event}/{key}",
        "range": q.range.as_dict(),
        "page": page,
        "limit": limit,
        "sort": sort,
        "has_more": len(rows) > limit,
        "rows": rows[:limit],
    }


def property_keys(store: Store, q: Query, event: str, limit: int = 20) -> list[str]:
    """The property keys a custom event carries, most frequent first."""
    db, params = store.db, base_params(q)
    event_p = params.add(event)
    rows = store.query_rows(
        f"SELECT arrayJoin(mapKeys(properties)) AS key, count() AS n FROM {db}.events "
        f"WHERE {events_where(db, q, params)} AND name = {{{event_p}:String}} "
        f"GROUP BY key ORDER BY n DESC, key ASC LIMIT {int(limit)}",
        params.values,
    )
    return [r[0] for r in rows]
