"""SQL building blocks shared by the reports: the filtered session set, the filtered event
set, and the choice between rollups and raw events.

Rollups (hourly, page_hourly, event_hourly) answer unfiltered questions over ranges aligned
to whole UTC hours; anything else reads `events` / `sessions` directly.

Which events count under event filters (README "Filters"): a page view counts when it passes
the page filters and its session has an event passing the other event filters; a custom event
counts when it passes the other event filters and its session has a page view passing the page
filters. So `name:is:purchase` counts the purchases and the page views of sessions with one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from gatrix.clickhouse.store import Store
from gatrix.insights.filters import (
    SESSION_DIMENSIONS,
    Params,
    event_conditions,
    page_conditions,
    session_conditions,
)
from gatrix.insights.query import EARLIEST, Query, starting_at_first_event
from gatrix.meta import timezones
from gatrix.pageviews import CUSTOM_EVENT_SQL, PAGEVIEW_SQL

_TZ_SAFE = re.compile(r"^[A-Za-z0-9_+\-/]{1,64}$")
DT = "DateTime64(3, 'UTC')"
# a session that has events in the range may have begun up to this long before it
SESSION_LEAD = timedelta(days=1)
# session columns a subquery can expose, with their merge expression
SESSION_COLUMNS = {
    "device_id": "max(device_id)",
    "profile_id": "max(profile_id)",
    "pageviews": "sum(pageviews)",
    "custom_events": "sum(custom_events)",
    "first_at": "min(first_at)",
    "last_at": "max(last_at)",
    "entry_path": "argMinMerge(entry_path)",
    "exit_path": "argMaxMerge(exit_path)",
    **{
        col: f"max({col})"
        for col in set(SESSION_DIMENSIONS.values())
        if col not in ("entry_path", "exit_path")
    },
}
BASE_SESSION_COLUMNS = (
    "device_id",
    "profile_id",
    "pageviews",
    "custom_events",
    "first_at",
    "last_at",
)
# over a sessions_sql subquery; `session_kpis` turns a row of them into numbers
SESSION_AGGREGATES = (
    "count() AS sessions, sum(pageviews) AS session_pageviews, "
    "countIf(pageviews <= 1 AND custom_events = 0) AS bounces, "
    "avg(dateDiff('millisecond', first_at, last_at)) AS avg_ms"
)
# undefined without sessions: in a time series such buckets are None (a gap), never 0
RATIO_METRICS = ("views_per_session", "bounce_rate", "avg_session_duration")


@dataclass(frozen=True)
class Period:
    """The names of the bound parameters holding one time range. A statement that reads the
    current and the previous period at once (metrics) gives each period its own names."""

    prefix: str = ""

    def bind(self, params: Params, q: Query) -> None:
        start, end = q.range.start, q.range.end
        params.values[f"{self.prefix}start"] = start
        params.values[f"{self.prefix}end"] = end
        params.values[f"{self.prefix}lead"] = start.replace(microsecond=0) - SESSION_LEAD
        # the whole UTC hours inside the range: what hourly rollups answer for it (the
        # previous period of a range that ends now ends at a minute like now's)
        first = start.replace(minute=0, second=0, microsecond=0)
        first += timedelta(hours=0 if first == start else 1)
        last = max(first, end.replace(minute=0, second=0, microsecond=0))
        params.values[f"{self.prefix}hstart"] = first
        params.values[f"{self.prefix}hend"] = last
        # and the whole UTC days inside it: what the sealed page days answer
        day = start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        day += timedelta(days=0 if day == start else 1)
        params.values[f"{self.prefix}dstart"] = day.date()
        params.values[f"{self.prefix}dend"] = max(day.date(), end.astimezone(UTC).date())

    @property
    def start(self) -> str:
        return f"{{{self.prefix}start:{DT}}}"

    @property
    def end(self) -> str:
        return f"{{{self.prefix}end:{DT}}}"

    @property
    def lead(self) -> str:
        return f"{{{self.prefix}lead:{DT}}}"

    @property
    def day_start(self) -> str:
        return f"{{{self.prefix}dstart:Date}}"

    @property
    def day_end(self) -> str:
        return f"{{{self.prefix}dend:Date}}"

    @property
    def hour_start(self) -> str:
        return f"{{{self.prefix}hstart:{DT}}}"

    @property
    def hour_end(self) -> str:
        return f"{{{self.prefix}hend:{DT}}}"

    def edges(self, column: str = "created_at") -> str:
        """`column` in the range but outside its whole hours (empty for an aligned range)."""
        return (
            f"({column} >= {self.start} AND {column} < {self.end} "
            f"AND ({column} < {self.hour_start} OR {column} >= {self.hour_end}))"
        )


CURRENT = Period()
PREVIOUS = Period("prev_")


def tz_literal(timezone: str) -> str:
    """A time zone as a SQL string literal; only names from the tz database pass."""
    if timezone not in timezones.ZONES or not _TZ_SAFE.match(timezone):
        raise ValueError(f"unknown time zone {timezone!r}")
    return f"'{timezone}'"


def base_params(q: Query, period: Period = CURRENT) -> Params:
    params = Params({"project": q.project_id})
    period.bind(params, q)
    return params


def uses_rollups(q: Query) -> bool:
    return not q.filters and q.range.hour_aligned()


def matching_sessions_sql(db: str, q: Query, params: Params, period: Period = CURRENT) -> str:
    """Ids of sessions that began in the range and contain a page view passing the page
    filters and an event passing the other event filters (each kind when there is one)."""
    pages = " AND ".join(page_conditions(q.filters, params))
    events = " AND ".join(event_conditions(q.filters, params))
    if not pages and not events:
        return ""
    base = (
        f"SELECT session_id FROM {db}.events WHERE project_id = {{project:String}}"
        f" AND created_at >= {period.start} AND session_start >= {period.start}"
        f" AND session_start < {period.end}"
    )
    if pages and events:
        inner = (
            f"{base} AND (({pages}) OR ({events})) GROUP BY session_id"
            f" HAVING countIf({pages}) > 0 AND countIf({events}) > 0"
        )
    else:
        inner = f"{base} AND {pages or events}"
    return f"session_id IN ({inner})"


def sessions_sql(
    db: str,
    q: Query,
    params: Params,
    extra: tuple[str, ...] = (),
    period: Period = CURRENT,
    lead: bool = False,
    except_hours: str = "",
    except_days: str = "",
) -> str:
    """Aggregated sessions that began in the range (or up to a day before it, with `lead`)
    and pass every filter; with `except_hours` (a subquery of UTC hours) or `except_days`
    (an array of UTC dates), not those that began in one of them."""
    period.bind(params, q)
    session_filters = session_conditions(q.filters, params)
    wanted = dict.fromkeys((*BASE_SESSION_COLUMNS, *extra))
    for f in q.filters:
        if f.level == "session":
            wanted[SESSION_DIMENSIONS[f.dimension]] = None
    columns = ", ".join(f"{SESSION_COLUMNS[c]} AS {c}" for c in wanted)
    where = [
        "project_id = {project:String}",
        f"session_start >= {period.lead if lead else period.start}",
        f"session_start < {period.end}",
    ]
    if except_hours:
        where.append(f"toStartOfHour(session_start) NOT IN ({except_hours})")
    if except_days:
        where.append(f"toDate(session_start) NOT IN {except_days}")
    matching = matching_sessions_sql(db, q, params, period)
    if matching:
        where.append(matching)
    having = f" HAVING {' AND '.join(session_filters)}" if session_filters else ""
    return (
        f"SELECT session_id, {columns} FROM {db}.sessions WHERE {' AND '.join(where)}"
        f" GROUP BY session_id{having}"
    )


def _sessions_with(db: str, conds: list[str], period: Period) -> str:
    # sessions with a matching event in the range, or in the day before it for a session
    # that began then
    return (
        f"session_id IN (SELECT session_id FROM {db}.events WHERE project_id = {{project:String}}"
        f" AND created_at >= {period.lead} AND created_at < {period.end}"
        f" AND {' AND '.join(conds)})"
    )


def events_where(
    db: str,
    q: Query,
    params: Params,
    pageviews_only: bool | None = None,
    period: Period = CURRENT,
) -> str:
    """WHERE clause of the events in range that count under the filters (see the module's
    rule): page views only, custom events only, or both (`pageviews_only` None). Session
    filters apply through the sessions the events belong to."""
    period.bind(params, q)
    where = [
        "project_id = {project:String}",
        f"created_at >= {period.start}",
        f"created_at < {period.end}",
    ]
    pages = page_conditions(q.filters, params)
    events = event_conditions(q.filters, params)
    page_views = pages or [PAGEVIEW_SQL]
    if events:
        page_views = [*page_views, _sessions_with(db, events, period)]
    custom = [f"{CUSTOM_EVENT_SQL}", *events]
    if pages:
        custom.append(_sessions_with(db, pages, period))
    if pageviews_only is True:
        where += page_views
    elif pageviews_only is False:
        where += custom
    elif pages or events:
        where.append(f"(({' AND '.join(page_views)}) OR ({' AND '.join(custom)}))")
    if any(f.level == "session" for f in q.filters):
        only_sessions = replace(q, filters=tuple(f for f in q.filters if f.level == "session"))
        inner = sessions_sql(db, only_sessions, params, period=period, lead=True)
        where.append(f"session_id IN (SELECT session_id FROM ({inner}))")
    return " AND ".join(where)


def bucket_sql(column: str, interval: str, timezone: str) -> str:
    """Bucket start of `column` in the project's zone, as 'YYYY-MM-DD HH:MM' text."""
    tz = tz_literal(timezone)
    fn = {
        "minute": f"toStartOfMinute({column}, {tz})",
        "hour": f"toStartOfHour({column}, {tz})",
        "day": f"toStartOfDay({column}, {tz})",
        "week": f"toDateTime(toMonday({column}, {tz}), {tz})",
        "month": f"toDateTime(toStartOfMonth({column}, {tz}), {tz})",
    }[interval]
    return f"formatDateTime({fn}, '%Y-%m-%d %H:%i', {tz})"


def _num(value: Any) -> float:
    return float(value) if value is not None and value == value else 0.0  # NaN → 0


def session_kpis(row: dict[str, Any], empty: float | None = 0.0) -> dict[str, Any]:
    """Sessions and the ratios over them; `empty` stands for a ratio when there are none."""
    sessions = int(row.get("sessions") or 0)
    if not sessions:
        return {"sessions": 0, **dict.fromkeys(RATIO_METRICS, empty)}
    return {
        "sessions": sessions,
        "views_per_session": round(_num(row.get("session_pageviews")) / sessions, 2),
        "bounce_rate": round(100 * _num(row.get("bounces")) / sessions, 1),
        "avg_session_duration": round(_num(row.get("avg_ms")) / 1000, 1),
    }


def revenue_total(total: Any, count: Any) -> float | None:
    """A revenue sum, or None when no event carried revenue (the UI then hides it)."""
    return round(_num(total), 2) if int(count or 0) else None


def from_first_event(store: Store, q: Query) -> Query:
    """`range=all` from the project's first event: one read of the hourly rollup, in key
    order. Any other query is returned as it is, without a read."""
    if q.range.name != "all" or q.range.start != EARLIEST:
        return q
    rows = store.query_rows(
        f"SELECT hour FROM {store.db}.hourly WHERE project_id = {{project:String}} "
        "ORDER BY hour LIMIT 1",
        {"project": q.project_id},
    )
    first: datetime | None = rows[0][0] if rows else None
    if first is not None and first.tzinfo is None:
        first = first.replace(tzinfo=UTC)
    return starting_at_first_event(q, first)


def filtered_sessions(db: str, q: Query, params: Params) -> str:
    """For the product reports (funnels, retention, paths, goals): every filter picks
    sessions, and a report reads only the events of the sessions that pass them all (those
    that began up to a day before the range included). Empty without filters: no read."""
    if not q.filters:
        return ""
    inner = sessions_sql(db, q, params, lead=True)
    return f"session_id IN (SELECT session_id FROM ({inner}))"
