"""The People list: identified profiles and profile ids seen only on events, as resolved
people (gatrix/insights/identity.py), searched, sorted and paged.

A person's events, sessions and first/last seen are sums over their keys' rows in the
`visitor_sessions` index (migration 0007); an identify counts as being seen. Sorted by last
seen (the default), the list walks that index newest row first: a person's last seen is the
newest row of any of their keys, so the first N people met are the N last seen, without
aggregating everyone. The other sorts and narrow searches aggregate exactly the people they
need; a broad search walks like the default, over the rows of its matches' keys only (every
key that may resolve to a matching person, read from the reverse links), so the people met
are resolved and checked, not everyone seen since.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gatrix.clickhouse.store import Store
from gatrix.insights.identity import (
    DEVICE,
    INDEX_TOKEN,
    PROFILE,
    index_where,
    keys_of,
    persons_of,
    persons_sql,
    profile_ids,
    profile_token,
)
from gatrix.insights.query import InvalidQuery

SORTS = ("last_seen", "first_seen", "events")
MAX_LIMIT = 100
MAX_PAGE = 1000
MAX_Q = 200
# an array parameter as an IN set: a subquery, because a literal set of tens of thousands of
# ids makes the primary key's analysis crawl (111,099 ids: over 30 s, against 0.3 s this way)
_EACH = "SELECT arrayJoin({{{name}:Array(String)}})"
# a search matching up to this many profile ids is aggregated exactly; beyond, it walks
EXACT_MATCHES = 2000
# a broad search up to this many matching profile ids walks only its matches' keys; beyond,
# matches are dense enough that walking everyone and checking each batch is quicker (10M
# events, 1M profiles: 22,199 matches took 0.5 s this way against 0.8-1.3 s walking everyone;
# 111,099 matches 0.8 s against 0.6 s)
WALK_MATCHES = 25_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class PeopleQuery:
    project_id: str
    q: str = ""
    sort: str = "last_seen"
    limit: int = 50
    page: int = 1

    def __post_init__(self) -> None:
        if self.sort not in SORTS:
            raise InvalidQuery(f"unknown sort {self.sort!r}; use one of {', '.join(SORTS)}")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise InvalidQuery(f"limit must be between 1 and {MAX_LIMIT}")
        if not 1 <= self.page <= MAX_PAGE:
            raise InvalidQuery(f"page must be between 1 and {MAX_PAGE}")
        if len(self.q) > MAX_Q or "\x00" in self.q:
            raise InvalidQuery(f"q must be at most {MAX_Q} characters, without NUL")


def list_people(store: Store, pq: PeopleQuery) -> dict[str, Any]:
    want = pq.page * pq.limit + 1  # one more than shown: is there a next page?
    q = pq.q.strip()
    # a narrow search already has the keys and stats of every match: the page reuses them
    known_keys: dict[str, list[str]] | None = None
    known_stats: dict[str, dict[str, Any]] = {}
    if q:
        # only the walk by last seen can use more matches than the exact aggregation
        most = WALK_MATCHES if pq.sort == "last_seen" else EXACT_MATCHES
        matched = _matching_ids(store, pq.project_id, q, most + 1)
        if len(matched) <= EXACT_MATCHES:
            tokens = [profile_token(m) for m in matched]
            people = sorted(set(persons_of(store, pq.project_id, tokens).values()) - {""})
            known_keys = keys_of(store, pq.project_id, people)
            known_stats = person_stats(store, pq.project_id, known_keys)
            ordered = _sorted(known_stats, pq.sort)[:want]
        elif pq.sort == "last_seen" and len(matched) <= WALK_MATCHES:
            ordered = _walk_matched(store, pq.project_id, want, matched)
        elif pq.sort == "last_seen":
            ordered = _walk(store, pq.project_id, want, q)
        else:
            ordered = _ranked(store, pq.project_id, pq.sort, None, q)[:want]
    elif pq.sort == "last_seen":
        ordered = _walk(store, pq.project_id, want)
    else:
        ordered = _ranked(store, pq.project_id, pq.sort, want)
    shown = ordered[(pq.page - 1) * pq.limit : pq.page * pq.limit]
    if known_keys is not None:
        keys = {p: known_keys[p] for p in shown}
        stats = {p: known_stats[p] for p in shown if p in known_stats}
    else:
        keys = keys_of(store, pq.project_id, shown)
        stats = person_stats(store, pq.project_id, keys)
    fields = profile_fields(store, pq.project_id, keys)
    return {
        "q": pq.q,
        "sort": pq.sort,
        "page": pq.page,
        "limit": pq.limit,
        "has_more": len(ordered) > pq.page * pq.limit,
        "rows": [person_row(p, stats.get(p), fields.get(p, {})) for p in shown],
    }


def person_row(person: str, stats: dict[str, Any] | None, fields: dict[str, Any]) -> dict[str, Any]:
    s = stats or {}
    name = " ".join(x for x in (fields.get("first_name"), fields.get("last_name")) if x)
    return {
        "id": person,
        "name": name,
        "email": fields.get("email", ""),
        "avatar": fields.get("avatar", ""),
        "first_seen": _iso(s.get("first_seen")),
        "last_seen": _iso(s.get("last_seen")),
        "events": int(s.get("events", 0)),
        "sessions": int(s.get("sessions", 0)),
    }


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return (moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment).isoformat()


def _sorted(stats: dict[str, dict[str, Any]], sort: str) -> list[str]:
    def rank(person: str) -> tuple[Any, str]:
        value = stats[person].get(sort)
        return (value if value is not None else (EPOCH if sort != "events" else 0), person)

    return sorted(stats, key=rank, reverse=True)


# --- which people


def _match_sql(db: str) -> str:
    """Profile ids whose id, name, email or any property value contains {q}, and profile ids
    seen only on events whose id contains it."""
    has = "positionCaseInsensitiveUTF8({col}, {{q:String}}) > 0"
    columns = (
        "profile_id",
        "email",
        "first_name",
        "last_name",
        "concat(first_name, ' ', last_name)",
    )
    fields = " OR ".join(has.format(col=c) for c in columns)
    values = (
        "arrayExists(v -> positionCaseInsensitiveUTF8(v, {q:String}) > 0, mapValues(properties))"
    )
    return (
        f"SELECT profile_id AS id FROM {db}.profiles WHERE project_id = {{project:String}} "
        f"AND ({fields} OR {values}) "
        f"UNION DISTINCT SELECT key AS id FROM {db}.visitor_sessions "
        f"WHERE project_id = {{project:String}} AND profiled = 1 AND {has.format(col='key')}"
    )


def _matching_ids(store: Store, project_id: str, q: str, limit: int) -> list[str]:
    rows = store.query_rows(
        f"SELECT DISTINCT id FROM ({_match_sql(store.db)}) LIMIT {int(limit)}",
        {"project": project_id, "q": q},
    )
    return [r[0] for r in rows]


def _walk(store: Store, project_id: str, want: int, q: str = "") -> list[str]:
    """The `want` people seen last (matching `q`): index rows newest first, each key
    resolved to its person, anonymous devices skipped; read deeper until enough."""
    n = max(want * 3, 300)
    while True:
        rows = store.query_rows(
            f"SELECT key, profiled FROM {store.db}.visitor_sessions "
            f"WHERE project_id = {{project:String}} ORDER BY last_at DESC, key LIMIT {n}",
            {"project": project_id},
        )
        tokens = list(dict.fromkeys((PROFILE if p else DEVICE) + k for k, p in rows))
        persons = persons_of(store, project_id, tokens)
        # anonymous devices (person "") are nobody yet
        ordered = list(dict.fromkeys(persons[t] for t in tokens if persons[t]))
        if q:
            ordered = _keep_matching(store, project_id, ordered, q)
        if len(ordered) >= want or len(rows) < n:
            return ordered[:want]
        n *= 4


def _walk_matched(
    store: Store, project_id: str, want: int, matched: list[str], batch: int = 0
) -> list[str]:
    """`_walk` over the index rows of the matching people's keys only: the same people in the
    same order, without resolving (and checking) every person seen since. `batch`: the rows
    read first (then four times more each round)."""
    wanted = _persons_of_ids(store, project_id, matched)
    n = batch or max(want * 3, 300)
    while True:
        # the ids are chosen inside the statement: sending them back and forth costs more
        # than reading them (tens of thousands of ids for a broad search)
        rows = store.query_rows(
            f"SELECT key, profiled FROM {store.db}.visitor_sessions "
            f"WHERE project_id = {{project:String}} AND key IN ({_candidate_ids_sql(store.db)}) "
            f"ORDER BY last_at DESC, key LIMIT {n}",
            {"project": project_id, "people": sorted(wanted)},
        )
        tokens = list(dict.fromkeys((PROFILE if p else DEVICE) + k for k, p in rows))
        persons = persons_of(store, project_id, tokens)
        # a key linked to someone else first (or an id shared by a device) is not theirs
        ordered = list(dict.fromkeys(persons[t] for t in tokens if persons[t] in wanted))
        if len(ordered) >= want or len(rows) < n:
            return ordered[:want]
        n *= 4


def _persons_of_ids(store: Store, project_id: str, ids: list[str]) -> set[str]:
    """The people these profile ids resolve to. A profile id resolves through an alias only
    (`persons_of`): those no alias starts from are their own person, so only the few aliased
    ones are resolved, not every match."""
    aliased = [
        s
        for (s,) in store.query_rows(
            f"SELECT DISTINCT source FROM {store.db}.identity_links "
            "WHERE project_id = {project:String} AND kind = 'alias' "
            f"AND source IN ({_EACH.format(name='ids')})",
            {"project": project_id, "ids": ids},
        )
    ]
    people = set(ids) - set(aliased)
    people.update(persons_of(store, project_id, [profile_token(a) for a in aliased]).values())
    people.discard("")
    return people


def _candidate_ids_sql(db: str) -> str:
    """Every id whose key may resolve to one of {people} (a superset of `keys_of`, read without
    resolving each): their ids, the ids aliased to them, and what is linked to either."""
    people = _EACH.format(name="people")
    aliases = (
        f"SELECT source FROM {db}.identity_targets WHERE project_id = {{project:String}} "
        f"AND kind = 'alias' AND target IN ({people})"
    )
    return (
        f"{people} UNION ALL SELECT source FROM {db}.identity_targets "
        f"WHERE project_id = {{project:String}} AND (target IN ({people}) OR target IN ({aliases}))"
    )


def _keep_matching(store: Store, project_id: str, people: list[str], q: str) -> list[str]:
    ids = keys_of(store, project_id, people)
    owner = {k: p for p, tokens in ids.items() for k in profile_ids(tokens)}
    rows = store.query_rows(
        f"SELECT id FROM ({_match_sql(store.db)}) WHERE id IN {{ids:Array(String)}}",
        {"project": project_id, "q": q, "ids": list(owner)},
    )
    hit = {owner[r[0]] for r in rows if r[0] in owner}
    return [p for p in people if p in hit]


def _ranked(store: Store, project_id: str, sort: str, want: int | None, q: str = "") -> list[str]:
    """Every person aggregated at once (one join of the index with the links), best first."""
    db = store.db
    # a row's person: its link's, else its own profile id; an unlinked device is nobody
    resolved = "if(people.person != '', people.person, if(profiled = 1, key, ''))"
    matching = (
        f" AND person IN (SELECT id FROM ({_match_sql(db)}) UNION DISTINCT SELECT person FROM "
        f"({persons_sql(db, sources=f'SELECT id FROM ({_match_sql(db)})')}) "
        "WHERE kind = 'alias')"
        if q
        else ""
    )
    limit = f" LIMIT {int(want)}" if want else ""
    order = {"first_seen": "min(first_at)", "events": "sum(events)"}[sort]
    rows = store.query_rows(
        f"SELECT {resolved} AS person FROM {db}.visitor_sessions "
        f"LEFT ANY JOIN ({persons_sql(db)}) AS people ON people.source_token = {INDEX_TOKEN} "
        f"WHERE project_id = {{project:String}} GROUP BY person "
        f"HAVING person != ''{matching} "
        f"ORDER BY {order} DESC, person DESC{limit}",
        {"project": project_id, "q": q},
    )
    return [r[0] for r in rows]


# --- what is shown of them


def person_stats(
    store: Store, project_id: str, keys: dict[str, list[str]]
) -> dict[str, dict[str, Any]]:
    """first_seen, last_seen, events and sessions of each person (their tokens from
    `keys_of`) with any row in the index."""
    flat = [(k, p) for p, ks in keys.items() for k in ks]
    if not flat:
        return {}
    params: dict[str, Any] = {"project": project_id, "ps": [p for _, p in flat]}
    where = index_where([k for k, _ in flat], params)
    rows = store.query_dicts(
        f"SELECT transform({INDEX_TOKEN}, {{index_tokens:Array(String)}}, {{ps:Array(String)}}, "
        "'') AS person, min(first_at) AS first_seen, max(last_at) AS last_seen, "
        "sum(events) AS events, uniqExactIf(session_id, session_id != '') AS sessions "
        f"FROM {store.db}.visitor_sessions "
        f"WHERE project_id = {{project:String}} AND {where} GROUP BY person",
        params,
    )
    return {r["person"]: r for r in rows}


def profile_fields(
    store: Store, project_id: str, keys: dict[str, list[str]]
) -> dict[str, dict[str, Any]]:
    """Newest non-empty identify fields of each person, over their own and aliased ids."""
    flat = [(k, p) for p, ks in keys.items() for k in profile_ids(ks)]
    if not flat:
        return {}
    rows = store.query_dicts(
        f"SELECT transform(profile_id, {{ks:Array(String)}}, {{ps:Array(String)}}, '') "
        "AS person, argMaxIf(first_name, updated_at, first_name != '') AS first_name, "
        "argMaxIf(last_name, updated_at, last_name != '') AS last_name, "
        "argMaxIf(email, updated_at, email != '') AS email, "
        "argMaxIf(avatar, updated_at, avatar != '') AS avatar "
        f"FROM {store.db}.profiles WHERE project_id = {{project:String}} "
        "AND profile_id IN {ks:Array(String)} GROUP BY person",
        {"project": project_id, "ks": [k for k, _ in flat], "ps": [p for _, p in flat]},
    )
    return {r["person"]: r for r in rows}
