"""SQL building blocks shared by the reports: the filtered session set, the filtered event
set, and the choice between rollups and raw events.

Rollups (hourly, page_hourly, event_hourly) answer unfiltered questions over ranges aligned
to whole UTC hours; anything else reads `events` / `sessions` directly.
"""

from __future__ import annotations

import re

from gatrix.insights.filters import (
    SESSION_DIMENSIONS,
    Params,
    event_conditions,
    session_conditions,
)
from gatrix.insights.query import Query
from gatrix.meta import timezones
from gatrix.pageviews import PAGEVIEW_SQL

_TZ_SAFE = re.compile(r"^[A-Za-z0-9_+\-/]{1,64}$")
DT = "DateTime64(3, 'UTC')"
# session columns a subquery can expose, with their merge expression
SESSION_COLUMNS = {
    "device_id": "max(device_id)",
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
BASE_SESSION_COLUMNS = ("device_id", "pageviews", "custom_events", "first_at", "last_at")


def tz_literal(timezone: str) -> str:
    """A time zone as a SQL string literal; only names from the tz database pass."""
    if timezone not in timezones.ZONES or not _TZ_SAFE.match(timezone):
        raise ValueError(f"unknown time zone {timezone!r}")
    return f"'{timezone}'"


def base_params(q: Query) -> Params:
    return Params({"project": q.project_id, "start": q.range.start, "end": q.range.end})


def uses_rollups(q: Query) -> bool:
    return not q.filters and q.range.hour_aligned()


def matching_sessions_sql(db: str, q: Query, params: Params) -> str:
    """Ids of sessions that contain an event matching every event-level filter."""
    conds = event_conditions(q.filters, params)
    if not conds:
        return ""
    where = " AND ".join(conds)
    return (
        f"session_id IN (SELECT session_id FROM {db}.events WHERE project_id = {{project:String}}"
        f" AND created_at >= {{start:{DT}}} AND session_start >= {{start:{DT}}}"
        f" AND session_start < {{end:{DT}}} AND {where})"
    )


def sessions_sql(
    db: str, q: Query, params: Params, extra: tuple[str, ...] = (), start_param: str = "start"
) -> str:
    """Aggregated sessions that began in the range and pass every filter."""
    session_filters = session_conditions(q.filters, params)
    wanted = dict.fromkeys((*BASE_SESSION_COLUMNS, *extra))
    for f in q.filters:
        if f.level == "session":
            wanted[SESSION_DIMENSIONS[f.dimension]] = None
    columns = ", ".join(f"{SESSION_COLUMNS[c]} AS {c}" for c in wanted)
    where = [
        "project_id = {project:String}",
        f"session_start >= {{{start_param}:{DT}}}",
        f"session_start < {{end:{DT}}}",
    ]
    matching = matching_sessions_sql(db, q, params)
    if matching:
        where.append(matching)
    having = f" HAVING {' AND '.join(session_filters)}" if session_filters else ""
    return (
        f"SELECT session_id, {columns} FROM {db}.sessions WHERE {' AND '.join(where)}"
        f" GROUP BY session_id{having}"
    )


def events_where(db: str, q: Query, params: Params, pageviews_only: bool | None = None) -> str:
    """WHERE clause of the events in range passing every filter (session filters through the
    sessions they belong to, which may have begun up to a day before the range)."""
    where = [
        "project_id = {project:String}",
        f"created_at >= {{start:{DT}}}",
        f"created_at < {{end:{DT}}}",
    ]
    if pageviews_only is True:
        where.append(PAGEVIEW_SQL)
    elif pageviews_only is False:
        where.append(f"NOT {PAGEVIEW_SQL}")
    where += event_conditions(q.filters, params)
    if any(f.level == "session" for f in q.filters):
        params.values["session_from"] = q.range.start.replace(microsecond=0) - _ONE_DAY
        no_event_filters = type(q)(
            q.project_id, q.range, q.interval, tuple(f for f in q.filters if f.level == "session")
        )
        inner = sessions_sql(db, no_event_filters, params, start_param="session_from")
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


from datetime import timedelta  # noqa: E402  (kept beside its only use)

_ONE_DAY = timedelta(days=1)
