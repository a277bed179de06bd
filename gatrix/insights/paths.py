"""Paths: which pages sessions visit after (or before) a page, as a Sankey diagram's nodes and
weighted links (README "Paths").

A session's path is its page views in time order inside the range, a page repeated right
after itself (a reload) counted once. `from`: from the session's first view of the page, the
next `depth` pages; a session that ends sooner goes to an "exit" node. `to`: the `depth`
pages before the session's first view of it; a session that began sooner comes from an
"entry" node. Links count sessions. Each level keeps its `limit` most visited pages; the
others are merged into one "(other)" node of that level, so the links still add up.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from gatrix.clickhouse.store import Store
from gatrix.insights.query import InvalidQuery, Query
from gatrix.insights.sql import base_params, filtered_sessions, from_first_event, uses_rollups
from gatrix.insights.steps import Step, like, parse_step
from gatrix.pageviews import PAGEVIEW_SQL

MIN_DEPTH, MAX_DEPTH = 1, 5
MAX_LIMIT = 20
# a path cannot hold a NUL (the ingest path refuses control characters), so these can
# never be mistaken for a page
EXIT, ENTRY = "\x00exit", "\x00entry"
OTHER = "(other)"
# a page with at least this share of the page views is ordered with every session
COMMON = 0.05


def anchor_step(text: str) -> Step:
    """`/pricing`, a glob, or `page:/pricing`; paths follow pages, so no conditions."""
    step = parse_step(text if text.startswith("page:") else f"page:{text}", "page")
    if step.conditions:
        raise InvalidQuery("paths follow page views: a page takes no [property=value]")
    return step


def paths(
    store: Store,
    q: Query,
    anchor: Step,
    direction: str = "from",
    depth: int = 3,
    limit: int = 5,
) -> dict[str, Any]:
    if direction not in ("from", "to"):
        raise InvalidQuery("give from=<page> or to=<page>")
    if not MIN_DEPTH <= depth <= MAX_DEPTH:
        raise InvalidQuery(f"depth must be between {MIN_DEPTH} and {MAX_DEPTH}")
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidQuery(f"limit must be between 1 and {MAX_LIMIT}")
    q = from_first_event(store, q)
    db, params = store.db, base_params(q)
    target = params.add(like(anchor.target) if anchor.is_glob else anchor.target)
    matches = f"p {'LIKE' if anchor.is_glob else '='} {{{target}:String}}"
    where = [
        "project_id = {project:String}",
        "created_at >= {start:DateTime64(3, 'UTC')}",
        "created_at < {end:DateTime64(3, 'UTC')}",
        PAGEVIEW_SQL,
    ]
    if not _common(store, q, anchor, target, params.values):
        # only sessions that viewed the page are ordered into paths: usually a small share
        where.append(
            f"session_id IN (SELECT session_id FROM {db}.events WHERE {' AND '.join(where)} "
            f"AND path {'LIKE' if anchor.is_glob else '='} {{{target}:String}})"
        )
    sessions = filtered_sessions(db, q, params)
    if sessions:
        where.append(sessions)
    n = int(depth)
    if direction == "from":
        # the anchor and the pages after it, then "exit" when the session ends sooner
        seq = f"arraySlice(arrayConcat(arraySlice(pages, at), ['{EXIT}']), 1, {n + 1})"
    else:
        # the anchor and the pages before it, nearest first, then "entry"
        seq = (
            f"arraySlice(arrayConcat(arrayReverse(arraySlice(pages, 1, at)), ['{ENTRY}']), "
            f"1, {n + 1})"
        )
    # a session's page views are gathered by the 64-bit hash of its id: grouping numbers
    # instead of strings takes ~40% less CPU at 10M events (BENCHMARKS.md), and two
    # sessions of one range sharing a hash are as unlikely as in the visitor counts
    rows = store.query_rows(
        f"SELECT i, seq[i] AS a, seq[i + 1] AS b, count() FROM ("
        f"SELECT {seq} AS seq FROM ("
        f"SELECT pages, arrayFirstIndex(p -> {matches}, pages) AS at FROM ("
        f"SELECT arrayFilter((p, i) -> i = 1 OR p != raw[i - 1], raw, arrayEnumerate(raw)) "
        f"AS pages FROM (SELECT arrayMap(x -> x.2, arraySort(x -> x.1, groupArray(("
        f"created_at, path)))) AS raw FROM {db}.events WHERE {' AND '.join(where)} "
        f"GROUP BY cityHash64(session_id))) WHERE at > 0)) "
        f"ARRAY JOIN arrayEnumerate(arrayPopBack(seq)) AS i GROUP BY i, a, b",
        params.values,
    )
    links = [(int(i) - 1, str(a), str(b), int(c)) for i, a, b, c in rows]
    return {
        "range": q.range.as_dict(),
        "direction": direction,
        "page": anchor.target,
        "depth": depth,
        **_sankey(links, direction, limit),
    }


def _common(store: Store, q: Query, anchor: Step, target: str, params: dict[str, Any]) -> bool:
    """Whether the page holds at least COMMON of the range's page views (from the hourly
    page rollup, when the range allows it). Such a page is in most sessions: picking the
    sessions that viewed it first costs more than ordering every session (BENCHMARKS.md)."""
    if not uses_rollups(q):
        return False
    matches = f"path {'LIKE' if anchor.is_glob else '='} {{{target}:String}}"
    rows = store.query_rows(
        f"SELECT sumIf(pageviews, {matches}), sum(pageviews) FROM {store.db}.page_hourly "
        "WHERE project_id = {project:String} AND hour >= {start:DateTime64(3, 'UTC')} "
        "AND hour < {end:DateTime64(3, 'UTC')}",
        params,
    )
    views, total = rows[0] if rows else (0, 0)
    return bool(total) and int(views) >= COMMON * int(total)


def _sankey(links: list[tuple[int, str, str, int]], direction: str, limit: int) -> dict[str, Any]:
    """Links (level, page, next page, sessions), level 0 being the anchor, → top pages per
    level, the rest merged into "(other)"; for `to` the levels count backwards and the
    links point forwards in time (from the earlier page to the later one)."""
    weight: dict[tuple[int, str], int] = defaultdict(int)
    for level, a, b, count in links:
        if level == 0:
            weight[(0, a)] += count
        weight[(level + 1, b)] += count
    kept: set[tuple[int, str]] = set()
    by_level: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for level, name in weight:
        if name in (EXIT, ENTRY):
            kept.add((level, name))
        else:
            by_level[level].append((level, name))
    for nodes in by_level.values():
        nodes.sort(key=lambda node: (-weight[node], node[1]))
        kept.update(nodes[:limit])

    def merged(node: tuple[int, str]) -> tuple[int, str]:
        return node if node in kept else (node[0], OTHER)

    sessions: dict[tuple[int, str], int] = defaultdict(int)
    for node, count in weight.items():
        sessions[merged(node)] += count
    edges: dict[tuple[tuple[int, str], tuple[int, str]], int] = defaultdict(int)
    for level, a, b, count in links:
        edges[(merged((level, a)), merged((level + 1, b)))] += count
    sign = 1 if direction == "from" else -1
    order = sorted(sessions, key=lambda node: (node[0], -sessions[node], node[1]))
    ids = {node: i for i, node in enumerate(order)}
    nodes = [
        {
            "id": ids[node],
            "level": sign * node[0],
            "name": _name(node[1]),
            "kind": _kind(node[1]),
            "sessions": sessions[node],
        }
        for node in order
    ]
    out_links = []
    for (a, b), count in sorted(edges.items(), key=lambda e: (e[0][0][0], -e[1])):
        source, target = (a, b) if direction == "from" else (b, a)
        out_links.append({"source": ids[source], "target": ids[target], "sessions": count})
    total = sum(c for level, _, _, c in links if level == 0)
    return {"sessions": total, "nodes": nodes, "links": out_links}


def _name(page: str) -> str:
    return {EXIT: "exit", ENTRY: "entry"}.get(page, page)


def _kind(page: str) -> str:
    return {EXIT: "exit", ENTRY: "entry", OTHER: "other"}.get(page, "page")
