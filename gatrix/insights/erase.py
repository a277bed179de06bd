"""Erasing a person: every row about them, and rollups that agree with what is left.

What goes: the profile rows and counters of the person's profile ids (their own and the ids
aliased to them), the identity links from or to those ids, every event whose resolved person
they are (so the events their devices sent before the identify go too, but a shared device's
events that resolve to someone else stay), the person's rows in the people index, and the
sessions rollup rows of the sessions those events were in, and their keys' rows in
`visitor_hourly` (one row per key and hour, so nobody else's rows change). The sources whose
links went get their `identity_map` rows rebuilt from the links that remain, so a device
linked to the person first and to someone else later now resolves to that someone. The other hourly
rollups hold uniqState values that cannot be subtracted, so every hour that held one of the
events is rebuilt from the events that remain, with the very SELECT its materialized view runs.

Deletes are lightweight (`DELETE FROM … WHERE`), and `erase_person` returns once every one
of them is applied. `erase` empties the buffer first and writes the audit entry.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from gatrix.buffer.flush import Flusher
from gatrix.clickhouse.store import Store
from gatrix.insights.identity import KEY_HASH, SOURCE_HASH, index_where, profile_ids
from gatrix.insights.person import (
    MAX_SPANS,
    person_events_where,
    resolve,
    sessions_of,
    spans_of,
)
from gatrix.insights.sealed import touch, touch_days
from gatrix.insights.sql import DT
from gatrix.meta import audit

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# hourly rollups of uniqState values, which cannot be subtracted: their hours are rebuilt
REBUILT_ROLLUPS = ("hourly", "page_hourly", "event_hourly")


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
    # the hours the person's events fall in, and the key hashes `visitor_hourly` holds for
    # them (an event's own key: every event of these keys is the person's)
    events, hours, key_hashes = store.query_rows(
        f"SELECT count(), arraySort(groupUniqArray(toStartOfHour(created_at))), "
        f"arraySort(groupUniqArray({KEY_HASH})) FROM {db}.events WHERE {events_where}",
        params,
        bounded=False,  # an erasure is owed, whatever the reports' budget
    )[0]
    session_ids = [s["session_id"] for s in sessions]
    params.update(
        sessions=session_ids,
        first_session=min((s["session_start"] for s in sessions), default=EPOCH),
        last_session=max((s["session_start"] for s in sessions), default=EPOCH),
        hours=hours,
        key_hashes=key_hashes,
    )
    in_sessions = (
        f"session_start >= {{first_session:{DT}}} AND session_start <= {{last_session:{DT}}} "
        "AND session_id IN {sessions:Array(String)}"
    )
    # links from the person's profile ids (aliases) or to them; a device that happens to
    # bear one of these ids as its name is someone else's
    linked = "((kind = 'alias' AND source IN {ids:Array(String)}) OR target IN {ids:Array(String)})"
    in_hours = "hour IN {hours:Array(DateTime('UTC'))}"
    params.update(_relinked_sources(store, project_id, linked, params))
    plan = {
        "profiles": "profile_id IN {profiles:Array(String)}",
        "profile_counters": "profile_id IN {profiles:Array(String)}",
        "identity_links": linked,
        "identity_targets": linked,
        # rebuilt below from the links that remain
        "identity_map": "source_hash IN {relinked_hashes:Array(UInt64)}",
        "visitor_sessions": index_rows,
        "sessions": in_sessions,
        **dict.fromkeys(REBUILT_ROLLUPS, in_hours),
        # one row per key and hour: the person's rows go, nobody else's change
        "visitor_hourly": f"{in_hours} AND key_hash IN {{key_hashes:Array(UInt64)}}",
        # the realtime copy of the last hour's events: the same rows as in `events`
        "live_events": events_where,
    }
    where = {t: f"project_id = {{project:String}} AND ({w})" for t, w in plan.items()}
    # a lightweight delete says nothing of how many rows it took: count them first, at once
    counted = store.query_rows(
        " UNION ALL ".join(
            f"SELECT '{t}' AS t, count() AS n FROM {db}.{t} WHERE {w}" for t, w in where.items()
        ),
        params,
        bounded=False,
    )
    deleted = {"events": int(events), **{t: int(n) for t, n in counted}}
    if events:
        plan = {"events": events_where, **plan}
        where["events"] = events_where
    # Every delete is started, then they are waited for together: each costs mostly its
    # wait for a background mutation, not work (BENCHMARKS.md, people). The rebuilds below
    # leave the person's events out themselves, so they need not wait for the events to go;
    # a rollup's rebuilt rows are inserted after its delete was made, and a mutation only
    # touches the parts older than itself, so they stay.
    if session_ids:
        # read before the deletes start: the latest event of the person's visits, theirs or not
        rollup_last = store.query_rows(
            f"SELECT max(last_at) FROM {db}.sessions WHERE project_id = {{project:String}} "
            f"AND {in_sessions}",
            params,
            bounded=False,
        )[0][0]
        params["last_event"] = max([_utc(rollup_last), *(_utc(x["last_at"]) for x in sessions)])
    started = [t for t in plan if deleted.get(t)]
    for table in started:
        store.command(
            f"DELETE FROM {db}.{table} WHERE {where[table]} SETTINGS lightweight_deletes_sync = 0",
            params,
        )
    remaining = f"NOT ({events_where})"
    views = _view_selects(store, ["sessions", "identity_map", *REBUILT_ROLLUPS])
    if session_ids:
        # a visit may hold someone else's events too (rare): it is rebuilt from them, read
        # up to the visits' last event as the rollup knew it before its delete (an event
        # flushed later into one of them has its own rollup row, which the delete spares)
        _rebuild(
            store,
            views["sessions"],
            "sessions",
            f"project_id = {{project:String}} AND created_at >= {{first_session:{DT}}} "
            f"AND created_at <= {{last_event:{DT}}} AND {in_sessions} AND {remaining}",
            params,
        )
    if hours:
        in_hour_ranges = _hour_ranges_sql(hours, params)
        for table in REBUILT_ROLLUPS:
            _rebuild(
                store,
                views[table],
                table,
                f"project_id = {{project:String}} AND {in_hour_ranges} "
                f"AND toStartOfHour(created_at) IN {{hours:Array(DateTime('UTC'))}} "
                f"AND {remaining}",
                params,
            )
    if deleted.get("identity_map"):
        _rebuild(
            store,
            views["identity_map"],
            "identity_map",
            f"project_id = {{project:String}} AND source IN {{relinked:Array(String)}} "
            f"AND {SOURCE_HASH} IN {{relinked_hashes:Array(UInt64)}} AND NOT {linked}",
            params,
            source="identity_links",
        )
    _wait_for_deletes(store, started)
    # a delete inserts nothing: the sealed hours of the person's visits must be told
    touch(store, project_id, [s["session_start"] for s in sessions])
    touch_days(store, project_id, hours)
    return {"id": person, "deleted": deleted, "hours_rebuilt": len(hours)}


def _wait_for_deletes(store: Store, tables: list[str], timeout_s: float = 600.0) -> None:
    """Return once every delete started on `tables` has been applied."""
    deadline = time.monotonic() + timeout_s
    while tables:
        pending = store.query_rows(
            "SELECT table, latest_fail_reason FROM system.mutations WHERE database = {db:String} "
            "AND table IN {tables:Array(String)} AND NOT is_done",
            {"db": store.db, "tables": tables},
        )
        if not pending:
            return
        if time.monotonic() > deadline:
            # a mutation that fails is retried; its last error tells why it never finished
            why = "; ".join(f"{table}: {reason or 'running'}" for table, reason in pending)
            raise TimeoutError(f"erasing not finished: {why[:500]}")
        time.sleep(0.02)


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _hour_ranges_sql(hours: list[datetime], params: dict[str, Any]) -> str:
    """`created_at` inside the hours (consecutive ones as one range), as bound parameters:
    the primary key and the events' time index then read those hours only, not every
    day between the first and the last."""
    gap = timedelta(hours=1)
    while True:
        ranges: list[list[datetime]] = []
        for hour in sorted(hours):
            if ranges and hour - ranges[-1][1] <= gap:
                ranges[-1][1] = hour
            else:
                ranges.append([hour, hour])
        if len(ranges) <= MAX_SPANS:
            break
        gap *= 4  # fewer, wider ranges (the hour list keeps the rebuild exact)
    parts = []
    for n, (first, last) in enumerate(ranges):
        params[f"h{n}"], params[f"he{n}"] = first, last + timedelta(hours=1)
        parts.append(f"(created_at >= {{h{n}:{DT}}} AND created_at < {{he{n}:{DT}}})")
    return f"({' OR '.join(parts)})"


def _relinked_sources(
    store: Store, project_id: str, linked: str, params: dict[str, Any]
) -> dict[str, list[Any]]:
    """The sources of the links that go (as ids, and as the key hashes `identity_map` holds):
    their first link may be one of them, so their map rows are rebuilt."""
    rows = store.query_rows(
        f"SELECT DISTINCT source, {SOURCE_HASH} FROM {store.db}.identity_links "
        f"WHERE project_id = {{project:String}} AND {linked}",
        {**params, "project": project_id},
        bounded=False,
    )
    return {
        "relinked": sorted({source for source, _ in rows}),
        "relinked_hashes": sorted({int(h) for _, h in rows}),
    }


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


def _rebuild(
    store: Store,
    select: str,
    table: str,
    where: str,
    params: dict[str, Any],
    source: str = "events",
) -> None:
    """Insert into `table` what its view (`select`) computes over the rows of `source` (the
    table the view reads) that `where` picks."""
    reads = f"FROM {store.db}.{source}"
    if select.count(reads) != 1:
        raise RuntimeError(f"cannot narrow the view of {table}: {select[:200]}")
    narrowed = select.replace(
        reads, f"FROM (SELECT * FROM {store.db}.{source} WHERE {where}) AS {source}"
    )
    store.command(f"INSERT INTO {store.db}.{table} {narrowed}", params)


# One erasure at a time per project: two of them rebuild the same hours of the rollups from
# the events, and interleaved they would each add the hour back (counts doubled). The lock
# outlives any erasure; a second request waits for the first (the same person is then gone).
LOCK_S = 300
WAIT_S = 60.0
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end"


class ErasureBusy(Exception):
    """Another erasure of this project ran for longer than a request may wait."""


async def erase(
    store: Store, flusher: Flusher, engine: Engine, project_id: str, person_id: str, actor: str
) -> dict[str, Any] | None:
    """Flush the buffer (events of the person accepted before this call land first, so they
    go too), erase, and record who erased whom. None when nobody has that id."""
    redis, key = flusher.buffer.redis, flusher.buffer.keys.erasing(project_id)
    token = uuid.uuid4().hex
    deadline = time.monotonic() + WAIT_S
    while not await redis.set(key, token, nx=True, ex=LOCK_S):
        if time.monotonic() > deadline:
            raise ErasureBusy("another erasure of this project is still running; try again")
        await asyncio.sleep(0.2)
    try:
        await flusher.run(max_seconds=10.0)
        result = await asyncio.to_thread(erase_person, store, project_id, person_id)
        if result is not None:
            await asyncio.to_thread(
                audit.record, engine, project_id, actor, audit.ERASE, result["id"]
            )
        return result
    finally:
        await redis.eval(_RELEASE, 1, key, token)
