"""The numbers the product shows: KPIs and time series for one `Query`; breakdowns live in
`breakdowns` and are re-exported here, so callers read every report from this module.

Definitions (README repeats them): visitors = distinct visitor ids with an event in the
range; a session counts in the range where it starts; bounce = a session with at most one
page view and no custom event; duration = last - first event of the session.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gatrix.clickhouse.store import Store
from gatrix.insights.breakdowns import SORTS, breakdown, property_breakdown, property_keys
from gatrix.insights.filters import Params
from gatrix.insights.identity import DIRECT, Visitors, resolution
from gatrix.insights.query import InvalidQuery, Query, bucket_starts
from gatrix.insights.sealed import session_totals_sql, totals_rows_sql
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
    revenue_total,
    session_kpis,
    sessions_sql,
    uses_rollups,
)
from gatrix.pageviews import CUSTOM_EVENT_SQL, PAGEVIEW_SQL

UTC_ZONES = ("UTC", "Etc/UTC", "GMT", "Etc/GMT", "Etc/UCT", "UCT", "Universal", "Zulu")
METRICS = (
    "visitors",
    "sessions",
    "pageviews",
    "events",
    "views_per_session",
    "bounce_rate",
    "avg_session_duration",
    "revenue",
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
    v = resolution(store, q.project_id)
    sql = " UNION ALL ".join(
        f"SELECT {i} AS period, e.*, s.* FROM "
        f"({_event_totals_sql(db, pq, params, period, v)}) AS e "
        f"CROSS JOIN ({session_totals_sql(db, pq, params, period)}) AS s"
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
        "revenue": revenue_total(row["revenue_total"], row["revenue_events"]),
    }


def _event_totals_sql(db: str, q: Query, params: Params, period: Period, v: Visitors) -> str:
    """One row: visitors, pageviews, events, revenue_total, revenue_events of the period."""
    period.bind(params, q)
    if not q.filters and v.direct:
        return _edged_totals_sql(db, period)
    if uses_rollups(q):
        hours = (
            f"project_id = {{project:String}} AND hour >= {period.start} AND hour < {period.end}"
        )
        # the rollup has no revenue: the events that carry some are few, read them directly
        return (
            f"SELECT u.visitors AS visitors, h.pageviews AS pageviews, h.events AS events, "
            f"r.revenue_total AS revenue_total, r.revenue_events AS revenue_events FROM "
            f"(SELECT sum(pageviews) AS pageviews, sum(custom_events) AS events "
            f"FROM {db}.hourly WHERE {hours}) AS h "
            f"CROSS JOIN ({_hourly_visitors_sql(db, v, hours)}) AS u CROSS JOIN "
            f"(SELECT sum(revenue) AS revenue_total, count() AS revenue_events FROM {db}.events "
            f"WHERE project_id = {{project:String}} AND created_at >= {period.start} "
            f"AND created_at < {period.end} AND revenue != 0) AS r"
        )
    return _event_counts_sql(db, q, params, v, period)


def _event_counts_sql(
    db: str, q: Query, params: Params, v: Visitors, period: Period = CURRENT, bucket: str = ""
) -> str:
    """visitors, pageviews, events, revenue_total and revenue_events of the events that count
    under the filters, read from `events`; per `bucket` (an expression of the row) if given."""
    key, by = (f"{bucket} AS bucket, ", " GROUP BY bucket") if bucket else ("", "")
    if not any(f.level in ("page", "event") for f in q.filters):
        return (
            f"SELECT {key}uniq({v.expr()}) AS visitors, countIf({PAGEVIEW_SQL}) AS pageviews, "
            f"countIf({CUSTOM_EVENT_SQL}) AS events, sum(revenue) AS revenue_total, "
            f"countIf(revenue != 0) AS revenue_events FROM {db}.events{v.join()} "
            f"WHERE {events_where(db, q, params, period=period)}{by}"
        )
    # Page views and custom events pass different tests under event filters: read each kind
    # on its own, so each read is a key range of its names (and the page views' one can come
    # from the table's by-path projection), instead of testing both kinds on every event of
    # the range; the visitors of both merge as one sketch. 3.8 → 1.1 s at 100M events.
    parts = " UNION ALL ".join(
        f"SELECT {key}uniqState({v.expr()}) AS u, {pv} AS pv, {ce} AS ce, sum(revenue) AS rt, "
        f"countIf(revenue != 0) AS rn FROM {db}.events{v.join()} "
        f"WHERE {events_where(db, q, params, pageviews_only=only, period=period)}{by}"
        for only, pv, ce in ((True, "count()", "0"), (False, "0", "count()"))
    )
    return (
        f"SELECT {'bucket, ' if bucket else ''}uniqMerge(u) AS visitors, sum(pv) AS pageviews, "
        f"sum(ce) AS events, sum(rt) AS revenue_total, sum(rn) AS revenue_events "
        f"FROM ({parts}){by}"
    )


def _edged_totals_sql(db: str, period: Period) -> str:
    """The unfiltered totals of a period: its sealed days from `total_daily`, its other whole
    hours from `hourly`, the minutes at its ends (a range that ends now, and its previous
    period) from `events`; the visitors of all merged as one sketch."""
    counted = (
        f"SELECT u, pv, ce FROM ({totals_rows_sql(db, period)}) "
        "UNION ALL SELECT uniqState(device_id), "
        f"countIf({PAGEVIEW_SQL}), countIf({CUSTOM_EVENT_SQL}) FROM {db}.events "
        f"WHERE project_id = {{project:String}} AND {period.edges()}"
    )
    return (
        f"SELECT c.visitors AS visitors, c.pageviews AS pageviews, c.events AS events, "
        f"r.revenue_total AS revenue_total, r.revenue_events AS revenue_events FROM "
        f"(SELECT uniqMerge(u) AS visitors, sum(pv) AS pageviews, sum(ce) AS events "
        f"FROM ({counted})) AS c CROSS JOIN "
        f"(SELECT sum(revenue) AS revenue_total, count() AS revenue_events FROM {db}.events "
        f"WHERE project_id = {{project:String}} AND created_at >= {period.start} "
        f"AND created_at < {period.end} AND revenue != 0) AS r"
    )


def _hourly_visitors_sql(db: str, v: Visitors, hours: str, bucket: str = "") -> str:
    """Visitors from the rollups (optionally per `bucket` of `hour`): the hourly sketches
    while nothing is linked, else the hourly visitor keys resolved through the links."""
    group = (f"{bucket} AS bucket, ", " GROUP BY bucket") if bucket else ("", "")
    if v.direct:
        return (
            f"SELECT {group[0]}uniqMerge(visitors) AS visitors FROM {db}.hourly "
            f"WHERE {hours}{group[1]}"
        )
    return (
        f"SELECT {group[0]}uniq({v.expr('k.key_hash')}) AS visitors "
        f"FROM {db}.visitor_hourly AS k{v.join('k.key_hash')} WHERE {hours}{group[1]}"
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
    comparison = q.comparison(same_elapsed=False)  # the whole previous period, overlaid
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
    v = resolution(store, q.project_id) if metric == "visitors" else DIRECT
    if uses_rollups(q) and q.interval != "minute":
        bucket = bucket_sql("hour", q.interval, tz)
        hours = (
            f"project_id = {{project:String}} AND hour >= {{start:{DT}}} AND hour < {{end:{DT}}}"
        )
        if metric == "visitors" and v.direct and _whole_days(q):
            rows = totals_rows_sql(db, CURRENT)
            sql = (
                f"SELECT {bucket_sql('t', q.interval, tz)} AS bucket, uniqMerge(u) AS visitors "
                f"FROM ({rows}) GROUP BY bucket"
            )
        elif metric == "visitors":
            sql = _hourly_visitors_sql(db, v, hours, bucket)
        else:
            sql = (
                f"SELECT {bucket} AS bucket, sum(pageviews) AS pageviews, "
                f"sum(custom_events) AS events FROM {db}.hourly WHERE {hours} GROUP BY bucket"
            )
    else:
        sql = _event_counts_sql(db, q, params, v, bucket=bucket_sql("created_at", q.interval, tz))
    return {r["bucket"]: int(r[column] or 0) for r in store.query_dicts(sql, params.values)}


def _whole_days(q: Query) -> bool:
    """Whether each bucket of the series is whole UTC days, so that sealed days can stand
    for their hours."""
    return q.interval in ("day", "week", "month") and q.range.timezone in UTC_ZONES


__all__ = [  # the dashboard and the API read every report from this module
    "METRICS",
    "SERIES_METRICS",
    "SORTS",
    "breakdown",
    "from_first_event",
    "metrics",
    "property_breakdown",
    "property_keys",
    "timeseries",
]
