"""Goals report (README "Goals"): per goal the visitors who reached it, its completions, the
conversion rate and its revenue; and breakdowns by a goal, the conversion rate per value.

Definitions: a goal's visitors are those with an event matching its step in the range;
conversions count those events; the conversion rate is the goal's visitors over all visitors
counted in the range (the `metrics` visitors, under the same filters) × 100. Revenue sums the
goal's `revenue_property` (a number in the event's properties; text that is not a number
counts 0), or the events' `__revenue` when the goal names none; `null` when no matching
event carries any.

A breakdown by a goal lists the values through which the goal was reached: for each value,
`visitors` are the visitors of the sessions with that value (a session dimension), or with
an event of that value (page, event name, screen, language); `conversions` those of them
whose session also completed the goal; `conversion_rate` = conversions / visitors × 100.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

from gatrix.clickhouse.store import Store
from gatrix.insights.filters import EVENT_DIMENSIONS, SESSION_DIMENSIONS, Params
from gatrix.insights.funnels import breakdown_dimension
from gatrix.insights.identity import Visitors, resolution
from gatrix.insights.query import InvalidQuery, Query
from gatrix.insights.reports import _event_totals_sql, _hourly_visitors_sql
from gatrix.insights.sql import (
    CURRENT,
    base_params,
    events_where,
    from_first_event,
    revenue_total,
    sessions_sql,
    uses_rollups,
)
from gatrix.insights.steps import Step, parse_step, prefilter
from gatrix.meta.goals import GoalDef, get_goal
from gatrix.pageviews import PAGEVIEW_NAMES

_GOAL_ID = re.compile(r"[0-9]{1,9}")


def _revenue(goal: GoalDef, params: Params) -> str:
    if goal.revenue_property:
        return f"toFloat64OrZero(properties[{{{params.add(goal.revenue_property)}:String}}])"
    return "revenue"


def goals(store: Store, q: Query, defs: list[GoalDef]) -> dict[str, Any]:
    q = from_first_event(store, q)
    db, params = store.db, base_params(q)
    v = resolution(store, q.project_id)
    steps = [parse_step(goal.step, "goal") for goal in defs]
    rolled = [_from_rollups(goal, step, q, v) for goal, step in zip(defs, steps, strict=True)]
    figures = _goal_figures(store, _branches(db, q, params, v, defs, steps, rolled), params)
    total = figures.pop(TOTAL, Figures()).visitors
    out = []
    for i, goal in enumerate(defs):
        got = figures.get(i, Figures())
        out.append(
            {
                **goal.as_dict(),
                "visitors": got.visitors,
                "conversions": got.conversions,
                "conversion_rate": round(100 * got.visitors / total, 1) if total else 0.0,
                "revenue": revenue_total(got.revenue, got.revenue_events),
            }
        )
    return {"range": q.range.as_dict(), "visitors": total, "goals": out}


# The report is a UNION ALL of independent reads (the visitor total, each rollup, the raw
# events), one row of figures per goal and read: ClickHouse runs a union's branches side by
# side, where a join of the same subqueries ran them one after the other (~1.4x slower).
TOTAL = -1


@dataclass
class Figures:
    visitors: int = 0
    conversions: int = 0
    revenue: float = 0.0
    revenue_events: int = 0


def _goal_figures(store: Store, branches: list[str], params: Params) -> dict[int, Figures]:
    """Figures per goal index (TOTAL: the visitor total), added up over the branches: a goal
    read from the rollups gets its revenue from a separate read of the raw events."""
    out: dict[int, Figures] = {}
    for i, visitors, conversions, revenue, revenue_events in store.query_rows(
        " UNION ALL ".join(branches), params.values
    ):
        got = out.setdefault(int(i), Figures())
        got.visitors += int(visitors)
        got.conversions += int(conversions)
        got.revenue += float(revenue)
        got.revenue_events += int(revenue_events)
    return out


def _rows(figures: list[tuple[int, str, str, str, str]], source: str) -> str:
    """One branch: a single aggregation over `source` (FROM … WHERE …) giving one row per
    goal, (index, visitors, conversions, revenue, revenue events)."""
    tuples = ", ".join(
        f"tuple(toInt16({i}), toUInt64({v}), toUInt64({n}), toFloat64({r}), toUInt64({rn}))"
        for i, v, n, r, rn in figures
    )
    return (
        "SELECT x.1 AS i, x.2 AS v, x.3 AS n, x.4 AS r, x.5 AS rn "
        f"FROM (SELECT [{tuples}] AS xs FROM {source}) ARRAY JOIN xs AS x"
    )


def _branches(
    db: str,
    q: Query,
    params: Params,
    v: Visitors,
    defs: list[GoalDef],
    steps: list[Step],
    rolled: list[bool],
) -> list[str]:
    CURRENT.bind(params, q)
    hours = f"project_id = {{project:String}} AND hour >= {CURRENT.start} AND hour < {CURRENT.end}"
    # all visitors exactly as `metrics` counts them (from the rollups when it can)
    if uses_rollups(q):
        total = f"({_hourly_visitors_sql(db, v, hours)})"
    else:
        total = f"({_event_totals_sql(db, q, params, CURRENT, v)})"
    out = [_rows([(TOTAL, "visitors", "0", "0", "0")], total)]
    pages = [i for i, step in enumerate(steps) if rolled[i] and step.kind == "page"]
    names = [i for i, step in enumerate(steps) if rolled[i] and step.kind == "event"]
    for table, count, which, match in (
        ("page_hourly", "pageviews", pages, lambda step: step.path_sql(params)),
        (
            "event_hourly",
            "events",
            names,
            lambda step: f"name = {{{params.add(step.target)}:String}}",
        ),
    ):
        if which:
            tests = {i: match(steps[i]) for i in which}
            out.append(
                _rows(
                    [
                        (i, f"uniqMergeIf(visitors, {t})", f"sumIf({count}, {t})", "0", "0")
                        for i, t in tests.items()
                    ],
                    f"{db}.{table} WHERE {hours} AND ({' OR '.join(tests.values())})",
                )
            )
    if pages or names:
        # the rollups hold no revenue; the events that carry some are few: read directly
        conds = {i: steps[i].sql(params) for i in (*pages, *names)}
        out.append(
            _rows(
                [(i, "0", "0", f"sumIf(revenue, {c})", f"countIf({c})") for i, c in conds.items()],
                f"{db}.events WHERE {events_where(db, q, params)} AND revenue != 0",
            )
        )
    raw = [i for i in range(len(defs)) if not rolled[i]]
    if raw:
        # one pass over the events that can complete one of these goals
        conds = {i: steps[i].sql(params) for i in raw}
        figures = []
        for i, c in conds.items():
            money = _revenue(defs[i], params)
            figures.append(
                (
                    i,
                    f"uniqIf({v.expr()}, {c})",
                    f"countIf({c})",
                    f"sumIf({money}, {c})",
                    f"countIf({c} AND {money} != 0)",
                )
            )
        where = (
            f"{events_where(db, q, params)} AND {prefilter([steps[i] for i in raw], params)} "
            f"AND ({' OR '.join(conds.values())})"
        )
        out.append(_rows(figures, f"{db}.events{v.join()} WHERE {where}"))
    return out


def _from_rollups(goal: GoalDef, step: Step, q: Query, v: Visitors) -> bool:
    """A goal the hourly rollups answer: visitors and completions per path or event name and
    hour are there, counted as `metrics` counts its rollup visitors. Not when the query needs
    raw events (filters, a range off the hour), people are linked (the rollups count devices),
    the step tests properties, or revenue comes from a property; nor for `event:` of a page
    view name (event_hourly holds only the other events)."""
    if not uses_rollups(q) or not v.direct or step.conditions or goal.revenue_property:
        return False
    return step.kind == "page" or step.target not in PAGEVIEW_NAMES


def breakdown_by_goal(
    store: Store,
    q: Query,
    engine: Engine,
    goal_id: str,
    dimension: str,
    limit: int = 10,
    page: int = 1,
) -> dict[str, Any]:
    """`breakdown/{dimension}?goal=<id>`: the goal is looked up in this project only."""
    known = _GOAL_ID.fullmatch(goal_id)
    goal = get_goal(engine, q.project_id, int(goal_id)) if known else None
    if goal is None:
        raise InvalidQuery(f"no goal {goal_id[:20]!r} in this project")
    return goal_breakdown(store, q, goal, dimension, limit, page)


def goal_breakdown(
    store: Store,
    q: Query,
    goal: GoalDef,
    dimension: str,
    limit: int = 10,
    page: int = 1,
) -> dict[str, Any]:
    if not 1 <= limit <= 1000 or not 1 <= page <= 10_000:
        raise InvalidQuery("limit must be 1–1000 and page 1–10000")
    dimension = breakdown_dimension(dimension)
    q = from_first_event(store, q)
    db, params = store.db, base_params(q)
    v = resolution(store, q.project_id)
    step = parse_step(goal.step, "goal")
    cond = f"{prefilter([step], params)} AND {step.sql(params)}"
    converted = (
        f"SELECT DISTINCT session_id FROM {db}.events WHERE project_id = {{project:String}} "
        f"AND created_at >= {{start:DateTime64(3, 'UTC')}} "
        f"AND created_at < {{end:DateTime64(3, 'UTC')}} AND {cond}"
    )
    order = (
        " HAVING conversions > 0 ORDER BY conversions DESC, value ASC "
        f"LIMIT {int(limit) + 1} OFFSET {(int(page) - 1) * int(limit)}"
    )
    if dimension in SESSION_DIMENSIONS:
        column = SESSION_DIMENSIONS[dimension]
        inner = sessions_sql(db, q, params, extra=(column,))
        sql = (
            f"SELECT {column} AS value, uniq({v.expr()}) AS visitors, "
            f"uniqIf({v.expr()}, c.hit = 1) AS conversions FROM ({inner}) AS s "
            f"LEFT JOIN (SELECT session_id, 1 AS hit FROM ({converted})) AS c USING session_id"
            f"{v.join()} GROUP BY value"
        )
    else:
        only = {"pages": True, "events": False}.get(dimension)
        sql = (
            f"SELECT {EVENT_DIMENSIONS[dimension]} AS value, uniq({v.expr()}) AS visitors, "
            f"uniqIf({v.expr()}, session_id IN ({converted})) AS conversions "
            f"FROM {db}.events{v.join()} WHERE {events_where(db, q, params, only)} GROUP BY value"
        )
    rows = [
        {
            "value": r["value"],
            "visitors": int(r["visitors"]),
            "conversions": int(r["conversions"]),
            "conversion_rate": round(100 * int(r["conversions"]) / int(r["visitors"]), 1)
            if int(r["visitors"])
            else 0.0,
        }
        for r in store.query_dicts(sql + order, params.values)
    ]
    return {
        "dimension": dimension,
        "range": q.range.as_dict(),
        "goal": goal.as_dict(),
        "page": page,
        "limit": limit,
        "sort": "conversions",
        "has_more": len(rows) > limit,
        "has_revenue": False,
        "rows": rows[:limit],
    }
