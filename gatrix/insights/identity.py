"""Who a visitor is, decided when a report is read (README "Visitors").

An event's own key is its profile id when it carries one, else its device id (the two kept
apart: a device id equal to a profile id is not that person). Identity
links then map keys to people: a device to the person it was identified as (by `identify`
or by an event carrying both ids), a profile id to the profile it was aliased to. Because
the mapping is applied at query time, a link made today also claims what the device did
before the person logged in.

Rules: a source linked to several people belongs to the one it was linked to first; an
alias is followed one step (the target of an alias is not looked up again), so a device
of an aliased profile resolves to the surviving profile; of two ids aliased to each other,
the earlier alias stands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gatrix.clickhouse.store import Store

# an event's own key as text (to narrow which links are read), and as the 64-bit hash every
# count uses: device ids hash apart from profile ids, so a device id a browser picks (say,
# `__deviceId: "bob"`) is never the person bob
KEY = "if(profile_id != '', profile_id, device_id)"
KEY_HASH = "if(profile_id != '', cityHash64(profile_id), cityHash64(device_id, 'device'))"
# the People pages' typed keys (see below)
PROFILE, DEVICE = "p:", "d:"
# a link's source as the key hash its events carry (what `identity_map` is keyed by)
SOURCE_HASH = "if(kind = 'device', cityHash64(source, 'device'), cityHash64(source))"


def _links_sql(db: str, kind: str = "", sources: str = "") -> str:
    """(source hash, source id, target) per source, the earliest link winning (argMin over the
    rows of a source finds it directly); optionally one kind only, or only the sources an
    IN-subquery lists."""
    where = ["project_id = {project:String}"]
    if kind:
        where.append(f"kind = '{kind}'")
    if sources:
        where.append(f"source IN ({sources})")
    return (
        f"SELECT {SOURCE_HASH} AS source_hash, any(source) AS source_id, "
        f"any(kind) AS source_kind, min(linked_at) AS first_linked, "
        f"argMin(target, linked_at) AS target FROM {db}.identity_links "
        f"WHERE {' AND '.join(where)} GROUP BY source_hash"
    )


# A source's person: its link's target, or the target's own alias (one step). Two profile ids
# aliased to each other (a cycle) keep the earlier alias: the later one is ignored.
_CYCLE = "l.source_kind = 'alias' AND a.target = l.source_id"
_PERSON = (
    f"multiIf({_CYCLE} AND a.first_linked < l.first_linked, l.source_id, "
    f"{_CYCLE}, l.target, a.target != '', a.target, l.target)"
)


def persons_sql(db: str, sources: str = "") -> str:
    """(source hash, source, person as text) for every linked key (or only those `sources`
    selects)."""
    # the aliases that can matter: of every person (or of the people `sources` link to)
    alias_sources = (
        f"SELECT target FROM {db}.identity_links WHERE project_id = {{project:String}} "
        f"AND source IN ({sources})"
        if sources
        else ""
    )
    return (
        f"SELECT l.source_hash AS source_hash, l.source_id AS source, l.source_kind AS kind, "
        f"concat(if(l.source_kind = 'device', '{DEVICE}', '{PROFILE}'), l.source_id) "
        "AS source_token, "
        f"{_PERSON} AS person "
        f"FROM ({_links_sql(db, sources=sources)}) AS l "
        f"LEFT ANY JOIN ({_links_sql(db, kind='alias', sources=alias_sources)}) AS a "
        f"ON a.source_id = l.target"
    )


def _link_hashes_sql(db: str, kind: str = "", sources: str = "") -> str:
    """(source hash, target hash) per source, the earliest link winning: `_links_sql` with
    numbers only, so the reports' resolution groups and joins no strings."""
    where = ["project_id = {project:String}"]
    if kind:
        where.append(f"kind = '{kind}'")
    if sources:
        where.append(f"source IN ({sources})")
    return (
        f"SELECT {SOURCE_HASH} AS source_hash, argMin(cityHash64(target), linked_at) "
        f"AS target_hash, min(linked_at) AS first_linked FROM {db}.identity_links "
        f"WHERE {' AND '.join(where)} GROUP BY source_hash"
    )


# `_PERSON` in hashes: an alias source's hash is its profile id's, so a cycle is a target
# alias pointing back at the source
_CYCLE_HASH = "a.target_hash = l.source_hash"
_PERSON_HASH = (
    f"multiIf({_CYCLE_HASH} AND a.first_linked < l.first_linked, l.source_hash, "
    f"{_CYCLE_HASH}, l.target_hash, a.target_hash != 0, a.target_hash, l.target_hash)"
)


def _map_sql(db: str, alias: bool = False) -> str:
    """`_link_hashes_sql` read from `identity_map` (migration 0009): one stored row per source
    holding its earliest link, instead of every link's strings grouped on each query;
    optionally the aliases only (a prefix of its primary key). FINAL merges the rows of a
    source still in several parts as the table's merges would, in primary key order, which
    costs far less than a GROUP BY over a tuple min (BENCHMARKS.md, people)."""
    where = "project_id = {project:String}" + (" AND alias = 1" if alias else "")
    return (
        "SELECT source_hash, first_link.2 AS target_hash, first_link.1 AS first_linked "
        f"FROM {db}.identity_map FINAL WHERE {where}"
    )


def people_sql(db: str, sources: str = "", stored_map: bool = True) -> str:
    """key → person for every linked key (or only those `sources` selects), both as 64-bit
    hashes: joining and counting numbers instead of strings keeps resolution about as cheap
    as no resolution (BENCHMARKS.md, people). The same answer as `persons_sql`: an alias's
    source hash is the hash of the profile id it names, so the alias step joins on hashes.
    Without `stored_map` the links are grouped at query time (a cluster: its shards hold a
    source's map rows apart, and FINAL merges within a shard only)."""
    if sources or not stored_map:
        # a few keys: their links are read by the primary key of `identity_links`
        alias_sources = (
            f"SELECT target FROM {db}.identity_links WHERE project_id = {{project:String}} "
            f"AND source IN ({sources})"
            if sources
            else ""
        )
        links = _link_hashes_sql(db, sources=sources)
        aliases = _link_hashes_sql(db, kind="alias", sources=alias_sources)
    else:
        links, aliases = _map_sql(db), _map_sql(db, alias=True)
    return (
        f"SELECT l.source_hash AS key_hash, {_PERSON_HASH} AS person_hash "
        f"FROM ({links}) AS l LEFT ANY JOIN ({aliases}) AS a ON a.source_hash = l.target_hash"
    )


@dataclass(frozen=True, slots=True)
class Visitors:
    """How a statement counts visitors: `join()` goes after its FROM (empty when nothing is
    linked) and `expr()` is the visitor of a row, for uniq(). Both take the row's key hash;
    the default computes it from `profile_id` and `device_id`."""

    people: str = ""

    def join(self, key_hash: str = KEY_HASH) -> str:
        if not self.people:
            return ""
        return f" LEFT ANY JOIN ({self.people}) AS people ON people.key_hash = {key_hash}"

    def expr(self, key_hash: str = KEY_HASH) -> str:
        if not self.people:
            return key_hash
        # the person's hash, or the row's own key hash, so uniq() sees one type
        return f"if(people.person_hash != 0, people.person_hash, {key_hash})"

    @property
    def direct(self) -> bool:
        return not self.people


DIRECT = Visitors()


def resolution(
    store: Store, project_id: str, sources: str = "", linked: bool | None = None
) -> Visitors:
    """The resolution a project needs: none until something links two ids (one primary-key
    read, unless the caller read `linked_sql` in a statement of its own), then a join with
    its links. `sources` narrows the links read to the keys a subquery lists, for statements
    over a few minutes of events."""
    if not (has_links(store, project_id) if linked is None else linked):
        return DIRECT
    return Visitors(people_sql(store.db, sources, stored_map=not store.cluster))


def linked_sql(db: str) -> str:
    """A scalar subquery: 1 when the project `{project}` has an identity link, else 0."""
    return (
        f"SELECT count() FROM (SELECT 1 FROM {db}.identity_links "
        "WHERE project_id = {project:String} LIMIT 1)"
    )


def has_links(store: Store, project_id: str) -> bool:
    rows = store.query_rows(f"SELECT ({linked_sql(store.db)})", {"project": project_id})
    return bool(rows[0][0])


# --- a few keys or people at a time (the People pages)
#
# There, a key is a typed token: "p:<profile id>" or "d:<device id>". The same text can be a
# device id and someone's profile id (a page may send `__deviceId: "alice"`); a bare id would
# make that device's links, sessions and erasure reach the person alice.

# an event's token, and a people-index row's (visitor_sessions rows are all of one kind:
# `profiled` is 1 exactly when the key is a profile id)
EVENT_TOKEN = (
    f"if(profile_id != '', concat('{PROFILE}', profile_id), concat('{DEVICE}', device_id))"
)
INDEX_TOKEN = f"concat(if(profiled = 1, '{PROFILE}', '{DEVICE}'), key)"


def profile_token(profile_id: str) -> str:
    return PROFILE + profile_id


def profile_ids(tokens: list[str]) -> list[str]:
    return [t[len(PROFILE) :] for t in tokens if t.startswith(PROFILE)]


def index_where(tokens: list[str], params: dict[str, Any]) -> str:
    """visitor_sessions rows of these tokens: the bare ids narrow by the primary key, the
    tokens keep the kinds apart."""
    params["index_ids"] = sorted({t[2:] for t in tokens})
    params["index_tokens"] = tokens
    return f"key IN {{index_ids:Array(String)}} AND {INDEX_TOKEN} IN {{index_tokens:Array(String)}}"


def _token(kind: str, source: str) -> str:
    return (DEVICE if kind == "device" else PROFILE) + source


def persons_of(store: Store, project_id: str, tokens: list[str]) -> dict[str, str]:
    """The person each token resolves to: its link's target, else the profile id itself;
    "" for a device nobody was identified on."""
    if not tokens:
        return {}
    sql = (
        "SELECT kind, source, person "
        f"FROM ({persons_sql(store.db, sources='SELECT arrayJoin({ids:Array(String)})')})"
    )
    ids = sorted({t[2:] for t in tokens})
    rows = store.query_rows(sql, {"project": project_id, "ids": ids})
    found = {_token(kind, source): person for kind, source, person in rows}
    return {t: found.get(t, t[len(PROFILE) :] if t.startswith(PROFILE) else "") for t in tokens}


def keys_of(store: Store, project_id: str, persons: list[str]) -> dict[str, list[str]]:
    """Every token that resolves to each person: the person's own id, the profile ids aliased
    to it, and the devices linked to any of these that were not linked to someone first.
    Read from the reverse links (identity_targets), two primary-key reads and one resolve."""
    if not persons:
        return {}
    params: dict[str, Any] = {"project": project_id}
    db = store.db
    aliases = store.query_rows(
        f"SELECT DISTINCT source FROM {db}.identity_targets WHERE project_id = {{project:String}}"
        " AND target IN {persons:Array(String)} AND kind = 'alias'",
        {**params, "persons": persons},
    )
    ids = sorted({*persons, *(a for (a,) in aliases)})
    linked = store.query_rows(
        f"SELECT DISTINCT kind, source FROM {db}.identity_targets "
        "WHERE project_id = {project:String} AND target IN {ids:Array(String)}",
        {**params, "ids": ids},
    )
    candidates = sorted({*map(profile_token, ids), *(_token(k, s) for k, s in linked)})
    resolved = persons_of(store, project_id, candidates)
    wanted = set(persons)
    out: dict[str, list[str]] = {p: [] for p in persons}
    for token, person in resolved.items():
        if person in wanted:
            out[person].append(token)
    return out
