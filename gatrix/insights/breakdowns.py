"""Breakdowns: the top values of one dimension in the range, with their numbers, paged.

Rows are sorted by the column a table shows first: page views for the page dimensions (pages,
entry and exit pages), events for custom events, visitors otherwise; ties by value. When an
event counted in the range carries revenue, `has_revenue` is true and every row carries
`revenue` (for page views of a path there is none: a page view does not earn it).
"""

from __future__ import annotations

from typing import Any

from gatrix.clickhouse.store import Store
from gatrix.insights.filters import (
    EVENT_DIMENSIONS,
    SESSION_DIMENSIONS,
    canonical_dimension,
)
from gatrix.insights.identity import resolution
from gatrix.insights.query import InvalidQuery, Query
from gatrix.insights.sealed import pages_rows_sql, sealed_days, session_breakdown_sql
from gatrix.insights.sql import (
    DT,
    SESSION_AGGREGATES,
    base_params,
    events_where,
    from_first_event,
    session_kpis,
    sessions_sql,
    uses_rollups,
)
from gatrix.pageviews import CUSTOM_EVENT_SQL, PAGEVIEW_SQL

PAGE_DIMENSIONS = ("pages", "entry_pages", "exit_pages")
# the sorts each kind of dimension offers, its default (the column shown first) first
SORTS = {
    "session": (
        "visitors",
        "sessions",
        "pageviews",
        "bounce_rate",
        "avg_session_duration",
        "revenue",
    ),
    "session_pages": (
        "pageviews",
        "visitors",
        "sessions",
        "bounce_rate",
        "avg_session_duration",
        "revenue",
    ),
    "pages": ("pageviews", "visitors"),
    "events": ("events", "visitors", "revenue"),
    "attributes": ("visitors", "pageviews", "events", "revenue"),
}
# sort name → the column of the statement's result it orders by
_SORT_COLUMNS = {"pageviews": "pageviews", "revenue": "revenue_total"}
_SESSION_SORT_COLUMNS = {"pageviews": "session_pageviews", "revenue": "revenue_total"}


def _kind(dimension: str) -> str:
    if dimension in SESSION_DIMENSIONS:
        return "session_pages" if dimension in PAGE_DIMENSIONS else "session"
    return dimension if dimension in ("pages", "events") else "attributes"


def _page(q: Query, dimension: str, page: int, limit: int, sort: str) -> dict[str, Any]:
    return {
        "dimension": dimension,
        "range": q.range.as_dict(),
        "page": page,
        "limit": limit,
        "sort": sort,
    }


def _finish(rows: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    """`rows` carry `revenue_anywhere` (a window count over every group, not only this page)
    and `revenue_total`; the answer keeps `revenue` on the rows only when there is some."""
    # popped from every row first: any() would stop at the first and leave the rest
    anywhere = [int(r.pop("revenue_anywhere", 0) or 0) for r in rows]
    has_revenue = any(anywhere)
    for r in rows:
        total = r.pop("revenue_total", None)
        if has_revenue:
            r["revenue"] = round(float(total or 0), 2)
    return {"has_more": len(rows) > limit, "has_revenue": has_revenue, "rows": rows[:limit]}


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
    kind = _kind(dimension)
    sort = sort or SORTS[kind][0]
    if sort not in SORTS[kind]:
        raise InvalidQuery(f"sort for {dimension} must be one of {', '.join(SORTS[kind])}")
    q = from_first_event(store, q)
    offset = (page - 1) * limit
    if kind.startswith("session"):
        column = SESSION_DIMENSIONS[dimension]
        rows = _session_breakdown(store, q, column, sort, limit + 1, offset)
    elif kind == "attributes":
        rows = _attribute_breakdown(store, q, EVENT_DIMENSIONS[dimension], sort, limit + 1, offset)
    elif kind == "events":
        rows = _events_breakdown(store, q, sort, limit + 1, offset)
    else:
        rows = _pages_breakdown(store, q, sort, limit + 1, offset)
    return {**_page(q, dimension, page, limit, sort), **_finish(rows, limit)}


def _order(sort: str, limit: int, offset: int, columns: dict[str, str] = _SORT_COLUMNS) -> str:
    column = columns.get(sort, sort)
    return f" ORDER BY {column} DESC, value ASC LIMIT {int(limit)} OFFSET {int(offset)}"


def _session_breakdown(
    store: Store, q: Query, column: str, sort: str, limit: int, offset: int
) -> list[dict[str, Any]]:
    db, params = store.db, base_params(q)
    v = resolution(store, q.project_id)
    inner = sessions_sql(db, q, params, extra=(column,))
    # revenue per session, joined to the (many) sessions: only the (few) sessions with some
    money = (
        f"SELECT session_id, sum(revenue) AS session_revenue FROM {db}.events "
        f"WHERE {events_where(db, q, params)} AND revenue != 0 GROUP BY session_id"
    )
    if not q.filters and v.direct:  # the sealed hours from their rollup, the rest raw
        rows = store.query_dicts(
            session_breakdown_sql(
                db, q, params, column, money, sealed_days(store, params, kind="session")
            )
            + _order(sort, limit, offset, _SESSION_SORT_COLUMNS),
            params.values,
        )
        return [_session_row(r) for r in rows]
    rows = store.query_dicts(
        f"SELECT {column} AS value, uniq({v.expr()}) AS visitors, {SESSION_AGGREGATES}, "
        f"countIf(pageviews <= 1 AND custom_events = 0) / count() * 100 AS bounce_rate, "
        f"avg(dateDiff('millisecond', first_at, last_at)) / 1000 AS avg_session_duration, "
        f"sum(session_revenue) AS revenue_total, "
        f"sum(countIf(session_revenue != 0)) OVER () AS revenue_anywhere "
        f"FROM ({inner}) AS s LEFT JOIN ({money}) AS r USING session_id{v.join()} GROUP BY value"
        + _order(sort, limit, offset, _SESSION_SORT_COLUMNS),
        params.values,
        # the planner guesses the revenue side (read from events) the larger and would hash
        # every session instead: 30 ms instead of 21 at 1M events
        settings={"query_plan_join_swap_table": "false"},
    )
    return [_session_row(r) for r in rows]


def _session_row(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "value": r["value"],
        "visitors": int(r["visitors"]),
        "pageviews": int(r["session_pageviews"] or 0),
        **session_kpis(r),
        "revenue_total": r["revenue_total"],
        "revenue_anywhere": r["revenue_anywhere"],
    }


def _pages_breakdown(
    store: Store, q: Query, sort: str, limit: int, offset: int
) -> list[dict[str, Any]]:
    db, params = store.db, base_params(q)
    v = resolution(store, q.project_id)
    if uses_rollups(q) and v.direct:
        rows = pages_rows_sql(db, params, sealed_days(store, params))
        # Merging the visitor sketches is the cost, counting page views is not: sorted by
        # page views, only the shown paths' sketches are merged.
        shown = ""
        if sort == "pageviews":  # the page is picked inside: the outer ORDER BY only sorts it
            shown = (
                f" WHERE path IN (SELECT path FROM ({rows}) GROUP BY path"
                f" ORDER BY sum(pv) DESC, path ASC LIMIT {int(limit)} OFFSET {int(offset)})"
            )
            offset = 0
        sql = (
            f"SELECT path AS value, uniqMerge(u) AS visitors, sum(pv) AS pageviews "
            f"FROM ({rows}){shown} GROUP BY value"
        )
    else:
        sql = (
            f"SELECT path AS value, uniq({v.expr()}) AS visitors, count() AS pageviews "
            f"FROM {db}.events{v.join()} "
            f"WHERE {events_where(db, q, params, pageviews_only=True)} "
            f"GROUP BY value"
        )
    return [
        {"value": r["value"], "visitors": int(r["visitors"]), "pageviews": int(r["pageviews"])}
        for r in store.query_dicts(sql + _order(sort, limit, offset), params.values)
    ]


def _events_breakdown(
    store: Store, q: Query, sort: str, limit: int, offset: int
) -> list[dict[str, Any]]:
    db, params = store.db, base_params(q)
    v = resolution(store, q.project_id)
    if uses_rollups(q) and v.direct:
        # the rollup has no revenue: the events that carry some are few, read them directly
        sql = (
            f"SELECT a.value AS value, a.visitors AS visitors, a.events AS events, "
            f"r.revenue_total AS revenue_total, "
            f"sum(r.revenue_events) OVER () AS revenue_anywhere FROM "
            f"(SELECT name AS value, uniqMerge(visitors) AS visitors, sum(events) AS events "
            f"FROM {db}.event_hourly WHERE project_id = {{project:String}} "
            f"AND hour >= {{start:{DT}}} AND hour < {{end:{DT}}} GROUP BY value) AS a "
            f"LEFT JOIN (SELECT name AS value, sum(revenue) AS revenue_total, "
            f"count() AS revenue_events FROM {db}.events WHERE project_id = {{project:String}} "
            f"AND created_at >= {{start:{DT}}} AND created_at < {{end:{DT}}} "
            f"AND {CUSTOM_EVENT_SQL} AND revenue != 0 GROUP BY value) AS r ON a.value = r.value"
        )
    else:
        sql = (
            f"SELECT name AS value, uniq({v.expr()}) AS visitors, count() AS events, "
            f"sum(revenue) AS revenue_total, "
            f"sum(countIf(revenue != 0)) OVER () AS revenue_anywhere "
            f"FROM {db}.events{v.join()} "
            f"WHERE {events_where(db, q, params, pageviews_only=False)} "
            f"GROUP BY value"
        )
    return _counted(store.query_dicts(sql + _order(sort, limit, offset), params.values), "events")


def _counted(rows: list[dict[str, Any]], *counts: str) -> list[dict[str, Any]]:
    """Rows of a breakdown read from events: the value, its visitors and `counts`, and the
    two revenue columns `_finish` turns into `revenue`."""
    return [
        {
            "value": r["value"],
            "visitors": int(r["visitors"]),
            **{name: int(r[name]) for name in counts},
            "revenue_total": r["revenue_total"],
            "revenue_anywhere": r["revenue_anywhere"],
        }
        for r in rows
    ]


def _attribute_breakdown(
    store: Store, q: Query, column: str, sort: str, limit: int, offset: int
) -> list[dict[str, Any]]:
    """Screen sizes and languages: attributes every event carries (no rollup has them)."""
    db, params = store.db, base_params(q)
    v = resolution(store, q.project_id)
    sql = (
        f"SELECT {column} AS value, uniq({v.expr()}) AS visitors, "
        f"countIf({PAGEVIEW_SQL}) AS pageviews, countIf({CUSTOM_EVENT_SQL}) AS events, "
        f"sum(revenue) AS revenue_total, "
        f"sum(countIf(revenue != 0)) OVER () AS revenue_anywhere "
        f"FROM {db}.events{v.join()} WHERE {events_where(db, q, params)} GROUP BY value"
    )
    rows = store.query_dicts(sql + _order(sort, limit, offset), params.values)
    return _counted(rows, "pageviews", "events")


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
        raise InvalidQuery(f"sort must be one of {', '.join(SORTS['events'])}")
    q = from_first_event(store, q)
    db, params = store.db, base_params(q)
    v = resolution(store, q.project_id)
    event_p, key_p = params.add(event), params.add(key)
    sql = (
        f"SELECT properties[{{{key_p}:String}}] AS value, uniq({v.expr()}) AS visitors, "
        f"count() AS events, sum(revenue) AS revenue_total, "
        f"sum(countIf(revenue != 0)) OVER () AS revenue_anywhere "
        f"FROM {db}.events{v.join()} WHERE {events_where(db, q, params)} "
        f"AND name = {{{event_p}:String}} AND mapContains(properties, {{{key_p}:String}}) "
        f"GROUP BY value" + _order(sort, limit + 1, (page - 1) * limit)
    )
    rows = _counted(store.query_dicts(sql, params.values), "events")
    return {**_page(q, f"properties/{event}/{key}", page, limit, sort), **_finish(rows, limit)}


def property_keys(store: Store, q: Query, event: str, limit: int = 20) -> list[str]:
    """The property keys a custom event carries, most frequent first."""
    q = from_first_event(store, q)
    db, params = store.db, base_params(q)
    event_p = params.add(event)
    rows = store.query_rows(
        f"SELECT arrayJoin(mapKeys(properties)) AS key, count() AS n FROM {db}.events "
        f"WHERE {events_where(db, q, params)} AND name = {{{event_p}:String}} "
        f"GROUP BY key ORDER BY n DESC, key ASC LIMIT {int(limit)}",
        params.values,
    )
    return [r[0] for r in rows]
