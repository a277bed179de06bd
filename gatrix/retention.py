"""Per-project retention: events older than the project's retention are deleted from
ClickHouse once a day (the `retention` job of the SAQ worker) or on demand
(`gatrix retention run`).

The cut is the start of the project's local day `retention_days` before today, moved back to
the whole UTC hour (for zones a half or quarter hour off UTC): the hourly rollups are keyed by
UTC hour, so events and rollups are cut at the same instant and every report over the time
that remains reads the same numbers as before. What is deleted, for one project:
- `events` with `created_at` before the cut, and the hourly rollups of the hours before it;
- `sessions` that began before the cut, except those still running at it: the events after
  the cut keep their session's attributes (country, channel…) for session filters.
Profiles, profile counters and identity links describe people, not traffic: they stay.

Partitions are by month and shared by projects, so only mutations can delete one project's
rows. They are started asynchronously and waited for by polling, so an embedded ClickHouse
(one lock per process) stays free for flushes and dashboards while parts are rewritten.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine

from gatrix.clickhouse.store import Store
from gatrix.insights.sealed import DAY_TABLES, SESSION_TABLES, touch_days
from gatrix.insights.sql import SESSION_LEAD
from gatrix.meta.keeping import Retained, retained_projects

log = logging.getLogger("gatrix.retention")
DT = "DateTime64(3, 'UTC')"
ROLLUPS = ("hourly", "page_hourly", "event_hourly", "visitor_hourly")
# a mutation still running after this is left to ClickHouse; the next run looks again
WAIT_LIMIT_S = 3600.0


def cut_for(now: datetime, days: int, timezone: str) -> datetime:
    """The first instant kept (UTC) for a retention of `days` whole local days before today."""
    zone = ZoneInfo(timezone)
    first_day = now.astimezone(zone).date() - timedelta(days=days)
    midnight = datetime.combine(first_day, time(0), tzinfo=zone).astimezone(UTC)
    return midnight.replace(minute=0, second=0, microsecond=0)


def _running_sessions(db: str) -> str:
    # sessions with an event on both sides of the cut; the reports assume a session lasts at
    # most SESSION_LEAD, so the events after the cut are read for that long only
    return (
        f"SELECT session_id FROM {db}.events WHERE project_id = {{p:String}}"
        f" AND created_at >= {{cut:{DT}}} AND created_at < {{until:{DT}}}"
        f" AND session_start < {{cut:{DT}}}"
    )


def older_rows(db: str) -> dict[str, str]:
    """Table → the condition (besides the project) of its rows older than the cut."""
    return {
        "events": f"created_at < {{cut:{DT}}}",
        "sessions": f"session_start < {{cut:{DT}}} AND session_id NOT IN ({_running_sessions(db)})",
        **{table: f"hour < {{cut:{DT}}}" for table in ROLLUPS},
        # the sealed session hours, of session starts: the cut's hours are read from the
        # sessions kept across it, as before they were sealed
        **{table: f"hour < {{cut:{DT}}}" for table in SESSION_TABLES},
        # the sealed days (pages, totals) before the cut's; the cut's own is touched once the
        # deletes are done (it held hours before the cut), and read by the hour until rebuilt
        **{table: f"day < toDate({{cut:{DT}}})" for table in DAY_TABLES},
        # the people index's rows of the sessions cut (an identify's row, session '', stays
        # with the profile)
        "visitor_sessions": f"session_start < {{cut:{DT}}} AND session_id != '' "
        f"AND session_id NOT IN ({_running_sessions(db)})",
    }


@dataclass
class Expired:
    project_id: str
    cut: datetime
    tables: list[str] = field(default_factory=list)  # tables a deletion ran on
    unfinished: int = 0  # mutations still running when we stopped waiting

    def summary(self) -> dict[str, Any]:
        """As the CLI prints it and the SAQ job returns it (JSON)."""
        return {"project_id": self.project_id, "cut": self.cut.isoformat(), "tables": self.tables}


def _params(project_id: str, cut: datetime) -> dict[str, object]:
    return {"p": project_id, "cut": cut, "until": cut + SESSION_LEAD}


def tables_with_older_rows(store: Store, project_id: str, cut: datetime) -> list[str]:
    # a mutation rewrites whole parts, other projects' rows included: start none for nothing
    found = []
    for table, condition in older_rows(store.db).items():
        rows = store.query_rows(
            f"SELECT 1 FROM {store.db}.{table} WHERE project_id = {{p:String}} AND {condition}"
            " LIMIT 1",
            _params(project_id, cut),
        )
        if rows:
            found.append(table)
    return found


def _target(store: Store, table: str) -> str:
    # on a cluster the rows live in the replicated `_local` tables behind the Distributed ones
    if store.cluster:
        return f"{store.db}.{table}_local ON CLUSTER {store.cluster}"
    return f"{store.db}.{table}"


def start_deletes(store: Store, project_id: str, cut: datetime, tables: list[str]) -> None:
    conditions = older_rows(store.db)
    for table in tables:
        store.command(
            f"ALTER TABLE {_target(store, table)} DELETE WHERE project_id = {{p:String}}"
            f" AND {conditions[table]} SETTINGS mutations_sync = 0",
            _params(project_id, cut),
        )


def unfinished_mutations(store: Store, tables: list[str]) -> int:
    names = [*tables, *(f"{t}_local" for t in tables)]
    rows = store.query_rows(
        "SELECT count() FROM system.mutations WHERE database = {db:String}"
        " AND table IN {tables:Array(String)} AND NOT is_done",
        {"db": store.db, "tables": names},
    )
    return int(rows[0][0])


async def expire(
    store: Store, project_id: str, cut: datetime, poll_s: float = 0.2, limit_s: float = WAIT_LIMIT_S
) -> Expired:
    """Delete the project's rows older than `cut` and wait (up to `limit_s`) until done."""
    done = Expired(project_id, cut)
    done.tables = await asyncio.to_thread(tables_with_older_rows, store, project_id, cut)
    if not done.tables:
        return done
    await asyncio.to_thread(start_deletes, store, project_id, cut, done.tables)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while True:
        done.unfinished = await asyncio.to_thread(unfinished_mutations, store, done.tables)
        if not done.unfinished or loop.time() >= deadline:
            break
        await asyncio.sleep(poll_s)
    await asyncio.to_thread(touch_days, store, project_id, [cut])
    return done


async def expire_all(
    engine: Engine, store: Store, now: datetime, only: str | None = None
) -> list[Expired]:
    """One retention pass over every project with a retention (or just `only`)."""
    projects: list[Retained] = await asyncio.to_thread(retained_projects, engine)
    results = []
    for project in projects:
        if only is not None and project.project_id != only:
            continue
        cut = cut_for(now, project.days, project.timezone)
        try:
            result = await expire(store, project.project_id, cut)
        except Exception as exc:  # one project's failure must not keep the others' data
            log.error("retention of %s failed: %s", project.project_id, exc)
            continue
        if result.tables:
            log.info(
                "retention: %s cut at %s in %s%s",
                project.project_id,
                cut.isoformat(),
                ", ".join(result.tables),
                f" ({result.unfinished} still running)" if result.unfinished else "",
            )
        results.append(result)
    return results
