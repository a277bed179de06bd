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
from typing import Any

from sqlalchemy.engine import Engine

from gatrix.clickhouse.store import Store
from gatrix.insights.filters import EVENT_DIMENSIONS, SESSION_DIMENSIONS, Params
from gatrix.insights.funnels import breakdown_dimension
from gatrix.insights.identity import resolution
from gatrix.insights.query import InvalidQuery, Query
from gatrix.insights.reports import _event_totals_sql
from gatrix.insights.sql import (
    CURRENT,
    base_params,
    events_where,
    from_first_event,
    revenue_total,
    sessions_sql,
)
from gatrix.insights.steps import parse_step, prefilter
from gatrix.meta.goals import GoalDef, get_goal

_GOAL_ID = re.compile(r"[0-9]{1,9}")


def _revenue(goal: GoalDef, params: Params) -> str:
    if goal.revenue_property:
        return f"toFloat64OrZero(properties[{{{params.add(goal.revenue_property)}:String}}])"
    return "revenue"


def goals(store: Store, q: Query, defs: list[GoalDef]) -> dict[str, Any]:
    q = from_first_event(store, q)
    db, params = store.db, base_params(q)
    v = resolution(store, q.project_id)
    # all visitors exactly as `metrics` counts them (from the rollups when it can)
    totals = _event_totals_sql(db, q, params, CURRENT, v)
    sql = f"SELECT t.visitors AS visitors FROM ({totals}) AS t"
    if defs:
        steps = [parse_step(goal.step, "goal") for goal in defs]
        conditions = [step.sql(params) for step in steps]
        columns = []
        for i, (goal, cond) in enumerate(zip(defs, conditions, strict=True)):
            money = _revenue(goal, params)
            columns += [
                f"uniqIf({v.expr()}, {cond}) AS v{i}",
                f"countIf({cond}) AS n{i}",
                f"sumIf({money}, {cond}) AS r{i}",
                f"countIf({cond} AND {money} != 0) AS rn{i}",
            ]
        # only the events that can complete a goal are aggregated
        where = (
            f"{events_where(db, q, params)} AND {prefilter(steps, params)} "
            f"AND ({' OR '.join(conditions)})"
        )
        sql = (
            f"SELECT t.visitors AS visitors, g.* FROM ({totals}) AS t CROSS JOIN "
            f"(SELECT {', '.join(columns)} FROM {db}.events{v.join()} WHERE {where}) AS g"
        )
    row = store.query_dicts(sql, params.values)[0]
    total = int(row["visitors"] or 0)
    out = []
    for i, goal in enumerate(defs):
        reached = int(row[f"v{i}"] or 0)
        out.append(
            {
                **goal.as_dict(),
                "visitors": reached,
                "conversions": int(row[f"n{i}"] or 0),
                "conversion_rate": round(100 * reached / total, 1) if total else 0.0,
                "revenue": revenue_total(row[f"r{i}"], row[f"rn{i}"]),
            }
        )
    return {"range": q.range.as_dict(), "visitors": total, "goals": out}


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
