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
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from gatrix.buffer.flush import Flusher
from gatrix.clickhouse.store import Store
from gatrix.insights.person import person_events_where, resolve, sessions_of, spans_of
from gatrix.insights.sql import DT
from gatrix.meta import audit

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
    spans = spans_of(sessions)
    ids = [person, *_alias_ids(store, project_id, person)]
    base: dict[str, Any] = {"project": project_id, "ids": ids, "keys": keys}

    events_params = dict(base)
    events_where = person_events_where(keys, spans, events_params)
    hours = [
        r[0]
        for r in store.query_rows(
            f"SELECT DISTINCT toStartOfHour(created_at) AS hour FROM {db}.events "
            f"WHERE {events_where} ORDER BY hour",
            events_params,
        )
    ]
    session_ids = [s["session_id"] for s in sessions]
    session_params = {
        **base,
        "sessions": session_ids,
        "from": min((s["session_start"] for s in sessions), default=None),
        "to": max((s["session_start"] for s in sessions), default=None),
    }
    session_where = (
        f"project_id = {{project:String}} AND session_start >= {{from:{DT}}} "
        f"AND session_start <= {{to:{DT}}} AND session_id IN {{sessions:Array(String)}}"
    )
    plan: list[tuple[str, str, dict[str, Any]]] = [
        ("events", events_where, events_params),
        ("profiles", "project_id = {project:String} AND profile_id IN {keys:Array(String)}", base),
        (
            "profile_counters",
            "project_id = {project:String} AND profile_id IN {keys:Array(String)}",
            base,
        ),
        (
            "identity_links",
            "project_id = {project:String} AND (source IN {ids:Array(String)} "
            "OR target IN {ids:Array(String)})",
            base,
        ),
        (
            "identity_targets",
            "project_id = {project:String} AND (source IN {ids:Array(String)} "
            "OR target IN {ids:Array(String)})",
            base,
        ),
        ("visitor_sessions", "project_id = {project:String} AND key IN {keys:Array(String)}", base),
    ]
    if session_ids:
        plan.append(("sessions", session_where, session_params))
    deleted: dict[str, int] = {}
    for table, where, params in plan:
        deleted[table] = _delete(store, table, where, params)
    if session_ids:
        # a session may hold someone else's events too (rare): it is rebuilt from them
        _rebuild(
            store,
            "sessions",
            f"project_id = {{project:String}} AND created_at >= {{from:{DT}}} "
            f"AND session_start >= {{from:{DT}}} AND session_start <= {{to:{DT}}} "
            "AND session_id IN {sessions:Array(String)}",
            session_params,
        )
    for table in HOURLY_ROLLUPS:
        deleted[table] = _rebuild_hours(store, table, project_id, hours)
    return {"id": person, "deleted": deleted, "hours_rebuilt": len(hours)}


def _alias_ids(store: Store, project_id: str, person: str) -> list[str]:
    rows = store.query_rows(
        f"SELECT DISTINCT source FROM {store.db}.identity_targets "
        "WHERE project_id = {project:String} AND target = {person:String} AND kind = 'alias'",
        {"project": project_id, "person": person},
    )
    return [r[0] for r in rows]


def _delete(store: Store, table: str, where: str, params: dict[str, Any]) -> int:
    """Rows counted, then deleted (a lightweight delete says nothing of how many)."""
    count = int(
        store.query_rows(f"SELECT count() FROM {store.db}.{table} WHERE {where}", params)[0][0]
    )
    if count:
        store.command(f"DELETE FROM {store.db}.{table} WHERE {where}", params)
    return count


def _view_select(store: Store, table: str) -> str:
    """The SELECT the materialized view of `table` runs, as the server holds it."""
    rows = store.query_rows(
        "SELECT as_select FROM system.tables WHERE database = {db:String} AND name = {view:String}",
        {"db": store.db, "view": f"{table}_mv"},
    )
    if not rows:
        raise RuntimeError(f"no materialized view {table}_mv")
    return str(rows[0][0])


def _rebuild(store: Store, table: str, where: str, params: dict[str, Any]) -> None:
    """Insert into `table` what its view computes over the events `where` selects."""
    select = _view_select(store, table)
    source = f"FROM {store.db}.events"
    if select.count(source) != 1:
        raise RuntimeError(f"cannot narrow the view of {table}: {select[:200]}")
    narrowed = select.replace(
        source, f"FROM (SELECT * FROM {store.db}.events WHERE {where}) AS events"
    )
    store.command(f"INSERT INTO {store.db}.{table} {narrowed}", params)


def _rebuild_hours(store: Store, table: str, project_id: str, hours: list[datetime]) -> int:
    """Replace the rollup rows of these hours with rows computed from the remaining events;
    the rollup rows deleted."""
    if not hours:
        return 0
    params = {
        "project": project_id,
        "hours": hours,
        "from": min(hours),
        "to": max(hours) + timedelta(hours=1),
    }
    rollup_where = "project_id = {project:String} AND hour IN {hours:Array(DateTime('UTC'))}"
    count = _delete(store, table, rollup_where, params)
    _rebuild(
        store,
        table,
        f"project_id = {{project:String}} AND created_at >= {{from:{DT}}} "
        f"AND created_at < {{to:{DT}}} "
        "AND toStartOfHour(created_at) IN {hours:Array(DateTime('UTC'))}",
        params,
    )
    return count


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
