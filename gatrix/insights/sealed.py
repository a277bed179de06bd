"""Sealed sessions: the session KPIs and session-dimension breakdowns of hours that are over,
counted once by a periodic job instead of by every report.

Why: a session arrives in pieces (one row of `sessions` per insert that carried its events),
so every report grouped its rows by session id, and that grew with the traffic in range
(about 6.5M rows for a 30-day metrics with its previous period at 100M events: ~1 s).
Counted once per hour and dimension value, a 30-day range reads 720 rows for the KPIs and
hours × values for a breakdown, whatever the traffic.

Why it stays exact:
- the job (`seal`, every minute) builds the hours that ended at least `SEAL_AFTER` ago and
  that an insert into `sessions` touched since their last build (`session_touches`, filled
  by a view on `sessions`: the live flush, an import, an erasure's rebuild, all of them);
- a build writes a new generation of the hour's rows, then names it in `session_hours`;
- a report reads an hour from the rollup only while its named generation is newer than the
  hour's last touch, and reads every other hour of the range from `sessions`, in the same
  statement: the last hours, and any hour a late event, an import or an erasure touched
  since its build. A report is never stale, only slower until the next build.
Deletes do not insert, so whoever deletes session rows touches their hours (`touch`).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from gatrix.clickhouse.store import Store
from gatrix.insights.filters import SESSION_DIMENSIONS, Params
from gatrix.insights.identity import KEY_HASH
from gatrix.insights.query import Query
from gatrix.insights.sql import (
    CURRENT,
    DT,
    SESSION_AGGREGATES,
    SESSION_COLUMNS,
    Period,
    sessions_sql,
)

log = logging.getLogger("gatrix.sealed")

# an hour is built once it ended this long ago: most of its sessions have ended by then, and
# one that goes on touches the hour again, so it is built again
SEAL_AFTER = timedelta(hours=2)
# A generation is dated this long before its build began to read: an insert still running
# then (its rows perhaps unseen) is later than the generation, so the hour reads raw. An hour
# is built only once its last touch is older than this, or it would never be valid.
INSERT_MARGIN = timedelta(minutes=2)
HOURS_PER_BUILD = 24  # hours one statement builds
HOURS_PER_RUN = 24 * 7  # hours one run of the job builds at most, newest first
# the session columns a breakdown groups by, as the rollup's `dimension` values
DIMENSIONS = tuple(sorted(set(SESSION_DIMENSIONS.values())))
HOURS = "Array(DateTime('UTC'))"
# what a retention cut and a project's deletion clear with the other rollups
SESSION_TABLES = ("session_hourly", "session_hours", "session_touches")
PAGE_TABLES = ("page_daily", "page_days", "page_touches")
TOTAL_TABLES = ("total_daily", "total_days", "total_touches")
SESSION_DAY_TABLES = ("session_daily", "session_days", "session_day_touches")
DAY_TABLES = (*PAGE_TABLES, *TOTAL_TABLES, *SESSION_DAY_TABLES)  # the sealed rollups by day


# --- reading


def _valid_hours(db: str, period: Period, except_days: str = "") -> str:
    """(hour, built) of the period's hours whose built generation no insert has touched
    since: those the rollup answers (less those of `except_days`, an array of dates that a
    sealed day answers)."""
    span = (
        f"project_id = {{project:String}} AND hour >= {period.hour_start} "
        f"AND hour < {period.hour_end}"
    )
    return (
        f"SELECT b.hour AS hour, b.built AS built FROM (SELECT hour, max(built_at) AS built "
        f"FROM {db}.session_hours WHERE {span} GROUP BY hour) AS b LEFT JOIN (SELECT hour, "
        f"max(touched_at) AS touched FROM {db}.session_touches WHERE {span} GROUP BY hour) "
        "AS t USING hour WHERE b.built > t.touched"
        + (f" AND toDate(b.hour) NOT IN {except_days}" if except_days else "")
    )


def _sealed_rows(db: str, period: Period, dimension: str, valid: str) -> str:
    return (
        f"FROM {db}.session_hourly WHERE project_id = {{project:String}} "
        f"AND dimension = {dimension} AND hour >= {period.hour_start} "
        f"AND hour < {period.hour_end} "
        f"AND (hour, built_at) IN (SELECT hour, built FROM ({valid}))"
    )


def session_totals_sql(db: str, q: Query, params: Params, period: Period = CURRENT) -> str:
    """One row of the period's sessions, `session_pageviews`, `bounces` and `avg_ms`: from
    the rollup for its sealed whole hours when nothing filters them or when the one filter
    is a session dimension `is` a value (the rollup's row of that value), else from
    `sessions`."""
    one = sealed_value(q)
    if q.filters and one is None:
        return f"SELECT {SESSION_AGGREGATES} FROM ({sessions_sql(db, q, params, period=period)})"
    valid = _valid_hours(db, period)
    rest = sessions_sql(db, q, params, period=period, except_hours=f"SELECT hour FROM ({valid})")
    if one is None:
        sealed = _sealed_rows(db, period, "''", valid)
    else:
        column, value = one
        dimension, wanted = params.add(column), params.add(value)
        sealed = (
            f"{_sealed_rows(db, period, f'{{{dimension}:String}}', valid)} "
            f"AND value = {{{wanted}:String}}"
        )
    return (
        "SELECT sum(n) AS sessions, sum(pv) AS session_pageviews, sum(b) AS bounces, "
        "if(sum(n) = 0, nan, sum(d) / sum(n)) AS avg_ms FROM ("
        f"SELECT sessions AS n, pageviews AS pv, bounces AS b, duration_ms AS d {sealed} "
        "UNION ALL "
        "SELECT count(), sum(pageviews), countIf(pageviews <= 1 AND custom_events = 0), "
        f"sum(dateDiff('millisecond', first_at, last_at)) FROM ({rest}))"
    )


def sealed_value(q: Query) -> tuple[str, str] | None:
    """(session column, value) when the query's only filter is one session dimension `is`
    one value: the sessions it keeps are those counted in that value's sealed rows."""
    if len(q.filters) != 1:
        return None
    f = q.filters[0]
    if f.level != "session" or f.operator != "is":
        return None
    return SESSION_DIMENSIONS[f.dimension], f.value


def session_breakdown_sql(
    db: str,
    q: Query,
    params: Params,
    column: str,
    money: str,
    days: list[tuple[Any, Any]] | None = None,
) -> str:
    """The rows of a session-dimension breakdown (unfiltered, nobody linked), with the
    columns `_session_breakdown` reads; `money` is its revenue per session, `days` the
    range's sealed session days (`sealed_days(kind="session")`): those read from
    `session_daily`, the other sealed hours from `session_hourly`, the rest from `sessions`."""
    params.values["dimension"] = column
    except_days = ""
    if days:
        params.values["session_days"] = list(days)
        params.values["session_days_only"] = [day for day, _ in days]
        except_days = "{session_days_only:Array(Date)}"
    valid = _valid_hours(db, CURRENT, except_days)
    rest = sessions_sql(
        db,
        q,
        params,
        extra=(column,),
        except_hours=f"SELECT hour FROM ({valid})",
        except_days=except_days,
    )
    columns = "value, visitors AS u, sessions AS n, pageviews AS pv, bounces AS b, duration_ms AS d"
    counted = f"SELECT {columns} {_sealed_rows(db, CURRENT, '{dimension:String}', valid)} "
    if days:
        counted += (
            f"UNION ALL SELECT {columns} FROM {db}.session_daily "
            "WHERE project_id = {project:String} AND dimension = {dimension:String} "
            f"AND day IN {except_days} "
            f"AND (day, built_at) IN {{session_days:Array(Tuple(Date, {DT}))}} "
        )
    counted += (
        f"UNION ALL SELECT {column} AS value, uniqState({KEY_HASH}), count(), sum(pageviews), "
        "countIf(pageviews <= 1 AND custom_events = 0), "
        f"sum(dateDiff('millisecond', first_at, last_at)) FROM ({rest}) GROUP BY value"
    )
    # revenue stays read from the (few) events that carry some, by the value of their session
    revenue = (
        f"SELECT s.value AS value, sum(m.session_revenue) AS revenue_total, "
        f"count() AS revenue_sessions FROM ({money}) AS m INNER JOIN (SELECT session_id, "
        f"{SESSION_COLUMNS[column]} AS value FROM {db}.sessions "
        f"WHERE project_id = {{project:String}} AND session_start >= {CURRENT.start} "
        f"AND session_start < {CURRENT.end} AND session_id IN (SELECT session_id FROM "
        f"({money})) GROUP BY session_id) AS s USING session_id GROUP BY value"
    )
    return (
        "SELECT a.value AS value, a.visitors AS visitors, a.sessions AS sessions, "
        "a.session_pageviews AS session_pageviews, a.bounces AS bounces, a.avg_ms AS avg_ms, "
        "a.bounces / a.sessions * 100 AS bounce_rate, a.avg_ms / 1000 AS avg_session_duration, "
        "r.revenue_total AS revenue_total, sum(r.revenue_sessions) OVER () AS revenue_anywhere "
        "FROM (SELECT value, uniqMerge(u) AS visitors, sum(n) AS sessions, "
        "sum(pv) AS session_pageviews, sum(b) AS bounces, sum(d) / sum(n) AS avg_ms "
        f"FROM ({counted}) GROUP BY value) AS a LEFT JOIN ({revenue}) AS r USING value"
    )


def _valid_days(db: str, kind: Kind, period: Period) -> str:
    """(day, built) of the period's whole UTC days that a sealed day rollup answers: built,
    and not touched since."""
    days = (
        f"project_id = {{project:String}} AND day >= {period.day_start} AND day < {period.day_end}"
    )
    return (
        f"SELECT b.day AS day, b.built AS built FROM (SELECT day, max(built_at) AS built "
        f"FROM {db}.{kind.marks} WHERE {days} GROUP BY day) AS b LEFT JOIN (SELECT day, "
        f"max(touched_at) AS touched FROM {db}.{kind.touches} WHERE {days} GROUP BY day) "
        "AS t USING day WHERE b.built > t.touched"
    )


def sealed_days(
    store: Store, params: Params, period: Period = CURRENT, kind: str = "page"
) -> list[tuple[Any, Any]]:
    """(day, generation) of the period's whole UTC days that a sealed day rollup (`kind`:
    "page" or "session") answers. Read first, so the hours left can be read by the primary
    key (many rows an hour)."""
    valid = _valid_days(store.db, DAY_KINDS[kind], period)
    rows = store.query_rows(f"{valid} ORDER BY day", params.values)
    return [(day, built) for day, built in rows]


def _spans(start: datetime, end: datetime, days: list[Any]) -> list[tuple[datetime, datetime]]:
    """[start, end) less the (sorted, inside) `days`, as time spans."""
    spans, cursor = [], start
    for day in days:
        begins = datetime(day.year, day.month, day.day, tzinfo=UTC)
        if cursor < begins:
            spans.append((cursor, begins))
        cursor = begins + timedelta(days=1)
    if cursor < end:
        spans.append((cursor, end))
    return spans


def pages_rows_sql(db: str, params: Params, days: list[tuple[Any, Any]]) -> str:
    """(path, u: visitor sketch, pv: page views) rows of the range (whole hours, bound in
    `params`): the `days` (from `sealed_days`) from `page_daily`, the rest from
    `page_hourly`, each hour span read by the primary key."""
    start, end = params.values["start"], params.values["end"]
    spans = _spans(start, end, [day for day, _ in days])
    parts = []
    if days:
        params.values["sealed_days"] = days
        params.values["sealed_days_only"] = [day for day, _ in days]
        parts.append(
            f"SELECT path, visitors AS u, pageviews AS pv FROM {db}.page_daily "
            "WHERE project_id = {project:String} AND day IN {sealed_days_only:Array(Date)} "
            f"AND (day, built_at) IN {{sealed_days:Array(Tuple(Date, {DT}))}}"
        )
    if spans or not days:
        within = []
        for i, (a, b) in enumerate(spans or [(start, end)]):
            params.values[f"span{i}a"], params.values[f"span{i}b"] = a, b
            within.append(f"(hour >= {{span{i}a:{DT}}} AND hour < {{span{i}b:{DT}}})")
        parts.append(
            f"SELECT path, visitors AS u, toUInt64(pageviews) AS pv FROM {db}.page_hourly "
            f"WHERE project_id = {{project:String}} AND ({' OR '.join(within)})"
        )
    return " UNION ALL ".join(parts)


def totals_rows_sql(db: str, period: Period) -> str:
    """(t: the day's or the hour's start, u: visitor sketch, pv: page views, ce: custom
    events) rows of the period's whole hours: its sealed days from `total_daily`, the other
    hours from `hourly`. One row a day or an hour, so the sealed days are found in the same
    statement (a statement of its own costs more than reading these few rows)."""
    valid = _valid_days(db, TOTALS, period)
    return (
        "SELECT toDateTime(day, 'UTC') AS t, visitors AS u, pageviews AS pv, "
        f"custom_events AS ce FROM {db}.total_daily WHERE project_id = {{project:String}} "
        f"AND day >= {period.day_start} AND day < {period.day_end} "
        f"AND (day, built_at) IN (SELECT day, built FROM ({valid})) UNION ALL "
        "SELECT hour, visitors, toUInt64(pageviews), toUInt64(custom_events) "
        f"FROM {db}.hourly PREWHERE project_id = {{project:String}} "
        f"AND hour >= {period.hour_start} AND hour < {period.hour_end} "
        f"AND toDate(hour) NOT IN (SELECT day FROM ({valid}))"
    )


# --- building


# a session's numbers under names of their own: the outer statement's aliases (`pageviews`,
# `sessions`) must not be read as these
_BUILD_COLUMNS = {
    "dev": "max(device_id)",
    "prof": "max(profile_id)",
    "pv": "sum(pageviews)",
    "ce": "sum(custom_events)",
    "fa": "min(first_at)",
    "la": "max(last_at)",
    **{c: SESSION_COLUMNS[c] for c in DIMENSIONS},
}
_BUILD_KEY = KEY_HASH.replace("profile_id", "prof").replace("device_id", "dev")


def _session_build_sql(db: str) -> str:
    """Insert one generation of the session rows of a project's `units` (hours)."""
    return _sessions_by_sql(db, "session_hourly", "hour", "toStartOfHour", HOURS)


def _session_day_build_sql(db: str) -> str:
    """Insert one generation of the session rows of a project's `units` (days)."""
    return _sessions_by_sql(db, "session_daily", "day", "toDate", "Array(Date)")


def _sessions_by_sql(db: str, table: str, unit: str, truncate: str, units: str) -> str:
    """Insert into `table` the sessions that began in the `units`, counted per `unit` of
    their start and per value of each dimension."""
    pairs = ", ".join(f"('{c}', {c})" for c in DIMENSIONS)
    columns = ", ".join(f"{expr} AS {name}" for name, expr in _BUILD_COLUMNS.items())
    span = "1 DAY" if unit == "day" else "1 HOUR"
    return (
        f"INSERT INTO {db}.{table} SELECT project_id, pair.1 AS dimension, "
        f"{truncate}(session_start) AS {unit}, pair.2 AS value, {{built:{DT}}} AS built_at, "
        "count() AS sessions, sum(pv) AS pageviews, countIf(pv <= 1 AND ce = 0) AS bounces, "
        "sum(dateDiff('millisecond', fa, la)) AS duration_ms, "
        f"uniqState({_BUILD_KEY}) AS visitors FROM (SELECT project_id, session_start, "
        f"session_id, {columns} FROM {db}.sessions "
        f"WHERE project_id = {{project:String}} AND session_start >= {{first:{DT}}} "
        f"AND session_start < {{last:{DT}}} + INTERVAL {span} "
        f"AND {truncate}(session_start) IN {{units:{units}}} "
        "GROUP BY project_id, session_start, session_id) "
        f"ARRAY JOIN [('', ''), {pairs}] AS pair "
        f"GROUP BY project_id, dimension, {unit}, value"
    )


def _page_build_sql(db: str) -> str:
    """Insert one generation of the page rows of a project's `units` (days), merged from
    the hourly rollup (the sketches merge into one per path and day)."""
    return (
        f"INSERT INTO {db}.page_daily SELECT project_id, toDate(hour) AS day, path, "
        f"{{built:{DT}}} AS built_at, uniqMergeState(visitors) AS visitors, "
        f"sum(pageviews) AS pageviews FROM {db}.page_hourly "
        f"WHERE project_id = {{project:String}} AND hour >= {{first:{DT}}} "
        f"AND hour < {{last:{DT}}} + INTERVAL 1 DAY AND toDate(hour) IN {{units:Array(Date)}} "
        "GROUP BY project_id, day, path"
    )


def _totals_build_sql(db: str) -> str:
    """Insert one generation of the day totals of a project's `units` (days), merged from
    the hourly rollup."""
    return (
        f"INSERT INTO {db}.total_daily SELECT project_id, toDate(hour) AS day, "
        f"{{built:{DT}}} AS built_at, uniqMergeState(visitors) AS visitors, "
        "sum(pageviews) AS pageviews, sum(custom_events) AS custom_events FROM "
        f"{db}.hourly WHERE project_id = {{project:String}} AND hour >= {{first:{DT}}} "
        f"AND hour < {{last:{DT}}} + INTERVAL 1 DAY AND toDate(hour) IN {{units:Array(Date)}} "
        "GROUP BY project_id, day"
    )


@dataclass(frozen=True)
class Kind:
    """One sealed rollup: its rows, the table naming each unit's generation, the touches."""

    label: str
    rows: str
    marks: str
    touches: str
    unit: str  # the column of a unit ("hour", "day") and its SQL type
    unit_type: str
    truncate: str  # what turns a moment into its unit
    per_build: int  # units one statement builds
    build_sql: Callable[[str], str]  # the INSERT of one generation, given the database


SESSIONS = Kind(
    "session hours",
    "session_hourly",
    "session_hours",
    "session_touches",
    "hour",
    "DateTime('UTC')",
    "toStartOfHour",
    24,
    _session_build_sql,
)
PAGES = Kind(
    "page days",
    "page_daily",
    "page_days",
    "page_touches",
    "day",
    "Date",
    "toDate",
    7,
    _page_build_sql,
)
TOTALS = Kind(
    "day totals",
    "total_daily",
    "total_days",
    "total_touches",
    "day",
    "Date",
    "toDate",
    31,
    _totals_build_sql,
)
SESSION_DAYS = Kind(
    "session days",
    "session_daily",
    "session_days",
    "session_day_touches",
    "day",
    "Date",
    "toDate",
    1,
    _session_day_build_sql,
)
KINDS = (SESSIONS, SESSION_DAYS, PAGES, TOTALS)
DAY_KINDS = {"page": PAGES, "total": TOTALS, "session": SESSION_DAYS}


def _server_now(store: Store) -> datetime:
    # the generation is compared with touch times the server wrote: its clock, not ours
    return store.query_rows("SELECT now64(3, 'UTC')", bounded=False)[0][0]


def _due(
    store: Store, kind: Kind, before: datetime, settled: datetime, limit: int
) -> list[tuple[str, Any, bool]]:
    """(project, unit, built before) of the units to build: begun before `before`, touched
    since their last build (or never built) but not since `settled`. Newest first."""
    db, unit = store.db, kind.unit
    ended = f"{unit} < {kind.truncate}({{before:{DT}}})"
    rows = store.query_rows(
        f"SELECT t.project_id, t.{unit}, b.built > toDateTime64(0, 3, 'UTC') FROM "
        f"(SELECT project_id, {unit}, max(touched_at) AS touched FROM {db}.{kind.touches} "
        f"WHERE {ended} GROUP BY project_id, {unit}) AS t LEFT JOIN "
        f"(SELECT project_id, {unit}, max(built_at) AS built FROM {db}.{kind.marks} "
        f"WHERE {ended} GROUP BY project_id, {unit}) AS b USING (project_id, {unit}) "
        f"WHERE t.touched >= b.built AND t.touched < {{settled:{DT}}} "
        f"ORDER BY t.{unit} DESC, t.project_id LIMIT {int(limit)}",
        {"before": before, "settled": settled},
        bounded=False,
    )
    return [(str(p), u, bool(rebuilt)) for p, u, rebuilt in rows]


def _build(
    store: Store, kind: Kind, project: str, units: list[Any], rebuilt: list[Any], margin: timedelta
) -> None:
    db, unit = store.db, kind.unit
    built = _server_now(store) - margin
    bounds = [u if isinstance(u, datetime) else datetime(u.year, u.month, u.day) for u in units]
    params = {
        "project": project,
        "units": units,
        "first": min(bounds),
        "last": max(bounds),
        "built": built,
        "rebuilt": rebuilt,
    }
    store.command(kind.build_sql(db), params)
    store.command(
        f"INSERT INTO {db}.{kind.marks} (project_id, {unit}, built_at) "
        f"SELECT {{project:String}}, u, {{built:{DT}}} "
        f"FROM (SELECT arrayJoin({{units:Array({kind.unit_type})}}) AS u)",
        params,
    )
    if rebuilt:  # the generations these replace: nothing reads them any more
        store.command(
            f"DELETE FROM {db}.{kind.rows} WHERE project_id = {{project:String}} "
            f"AND {unit} IN {{rebuilt:Array({kind.unit_type})}} AND built_at < {{built:{DT}}} "
            "SETTINGS lightweight_deletes_sync = 0",
            params,
        )


def seal(store: Store, limit: int = HOURS_PER_RUN, margin: timedelta = INSERT_MARGIN) -> int:
    """Build what is due of each kind, newest first, at most `limit` units of each; how many
    units it built. Not on a cluster: a generation's rows would be spread over shards that a
    delete and a read do not see as one (reports there read the hourly tables, as before)."""
    if store.cluster:
        return 0
    total = 0
    for kind in KINDS:
        started = time.monotonic()
        now = _server_now(store)
        due = _due(store, kind, now - SEAL_AFTER, now - margin, limit)
        by_project: dict[str, list[tuple[Any, bool]]] = defaultdict(list)
        for project, unit, rebuilt in due:
            by_project[project].append((unit, rebuilt))
        for project, units in by_project.items():
            for i in range(0, len(units), kind.per_build):
                chunk = units[i : i + kind.per_build]
                again = [u for u, was in chunk if was]
                _build(store, kind, project, [u for u, _ in chunk], again, margin)
        if due:
            log.info("sealed %d %s in %.1f s", len(due), kind.label, time.monotonic() - started)
        total += len(due)
    return total


def _touch(store: Store, kind: Kind, project_id: str, moments: list[datetime]) -> None:
    if not moments:
        return
    store.command(
        f"INSERT INTO {store.db}.{kind.touches} (project_id, {kind.unit}, touched_at) "
        f"SELECT {{project:String}}, {kind.truncate}(m), now64(3, 'UTC') "
        f"FROM (SELECT arrayJoin({{moments:Array({DT})}}) AS m)",
        {"project": project_id, "moments": moments},
    )


def touch(store: Store, project_id: str, session_starts: list[datetime]) -> None:
    """Mark the hours and days of these session starts changed now: after a delete of
    session rows, which inserts nothing."""
    _touch(store, SESSIONS, project_id, session_starts)
    _touch(store, SESSION_DAYS, project_id, session_starts)


def touch_days(store: Store, project_id: str, moments: list[datetime]) -> None:
    """Mark the days of these times changed now in every sealed day rollup: after a delete
    of `page_hourly`, `hourly` or session rows (an erasure, a retention cut)."""
    for kind in DAY_KINDS.values():
        _touch(store, kind, project_id, moments)
