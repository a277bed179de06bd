"""Funnels: how many visitors did steps 1…k in order within a window (README "Funnels").

A visitor counts at step k when, inside the range, they did step 1 and then steps 2…k in
that order, each later step no more than `window` after the step 1 that began the attempt
(other events in between are allowed; one event never stands for two steps).

How it is computed, and why not `windowFunnel`: `windowFunnel` gives the deepest step but not
when each step happened, so the times would need a second pass over the same events. One
`arrayFold` over each visitor's matching events, in time order, does both: it keeps, for
every level k, the attempt that reached k with the latest start (a later start leaves the
most window for the next steps, which is also `windowFunnel`'s rule), and the times of its
steps; an attempt replaces the one held at its level only when it started later, so a step
done twice keeps its first time. The deepest attempt gives the visitor's level and the
time from each step to the next. BENCHMARKS.md compares both (same counts, about the same cost).
"""

from __future__ import annotations

import re
from typing import Any

from gatrix.clickhouse.store import Store
from gatrix.insights.filters import EVENT_DIMENSIONS, SESSION_DIMENSIONS, canonical_dimension
from gatrix.insights.identity import resolution
from gatrix.insights.query import InvalidQuery, Query
from gatrix.insights.sql import SESSION_COLUMNS, base_params, filtered_sessions, from_first_event
from gatrix.insights.steps import Step, prefilter

MIN_STEPS, MAX_STEPS = 2, 8
DEFAULT_WINDOW = "24h"
MIN_WINDOW_S, MAX_WINDOW_S = 60, 90 * 86400
MAX_BREAKDOWN_ROWS = 50
OTHER = "(other)"
_WINDOW = re.compile(r"^([1-9][0-9]{0,5})(m|h|d)$")
_UNIT_S = {"m": 60, "h": 3600, "d": 86400}


def parse_window(text: str | None) -> int:
    """`30m`, `1h`, `7d` → seconds, between a minute and 90 days."""
    match = _WINDOW.match(text or DEFAULT_WINDOW)
    if match is None:
        raise InvalidQuery("window must be a number and m, h or d: 30m, 1h, 7d")
    seconds = int(match.group(1)) * _UNIT_S[match.group(2)]
    if not MIN_WINDOW_S <= seconds <= MAX_WINDOW_S:
        raise InvalidQuery("window must be between 1m and 90d")
    return seconds


# Events that cannot change the fold's outcome, dropped before it (its cost grows with the
# longest array): in a run of events matching step 1 only, all but the last (a later start
# replaces the earlier ones before anything reads them); in a run of events matching the same
# single later step, all but the first (the next ones find the attempt they would extend
# already extended with the same start). 35-40% less time at 1M events, same answers.
SQUEEZE = (
    "arrayFilter((e, i) -> NOT ((bitCount(e.2) = 1 AND e.2 != 1 AND i > 1 "
    "AND evs[i - 1].2 = e.2) OR (e.2 = 1 AND i < length(evs) AND evs[i + 1].2 = 1)), "
    "evs, arrayEnumerate(evs))"
)


def _fold(steps: int) -> str:
    """Per visitor: the deepest attempt, as the times (ms) of its steps."""
    n = int(steps)
    state = (
        "arrayFold((acc, e) -> arrayMap(k -> if(bitTest(e.2, k - 1) AND (k = 1 OR ("
        "length(acc[k - 1]) > 0 AND e.1 - acc[k - 1][1] <= {window_ms:Int64} "
        "AND (length(acc[k]) = 0 OR acc[k - 1][1] > acc[k][1]))), "
        "arrayPushBack(if(k = 1, CAST([], 'Array(Int64)'), acc[k - 1]), e.1), acc[k]), "
        f"range(1, {n + 1})), {SQUEEZE}, CAST(arrayWithConstant({n}, []), 'Array(Array(Int64))'))"
    )
    return f"arrayFirst(c -> length(c) > 0, arrayReverse({state}))"


def funnel(
    store: Store,
    q: Query,
    steps: list[Step],
    window_s: int,
    breakdown: str | None = None,
    limit: int = 10,
) -> dict[str, Any]:
    if not MIN_STEPS <= len(steps) <= MAX_STEPS:
        raise InvalidQuery(f"a funnel has {MIN_STEPS} to {MAX_STEPS} steps")
    if not 1 <= limit <= MAX_BREAKDOWN_ROWS:
        raise InvalidQuery(f"limit must be between 1 and {MAX_BREAKDOWN_ROWS}")
    dimension = breakdown_dimension(breakdown) if breakdown else None
    q = from_first_event(store, q)
    db, params = store.db, base_params(q)
    params.values["window_ms"] = window_s * 1000
    v = resolution(store, q.project_id)
    conditions = [step.sql(params) for step in steps]
    # one bit per step: an event may match several steps, the fold decides which it serves
    mask = " + ".join(f"toUInt8({c}) * {1 << i}" for i, c in enumerate(conditions))
    value, session_join = "''", ""
    if dimension in SESSION_DIMENSIONS:
        column = SESSION_DIMENSIONS[dimension]
        value = "bd.value"
        session_join = (
            f" LEFT ANY JOIN (SELECT session_id AS sid, {SESSION_COLUMNS[column]} AS value "
            f"FROM {db}.sessions WHERE project_id = {{project:String}} "
            f"AND session_start >= {{lead:DateTime64(3, 'UTC')}} "
            f"AND session_start < {{end:DateTime64(3, 'UTC')}} GROUP BY sid) AS bd "
            f"ON bd.sid = session_id"
        )
    elif dimension is not None:
        value = EVENT_DIMENSIONS[dimension]
    where = [
        "project_id = {project:String}",
        "created_at >= {start:DateTime64(3, 'UTC')}",
        "created_at < {end:DateTime64(3, 'UTC')}",
        prefilter(steps, params),
        f"({' OR '.join(conditions)})",
    ]
    sessions = filtered_sessions(db, q, params)
    if sessions:
        where.append(sessions)
    per_visitor = (
        f"SELECT {v.expr()} AS visitor, arraySort(x -> x.1, groupArray(("
        f"toUnixTimestamp64Milli(created_at), toUInt8({mask}), toString({value})))) AS evs "
        f"FROM {db}.events{v.join()}{session_join} WHERE {' AND '.join(where)} GROUP BY visitor"
    )
    # the visitor's breakdown value: the one of the step 1 event that began the attempt
    attempts = (
        f"SELECT chain, arrayFirst(e -> e.1 = chain[1] AND bitTest(e.2, 0), evs).3 AS value "
        f"FROM (SELECT evs, {_fold(len(steps))} AS chain FROM ({per_visitor})) "
        f"WHERE length(chain) > 0"
    )
    ranked = (
        f"SELECT chain, if(dense_rank() OVER (ORDER BY n DESC, value) <= {int(limit)}, "
        f"value, '{OTHER}') AS bucket FROM (SELECT chain, value, count() OVER "
        f"(PARTITION BY value) AS n FROM ({attempts}))"
    )
    rows = store.query_dicts(
        f"SELECT bucket, k, grouping(bucket) AS total, count() AS visitors, "
        f"quantileExactInclusiveIf(0.5)(d, k > 1) AS median_ms FROM ({ranked}) "
        f"ARRAY JOIN arrayEnumerate(chain) AS k, arrayDifference(chain) AS d "
        f"GROUP BY GROUPING SETS ((k), (bucket, k))",
        params.values,
    )
    labels = [step.text() for step in steps]
    totals = {int(r["k"]): r for r in rows if r["total"]}
    out: dict[str, Any] = {
        "range": q.range.as_dict(),
        "window_seconds": window_s,
        "steps": _steps(labels, totals),
    }
    if dimension is not None:
        values: dict[str, dict[int, dict[str, Any]]] = {}
        for r in rows:
            if not r["total"]:
                values.setdefault(r["bucket"], {})[int(r["k"])] = r
        ordered = sorted(values, key=lambda b: (b == OTHER, -_first(values[b]), b))
        out["breakdown"] = {
            "dimension": dimension,
            "rows": [{"value": b, "steps": _steps(labels, values[b])} for b in ordered],
        }
    return out


def _first(levels: dict[int, dict[str, Any]]) -> int:
    return int(levels[1]["visitors"]) if 1 in levels else 0


def _steps(labels: list[str], levels: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    first = _first(levels)
    out: list[dict[str, Any]] = []
    previous = first
    for k, label in enumerate(labels, start=1):
        row = levels.get(k)
        visitors = int(row["visitors"]) if row else 0
        median = row["median_ms"] if row and k > 1 else None
        out.append(
            {
                "step": label,
                "visitors": visitors,
                "conversion": _pct(visitors, first),
                "conversion_from_previous": _pct(visitors, previous),
                "dropped": previous - visitors,
                "median_seconds_from_previous": (
                    round(float(median) / 1000, 1)
                    if median is not None and median == median
                    else None
                ),
            }
        )
        previous = visitors
    return out


def _pct(part: int, whole: int) -> float:
    return round(100 * part / whole, 1) if whole else 0.0


def breakdown_dimension(name: str) -> str:
    try:
        dimension = canonical_dimension(name)
    except ValueError as exc:
        raise InvalidQuery(str(exc)) from exc
    return "events" if dimension == "name" else dimension
