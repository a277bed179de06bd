"""Erasing a person: every row about them, and rollups that agree with what is left.

What goes: the profile rows and counters of the person's profile ids (their own and the ids
aliased to them), the identity links from or to those ids, every event whose resolved person
they are (so the events their devices sent before the identify go too, but a shared device's
events that resolve to someone else stay), the person's rows in the people index, and the
sessions rollup rows of the sessions those events were in. The hourly rollups hold
uniqState values that cannot be subtracted, so every hour that held one of the events is
rebuilt from the events that remain, with the very SELECT its materialized view runs.

Deletes are lightweight (`DELETE FROM … WHERE`): synchronous, and hidden from every read at
once. `erase` empties the buffer first and writes the audit entry.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from gatrix.buffer.flush import Flusher
from gatrix.clickhouse.store import Store
from gatrix.insights.identity import index_where, profile_ids
from gatrix.insights.person import person_events_where, resolve, sessions_of, spans_of
from gatrix.insights.sql import DT
from gatrix.meta import audit

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HOURLY_ROLLUPS = ("hourly", "page_hourly", "event_hourly", "visitor_hourly")


def erase_person(store: Store, project_id: str, person_id: str) -> dict[str, Any] | None:
    """Erase the person `person_id` belongs to; the rows that went per table, or None when
    nobody has that id."""
    found = resolve(store, project_id, person_id)
    if found is None:
        return None
    person, keys = found
    db = store.db
    sessions = sessions_of(store, project_id, keys)
    ids = [person, *_alias_ids(store, project_id, person)]
    # one set of bound parameters for every statement below
    params: dict[str, Any] = {"project": project_id, "ids": ids, "profiles": profile_ids(keys)}
    events_where = person_events_where(keys, spans_of(sessions), params)
    index_rows = index_where(keys, params)
    hours = [
        r[0]
        for r in store.query_rows(
            f"SELECT DISTINCT toStartOfHour(created_at) AS hour FROM {db}.events "
            f"WHERE {events_where} ORDER BY hour",
            params,
        )
    ]
    session_ids = [s["session_id"] for s in sessions]
    params.update(
        sessions=session_ids,
        first_session=min((s["session_start"] for s in sessions), default=EPOCH),
        last_session=max((s["session_start"] for s in sessions), default=EPOCH),
        hours=hours,
        first_hour=min(hours, default=EPOCH),
        end_hour=max(hours, default=EPOCH) + timedelta(hours=1),
    )
    in_sessions = (
        f"session_start >= {{first_session:{DT}}} AND session_start <= {{last_session:{DT}}} "
        "AND session_id IN {sessions:Array(String)}"
    )
    # links from the person's profile ids (aliases) or to them; a device that happens to
    # bear one of these ids as its name is someone else's
    linked = "((kind = 'alias' AND source IN {ids:Array(String)}) OR target IN {ids:Array(String)})"
    in_hours = "hour IN {hours:Array(DateTime('UTC'))}"
    plan = {
        "events": events_where,
        "profiles": "profile_id IN {profiles:Array(String)}",
        "profile_counters": "profile_id IN {profiles:Array(String)}",
        "identity_links": linked,
        "identity_targets": linked,
        "visitor_sessions": index_rows,
        "sessions": in_sessions,
        **dict.fromkeys(HOURLY_ROLLUPS, in_hours),
    }
    where = {t: f"project_id = {{project:String}} AND ({w})" for t, w in plan.items()}
    # a lightweight delete says nothing of how many rows it took: count them first, at once
    counted = store.query_rows(
        " UNION ALL ".join(
            f"SELECT '{t}' AS t, count() AS n FROM {db}.{t} WHERE {w}" for t, w in where.items()
        ),
        params,
    )
    deleted = {t: int(n) for t, n in counted}
    for table in plan:
        if deleted.get(table):
            store.command(f"DELETE FROM {db}.{table} WHERE {where[table]}", params)
    views = _view_selects(store, ["sessions", *HOURLY_ROLLUPS])
    if session_ids:
        # a visit may hold someone else's events too (rare): it is rebuilt from them
        _rebuild(
            store,
            views["sessions"],
            "sessions",
            f"project_id = {{project:String}} AND created_at >= {{first_session:{DT}}} "
            f"AND {in_sessions}",
            params,
        )
    if hours:
        for table in HOURLY_ROLLUPS:
            _rebuild(
                store,
                views[table],
                table,
                f"project_id = {{project:String}} AND created_at >= {{first_hour:{DT}}} "
                f"AND created_at < {{end_hour:{DT}}} "
                "AND toStartOfHour(created_at) IN {hours:Array(DateTime('UTC'))}",
                params,
            )
    return {"id": person, "deleted": deleted, "hours_rebuilt": len(hours)}


def _alias_ids(store: Store, project_id: str, person: str) -> list[str]:
    rows = store.query_rows(
        f"SELECT DISTINCT source FROM {store.db}.identity_targets "
        "WHERE project_id = {project:String} AND target = {person:String} AND kind = 'alias'",
        {"project": project_id, "person": person},
    )
    return [r[0] for r in rows]


def _view_selects(store: Store, tables: list[str]) -> dict[str, str]:
    """The SELECT each table's materialized view runs, as the server holds it."""
    rows = store.query_rows(
        "SELECT name, as_select FROM system.tables WHERE database = {db:String} "
        "AND name IN {views:Array(String)}",
        {"db": store.db, "views": [f"{t}_mv" for t in tables]},
    )
    found = {name.removesuffix("_mv"): str(select) for name, select in rows}
    missing = [t for t in tables if t not in found]
    if missing:
        raise RuntimeError(f"no materialized view for {', '.join(missing)}")
    return found


def _rebuild(store: Store, select: str, table: str, where: str, params: dict[str, Any]) -> None:
    """Insert into `table` what its view (`select`) computes over the events `where` picks."""
    source = f"FROM {store.db}.events"
    if select.count(source) != 1:
        raise RuntimeError(f"cannot narrow the view of {table}: {select[:200]}")
    narrowed = select.replace(
        source, f"FROM (SELECT * FROM {store.db}.events WHERE {where}) AS events"
    )
    store.command(f"INSERT INTO {store.db}.{table} {narrowed}", params)


async def erase(
    store: Store, flusher: Flusher, engine: Engine, project_id: str, person_id: str, actor: str
) -> dict[str, Any] | None:
    """Flush the buffer (events of the person accepted before this call land first, so they
    go too), erase, and record who erased whom. None when nobody has that id."""
    await flusher.run(max_seconds=10.0)
    result = await asyncio.to_thread(erase_person, store, project_id, person_id)
    if result is not None:
        await asyncio.to_thread(audit.record, engine, project_id, actor, audit.ERASE, result["id"])
    return result
