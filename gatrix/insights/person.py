"""One person: identify fields, properties, counters, devices, locations, aliases and their
events newest first, including what their devices sent before the identify.

Events are sorted by (project, day, name, time), not by who sent them, so a person's events
are read only inside the spans of their sessions (from the `visitor_sessions` index): the
primary key narrows by day and the events' time index skips the rest of each day.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from gatrix.clickhouse.store import Store
from gatrix.insights.identity import (
    DEVICE,
    EVENT_TOKEN,
    index_where,
    keys_of,
    persons_of,
    profile_ids,
    profile_token,
)
from gatrix.insights.people import person_row, profile_fields
from gatrix.insights.sql import DT

MAX_ID = 200  # the longest profile id ingestion accepts
MAX_EVENTS = 200
MAX_LOCATIONS = 50
# a person with at most this many events is read whole, once, for the page and summaries
WHOLE_HISTORY = 5000
# session spans closer than this are read as one span; at most this many spans per read
SPAN_GAP = timedelta(hours=1)
MAX_SPANS = 64
EVENT_COLUMNS = (
    "id, name, created_at, session_id, device_id, profile_id, path, title, referrer_name, "
    "country, city, browser, os, device, revenue, properties"
)


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the next page of a person's events starts: before this time, or at this time
    after this event id (events are listed newest first, then by id, and many may share a
    time: imports and batches often carry whole seconds)."""

    at: datetime
    after_id: str = ""

    @classmethod
    def parse(cls, text: str) -> Cursor:
        """`<ISO time>` or `<ISO time>|<event id>` (what `next_before` holds); ValueError."""
        moment, _, after = text.partition("|")
        at = datetime.fromisoformat(moment)
        return cls(at if at.tzinfo else at.replace(tzinfo=UTC), after[:64])

    def naive(self) -> datetime:
        return self.at.astimezone(UTC).replace(tzinfo=None)


def _next(shown: list[dict[str, Any]]) -> str:
    return f"{shown[-1]['created_at']}|{shown[-1]['id']}"


class InvalidPerson(ValueError):
    """A person id no profile can have (empty, too long, a NUL)."""


def check_id(person_id: str) -> str:
    # ingestion now refuses control characters in profile ids, but people stored with one
    # before must still be found and erased on request: only what no id can hold is refused
    if not person_id or len(person_id) > MAX_ID or "\x00" in person_id:
        raise InvalidPerson(f"a profile id is 1 to {MAX_ID} characters")
    return person_id


def resolve(store: Store, project_id: str, person_id: str) -> tuple[str, list[str]] | None:
    """The person `person_id` belongs to and their typed keys (identity.py); None when nobody
    of that id was identified or seen with a profile id. The id is a profile id (the person
    itself, or an id aliased to them); only when no profile has it is it read as a device id
    (a device identified as someone), so a device named after a person never stands for them."""
    check_id(person_id)
    found = _resolve_profile(store, project_id, person_id)
    if found is None:
        device = DEVICE + person_id
        owner = persons_of(store, project_id, [device])[device]
        found = _resolve_profile(store, project_id, owner) if owner else None
    return found


def _resolve_profile(
    store: Store, project_id: str, profile_id: str
) -> tuple[str, list[str]] | None:
    own = profile_token(profile_id)
    person = persons_of(store, project_id, [own])[own]
    keys = keys_of(store, project_id, [person])[person]
    known = store.query_rows(
        f"SELECT 1 FROM {store.db}.visitor_sessions WHERE project_id = {{project:String}} "
        "AND key IN {ids:Array(String)} AND profiled = 1 LIMIT 1",
        {"project": project_id, "ids": profile_ids(keys)},
    )
    if not known and keys == [profile_token(person)]:
        counters = store.query_rows(
            f"SELECT 1 FROM {store.db}.profile_counters WHERE project_id = {{project:String}} "
            "AND profile_id = {person:String} LIMIT 1",
            {"project": project_id, "person": person},
        )
        if not counters:
            return None
    return person, keys


def get_person(
    store: Store,
    project_id: str,
    person_id: str,
    before: Cursor | None = None,
    limit: int = 50,
) -> dict[str, Any] | None:
    found = resolve(store, project_id, person_id)
    if found is None:
        return None
    person, keys = found
    params: dict[str, Any] = {"project": project_id}
    index = store.query_dicts(
        "SELECT session_id, min(session_start) AS session_start, min(first_at) AS first_at, "
        f"max(last_at) AS last_at, sum(events) AS events FROM {store.db}.visitor_sessions "
        f"WHERE project_id = {{project:String}} AND {index_where(keys, params)} "
        "GROUP BY session_id ORDER BY last_at DESC, session_id DESC",
        params,
    )
    sessions = [r for r in index if r["session_id"]]  # '' is the identify calls' row
    stats = {
        "first_seen": min((r["first_at"] for r in index), default=None),
        "last_seen": max((r["last_at"] for r in index), default=None),
        "events": sum(int(r["events"]) for r in sessions),
        "sessions": len(sessions),
    }
    fields = profile_fields(store, project_id, {person: keys}).get(person, {})
    links = store.query_rows(
        f"SELECT DISTINCT source, target, kind FROM {store.db}.identity_targets "
        "WHERE project_id = {project:String} AND target IN {ids:Array(String)} "
        "ORDER BY source",
        {"project": project_id, "ids": profile_ids(keys)},
    )
    aliases = [s for s, t, kind in links if kind == "alias" and t == person]
    linked = [s for s, _, kind in links if kind == "device" and DEVICE + s in keys]
    spans = spans_of(sessions)
    if stats["events"] <= WHOLE_HISTORY:
        # a few events: one read of all of them, the page and the summaries made from it
        rows = _events(store, project_id, keys, spans, None, stats["events"] + 1)
        page = _page(rows, before, limit)
        devices, locations = _devices_of(rows), _locations_of(rows)
    else:
        page = events_page(store, project_id, keys, sessions, before, limit)
        devices = _devices(store, project_id, keys, spans)
        locations = _locations(store, project_id, keys, spans)
    shown = {d["id"] for d in devices}
    blank = {"browser": "", "os": "", "device": "", "last_seen": None, "events": 0}
    devices += [{"id": d, **blank} for d in linked if d not in shown]
    row = person_row(person, stats, fields)
    totals = {"events": row.pop("events"), "sessions": row.pop("sessions")}
    return {
        **row,
        "totals": totals,
        "first_name": fields.get("first_name", ""),
        "last_name": fields.get("last_name", ""),
        "properties": _properties(store, project_id, keys),
        "counters": _counters(store, project_id, keys),
        "aliases": aliases,
        "devices": devices,
        "locations": locations,
        **page,
    }


def _page(rows: list[dict[str, Any]], before: Cursor | None, limit: int) -> dict[str, Any]:
    """The events page from all of a person's events (in the engine's order: newest first,
    then by id)."""
    limit = max(1, min(limit, MAX_EVENTS))
    if before is not None:
        cut = before.naive()
        at = [i for i, r in enumerate(rows) if str(r["id"]) == before.after_id]
        if at and _naive(rows[at[0]]["created_at"]) == cut:
            rows = rows[at[0] + 1 :]
        else:
            rows = [r for r in rows if _naive(r["created_at"]) < cut]
    shown = [_shown(r) for r in rows[:limit]]
    more = len(rows) > limit
    return {"events": shown, "has_more": more, "next_before": _next(shown) if more else None}


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _devices_of(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    devices: dict[str, dict[str, Any]] = {}
    for r in rows:  # newest first: a device's first row is its latest
        if r["device_id"] == r["profile_id"]:
            continue  # a backend's event: the profile id stands in for a device
        d = devices.setdefault(
            r["device_id"],
            {
                "id": r["device_id"],
                "browser": r["browser"],
                "os": r["os"],
                "device": r["device"],
                "last_seen": _iso(r["created_at"]),
                "events": 0,
            },
        )
        d["events"] += 1
    return list(devices.values())


def _locations_of(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    counts = Counter((r["country"], r["city"]) for r in rows)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:MAX_LOCATIONS]
    return [{"country": c, "city": city, "events": n} for (c, city), n in ranked]


def sessions_of(store: Store, project_id: str, keys: list[str]) -> list[dict[str, Any]]:
    """The person's sessions from the index, newest activity first."""
    params: dict[str, Any] = {"project": project_id}
    return store.query_dicts(
        "SELECT session_id, min(session_start) AS session_start, min(first_at) AS first_at, "
        f"max(last_at) AS last_at, sum(events) AS events FROM {store.db}.visitor_sessions "
        f"WHERE project_id = {{project:String}} AND {index_where(keys, params)} "
        "AND session_id != '' GROUP BY session_id ORDER BY last_at DESC, session_id DESC",
        params,
    )


def spans_of(sessions: list[dict[str, Any]]) -> list[tuple[datetime, datetime]]:
    """Time spans that hold all these sessions' events: overlapping or close ones merged,
    and merged further until there are at most MAX_SPANS."""
    spans = sorted((s["first_at"], s["last_at"]) for s in sessions)
    gap = SPAN_GAP
    while True:
        merged: list[tuple[datetime, datetime]] = []
        for start, end in spans:
            if merged and start - merged[-1][1] <= gap:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        if len(merged) <= MAX_SPANS:
            return merged
        spans, gap = merged, gap * 4


def spans_sql(spans: list[tuple[datetime, datetime]], params: dict[str, Any]) -> str:
    """`created_at` inside one of the spans, as bound parameters (the primary key and the
    events' time index both use it)."""
    if not spans:
        return "0"
    parts = []
    for n, (start, end) in enumerate(spans):
        params[f"s{n}"], params[f"e{n}"] = start, end
        parts.append(f"(created_at >= {{s{n}:{DT}}} AND created_at <= {{e{n}:{DT}}})")
    return f"({' OR '.join(parts)})"


def person_events_where(
    keys: list[str], spans: list[tuple[datetime, datetime]], params: dict[str, Any]
) -> str:
    params["keys"] = keys
    return (
        f"project_id = {{project:String}} AND {spans_sql(spans, params)} "
        f"AND {EVENT_TOKEN} IN {{keys:Array(String)}}"
    )


def events_page(
    store: Store,
    project_id: str,
    keys: list[str],
    sessions: list[dict[str, Any]],
    before: Cursor | None,
    limit: int,
) -> dict[str, Any]:
    """`limit` events before `before` (newest first), read from the newest sessions that
    can hold them; `next_before` continues the list."""
    limit = max(1, min(limit, MAX_EVENTS))
    cut = before.naive() if before is not None else None  # as ClickHouse hands times out
    older = [s for s in sessions if cut is None or s["first_at"] <= cut]
    chosen, total = [], 0
    for s in older:
        chosen.append(s)
        total += int(s["events"])
        if total > limit:
            break
    rows = _events(store, project_id, keys, spans_of(chosen), before, limit + 1)
    if len(rows) <= limit and len(chosen) < len(older):
        # a session's events partly after `before`: read every older session instead
        rows = _events(store, project_id, keys, spans_of(older), before, limit + 1)
    shown = [_shown(r) for r in rows[:limit]]
    return {
        "events": shown,
        "has_more": len(rows) > limit,
        "next_before": _next(shown) if len(rows) > limit else None,
    }


def _events(
    store: Store,
    project_id: str,
    keys: list[str],
    spans: list[tuple[datetime, datetime]],
    before: Cursor | None,
    limit: int,
) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"project": project_id}
    where = person_events_where(keys, spans, params)
    if before is not None:
        params["before"], params["after_id"] = before.naive(), before.after_id
        where += (
            f" AND (created_at < {{before:{DT}}} OR (created_at = {{before:{DT}}} "
            "AND id > toUUIDOrZero({after_id:String})))"
        )
    return store.query_dicts(
        f"SELECT {EVENT_COLUMNS} FROM {store.db}.events WHERE {where} "
        f"ORDER BY created_at DESC, id LIMIT {int(limit)}",
        params,
    )


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    return {
        **row,
        "id": str(row["id"]),
        "created_at": _iso(row["created_at"]),
        "properties": dict(row["properties"]),
    }


def _iso(moment: datetime) -> str:
    return (moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment).isoformat()


def _properties(store: Store, project_id: str, keys: list[str]) -> dict[str, str]:
    return dict(
        store.query_rows(
            f"SELECT key, argMax(value, updated_at) FROM {store.db}.profiles "
            "ARRAY JOIN mapKeys(properties) AS key, mapValues(properties) AS value "
            "WHERE project_id = {project:String} AND profile_id IN {keys:Array(String)} "
            "GROUP BY key ORDER BY key",
            {"project": project_id, "keys": profile_ids(keys)},
        )
    )


def _counters(store: Store, project_id: str, keys: list[str]) -> dict[str, float]:
    return dict(
        store.query_rows(
            f"SELECT property, sum(value) FROM {store.db}.profile_counters "
            "WHERE project_id = {project:String} AND profile_id IN {keys:Array(String)} "
            "GROUP BY property ORDER BY property",
            {"project": project_id, "keys": profile_ids(keys)},
        )
    )


def _devices(
    store: Store, project_id: str, keys: list[str], spans: list[tuple[datetime, datetime]]
) -> list[dict[str, Any]]:
    """The devices the person's events came from, latest first."""
    params: dict[str, Any] = {"project": project_id}
    rows = store.query_dicts(
        "SELECT device_id AS id, argMax(browser, created_at) AS browser, "
        "argMax(os, created_at) AS os, argMax(device, created_at) AS device, "
        f"max(created_at) AS last_seen, count() AS events FROM {store.db}.events "
        f"WHERE {person_events_where(keys, spans, params)} AND device_id != profile_id "
        "GROUP BY device_id ORDER BY last_seen DESC, id",
        params,
    )
    return [{**r, "last_seen": _iso(r["last_seen"])} for r in rows]


def _locations(
    store: Store, project_id: str, keys: list[str], spans: list[tuple[datetime, datetime]]
) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"project": project_id}
    return store.query_dicts(
        f"SELECT country, city, count() AS events FROM {store.db}.events "
        f"WHERE {person_events_where(keys, spans, params)} "
        f"GROUP BY country, city ORDER BY events DESC, country, city LIMIT {MAX_LOCATIONS}",
        params,
    )
