"""`/insights/{projectId}/…` product analytics: funnel, retention, paths, goals and the goal
definitions. Same access, range, filter and time zone rules as `api`; handlers parse, call
one report function off the event loop, and return it.

Changing goal definitions takes a root client, or a logged-in admin of the project (whose
request must then carry the session's CSRF token in `X-CSRF-Token`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.params import Parameter

from gatrix.insights import cohorts, funnels, goals, paths
from gatrix.insights.api import (
    ERROR_RESPONSES,
    ApiError,
    FilterParam,
    RangeParam,
    Reader,
    _params,
    _report,
    authorize,
    by_session,
)
from gatrix.insights.query import InvalidQuery
from gatrix.insights.steps import Step, parse_step
from gatrix.meta import goals as goal_defs
from gatrix.services import Services
from gatrix.web import auth

T = TypeVar("T")
MAX_BODY = 4096


class StepOut(msgspec.Struct):
    step: str
    visitors: int
    conversion: float
    conversion_from_previous: float
    dropped: int
    median_seconds_from_previous: float | None


class FunnelRow(msgspec.Struct):
    value: str
    steps: list[StepOut]


class FunnelBreakdown(msgspec.Struct):
    dimension: str
    rows: list[FunnelRow]


class FunnelOut(msgspec.Struct):
    range: dict[str, str]
    window_seconds: int
    steps: list[StepOut]
    breakdown: FunnelBreakdown | None = None


class CohortValue(msgspec.Struct):
    offset: int
    visitors: int
    share: float


class Cohort(msgspec.Struct):
    cohort: str
    size: int
    values: list[CohortValue]


class RetentionOut(msgspec.Struct):
    range: dict[str, str]
    interval: str
    start: str | None
    cohorts: list[Cohort]
    return_: str | None = msgspec.field(default=None, name="return")


class PathNode(msgspec.Struct):
    id: int
    level: int
    name: str
    kind: str
    sessions: int


class PathLink(msgspec.Struct):
    source: int
    target: int
    sessions: int


class PathsOut(msgspec.Struct):
    range: dict[str, str]
    direction: str
    page: str
    depth: int
    sessions: int
    nodes: list[PathNode]
    links: list[PathLink]


class GoalDefOut(msgspec.Struct):
    id: int
    name: str
    step: str
    revenue_property: str | None


class GoalOut(GoalDefOut):
    visitors: int
    conversions: int
    conversion_rate: float
    revenue: float | None


class GoalsOut(msgspec.Struct):
    range: dict[str, str]
    visitors: int
    goals: list[GoalOut]


class GoalDefsOut(msgspec.Struct):
    goals: list[GoalDefOut]


def _parsed(fn: Callable[..., T], *args: Any) -> T:
    try:
        return fn(*args)
    except InvalidQuery as exc:
        raise ApiError(400, "invalid_query", str(exc)) from None


def _steps(texts: list[str] | None) -> list[Step]:
    texts = texts or []
    if not funnels.MIN_STEPS <= len(texts) <= funnels.MAX_STEPS:
        raise InvalidQuery(f"give {funnels.MIN_STEPS} to {funnels.MAX_STEPS} step parameters")
    return [parse_step(text, f"step {n}") for n, text in enumerate(texts, start=1)]


def _retention_start(values: list[str] | None, range_: str) -> tuple[Step | None, str | None]:
    """`start` is the start step when it reads `page:…`/`event:…`, else the custom range's
    start date: a custom range with a start step repeats the parameter. Anything else is
    refused, not ignored (a mistyped step must not silently become "any event")."""
    steps = [v for v in values or [] if v.startswith(("page:", "event:"))]
    dates = [v for v in values or [] if not v.startswith(("page:", "event:"))]
    if len(steps) > 1 or len(dates) > 1:
        raise InvalidQuery("start: at most one step and one date")
    if dates and range_ != "custom":
        raise InvalidQuery(
            f"start: {dates[0][:40]!r} is neither a step (page:… or event:…) nor, with "
            "range=custom, a date"
        )
    return (parse_step(steps[0], "start") if steps else None), (dates[0] if dates else None)


async def _manager(request: Request, services: Services, project_id: str, change: bool) -> Reader:
    reader = await authorize(request, services, project_id)
    if not reader.manager:
        raise ApiError(403, "forbidden", "goals are defined by a root client or a project admin")
    if change and by_session(request) and not auth.csrf_ok(request, {}):
        raise ApiError(403, "forbidden", "send the session's CSRF token in X-CSRF-Token")
    return reader


async def _body(request: Request) -> Any:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise ApiError(400, "invalid_goal", f"a goal definition is at most {MAX_BODY} bytes")
    try:
        return msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):  # the latter: a string of bad UTF-8
        raise ApiError(400, "invalid_json", "the body is not JSON") from None


async def _meta(fn: Callable[..., T], *args: Any) -> T:
    try:
        return await asyncio.to_thread(fn, *args)
    except goal_defs.InvalidGoal as exc:
        raise ApiError(400, "invalid_goal", str(exc)) from None


class ProductController(Controller):
    path = "/insights/{project_id:str}"
    tags = ["product analytics"]

    @get("/funnel", summary="Visitors through ordered steps", responses=ERROR_RESPONSES)
    async def funnel(
        self,
        request: Request,
        services: Services,
        project_id: str,
        step: Annotated[
            list[str] | None, Parameter(description="page:<path|glob> or event:<name>[k=v], 2–8")
        ] = None,
        window: Annotated[
            str, Parameter(description="30m, 1h, 7d (1m–90d)")
        ] = funnels.DEFAULT_WINDOW,
        breakdown: str | None = None,
        limit: int = 10,
        range_: RangeParam = "30d",
        start: str | None = None,
        end: str | None = None,
        filters: FilterParam = None,
    ) -> FunnelOut:
        steps = _parsed(_steps, step)
        seconds = _parsed(funnels.parse_window, window)
        params = _params(range_, start, end, None, None, filters)
        result = await _report(
            request, services, project_id, params, funnels.funnel, steps, seconds, breakdown, limit
        )
        return msgspec.convert(result, FunnelOut)

    @get("/retention", summary="Cohorts and the share that returned", responses=ERROR_RESPONSES)
    async def retention(
        self,
        request: Request,
        services: Services,
        project_id: str,
        interval: str = "week",
        start: Annotated[
            list[str] | None, Parameter(description="start step, or the custom range's date")
        ] = None,
        returned: Annotated[
            str | None, Parameter(query="return", description="return step")
        ] = None,
        range_: RangeParam = "30d",
        end: str | None = None,
        filters: FilterParam = None,
    ) -> RetentionOut:
        start_step, start_date = _parsed(_retention_start, start, range_)
        return_step = _parsed(parse_step, returned, "return") if returned is not None else None
        params = _params(range_, start_date, end, None, None, filters)
        result = await _report(
            request,
            services,
            project_id,
            params,
            cohorts.retention,
            interval,
            start_step,
            return_step,
        )
        return msgspec.convert(result, RetentionOut)

    @get("/paths", summary="Page sequences after or before a page", responses=ERROR_RESPONSES)
    async def paths(
        self,
        request: Request,
        services: Services,
        project_id: str,
        from_: Annotated[
            str | None, Parameter(query="from", description="page path or glob")
        ] = None,
        to: Annotated[str | None, Parameter(description="page path or glob")] = None,
        depth: int = 3,
        limit: int = 5,
        range_: RangeParam = "30d",
        start: str | None = None,
        end: str | None = None,
        filters: FilterParam = None,
    ) -> PathsOut:
        if (from_ is None) == (to is None):
            raise ApiError(400, "invalid_query", "give exactly one of from=<page> or to=<page>")
        anchor = _parsed(paths.anchor_step, from_ if from_ is not None else str(to))
        direction = "from" if from_ is not None else "to"
        params = _params(range_, start, end, None, None, filters)
        result = await _report(
            request, services, project_id, params, paths.paths, anchor, direction, depth, limit
        )
        return msgspec.convert(result, PathsOut)

    @get("/goals", summary="Visitors, conversions and revenue per goal", responses=ERROR_RESPONSES)
    async def goals(
        self,
        request: Request,
        services: Services,
        project_id: str,
        range_: RangeParam = "30d",
        start: str | None = None,
        end: str | None = None,
        filters: FilterParam = None,
    ) -> GoalsOut:
        defs = await asyncio.to_thread(goal_defs.list_goals, services.engine, project_id)
        params = _params(range_, start, end, None, None, filters)
        result = await _report(request, services, project_id, params, goals.goals, defs)
        return msgspec.convert(result, GoalsOut)

    @get("/goals/definitions", summary="The project's goals", responses=ERROR_RESPONSES)
    async def list_definitions(
        self, request: Request, services: Services, project_id: str
    ) -> GoalDefsOut:
        await _manager(request, services, project_id, change=False)
        defs = await _meta(goal_defs.list_goals, services.engine, project_id)
        return GoalDefsOut([msgspec.convert(d.as_dict(), GoalDefOut) for d in defs])

    @post("/goals/definitions", summary="Add a goal", status_code=201, responses=ERROR_RESPONSES)
    async def create_definition(
        self, request: Request, services: Services, project_id: str
    ) -> GoalDefOut:
        await _manager(request, services, project_id, change=True)
        body = await _body(request)
        created = await _meta(goal_defs.create_goal, services.engine, project_id, body)
        return msgspec.convert(created.as_dict(), GoalDefOut)

    @delete(
        "/goals/definitions/{goal_id:str}",
        summary="Remove a goal",
        status_code=204,
        responses=ERROR_RESPONSES,
    )
    async def delete_definition(
        self, request: Request, services: Services, project_id: str, goal_id: str
    ) -> None:
        await _manager(request, services, project_id, change=True)
        number = (
            int(goal_id) if goal_id.isascii() and goal_id.isdigit() and len(goal_id) < 10 else 0
        )
        if not await _meta(goal_defs.delete_goal, services.engine, project_id, number):
            raise ApiError(404, "not_found", "no such goal in this project")
