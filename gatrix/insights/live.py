"""Realtime: who is on the site now. "Now" is the last 5 minutes (as Plausible and OpenPanel
count live visitors); the per-minute series covers the last 30 minutes.

Everything here reads `live_events` (migration 0008): the last hour of events sorted by time,
so a poll reads the minutes it shows, not a slice of a table that grows with the history.
That table keeps about an hour: a `now` older than that finds nobody."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from gatrix.clickhouse.store import Store
from gatrix.insights.identity import KEY, linked_sql, resolution
from gatrix.insights.sql import DT
from gatrix.meta.timezones import usable
from gatrix.pageviews import ENGAGEMENT_NAME, PAGEVIEW_SQL

LIVE_WINDOW = timedelta(minutes=5)
SERIES_MINUTES = 30


def live(store: Store, project_id: str, now: datetime, timezone: str = "UTC") -> dict[str, Any]:
    """The last minutes, with every time given in the project's zone (ISO 8601 with offset)."""
    zone = ZoneInfo(usable(timezone))
    db = store.db
    now = now.astimezone(UTC)
    since = now - LIVE_WINDOW
    series_from = (now - timedelta(minutes=SERIES_MINUTES - 1)).replace(second=0, microsecond=0)
    params = {
        "project": project_id,
        "since": since,
        "series_from": series_from,
        "until": now + timedelta(minutes=1),
    }
    recent_rows = (
        "project_id = {project:String} AND created_at >= {series_from:" + DT + "} "
        "AND created_at < {until:" + DT + "}"
    )
    # The recent feed also says whether the project has identity links (each statement
    # costs a few ms however small its read); only when the feed is empty is that asked apart.
    recent = store.query_dicts(
        f"SELECT name, path, country, browser, created_at, ({linked_sql(db)}) AS linked "
        f"FROM {db}.live_events WHERE {recent_rows} AND name != '{ENGAGEMENT_NAME}' "
        "ORDER BY created_at DESC LIMIT 20",
        params,
    )
    # only the links of the keys seen in the last minutes: the read stays small however
    # many people the project knows
    v = resolution(
        store,
        project_id,
        sources=f"SELECT DISTINCT {KEY} FROM {db}.live_events WHERE {recent_rows}",
        linked=bool(recent[0]["linked"]) if recent else None,
    )
    # One pass for the rest (each statement costs a few ms however small its read): the
    # minute series, the active pages (the page views of the last 5 minutes by path; every
    # other row falls in the '' group) and the grand total with the 5-minute visitor count.
    fresh_view = f"created_at >= {{since:{DT}}} AND {PAGEVIEW_SQL}"
    rows = store.query_dicts(
        f"SELECT toStartOfMinute(created_at) AS minute, if({fresh_view}, path, '') AS page, "
        f"grouping(minute) AS by_minute, grouping(page) AS by_page, "
        f"uniq({v.expr()}) AS visitors, countIf({PAGEVIEW_SQL}) AS pageviews, "
        f"uniqIf({v.expr()}, created_at >= {{since:{DT}}}) AS live_visitors, "
        f"uniqIf({v.expr()}, {fresh_view}) AS page_visitors "
        f"FROM {db}.live_events{v.join()} WHERE {recent_rows} "
        f"GROUP BY GROUPING SETS ((minute), (page), ())",
        params,
    )
    # grouping(x) is 1 where x was rolled up (the SQL standard's sense)
    per_minute_rows = [r for r in rows if not r["by_minute"]]
    pages = sorted(
        (r for r in rows if not r["by_page"] and r["page_visitors"]),
        key=lambda r: (-r["page_visitors"], r["page"]),
    )[:10]
    totals = [r for r in rows if r["by_minute"] and r["by_page"]]
    visitors = totals[0]["live_visitors"] if totals else 0
    by_minute = {_utc(r["minute"]): r for r in per_minute_rows}
    per_minute = []
    for n in range(SERIES_MINUTES):
        minute = series_from + timedelta(minutes=n)
        row = by_minute.get(minute, {})
        per_minute.append(
            {
                "minute": minute.astimezone(zone).isoformat(),
                "visitors": int(row.get("visitors", 0)),
                "pageviews": int(row.get("pageviews", 0)),
            }
        )
    return {
        "visitors": int(visitors),
        "pages": [{"path": p["page"], "visitors": int(p["page_visitors"])} for p in pages],
        "recent": [
            {
                "name": r["name"],
                "path": r["path"],
                "country": r["country"],
                "browser": r["browser"],
                "time": _utc(r["created_at"]).astimezone(zone).isoformat(),
            }
            for r in recent
        ],
        "per_minute": per_minute,
    }


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def live_visitors(store: Store, project_id: str, now: datetime) -> int:
    """Only the 5-minute visitor count: what the dashboard's badge polls every few seconds."""
    now = now.astimezone(UTC)
    since = now - LIVE_WINDOW
    recent = (
        f"project_id = {{project:String}} AND created_at >= {{since:{DT}}} "
        f"AND created_at < {{until:{DT}}}"
    )
    v = resolution(
        store,
        project_id,
        sources=f"SELECT DISTINCT {KEY} FROM {store.db}.live_events WHERE {recent}",
    )
    rows = store.query_rows(
        f"SELECT uniq({v.expr()}) FROM {store.db}.live_events{v.join()} WHERE {recent}",
        {"project": project_id, "since": since, "until": now + timedelta(minutes=1)},
    )
    return int(rows[0][0])
