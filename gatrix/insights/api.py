"""`/insights/{projectId}/…`: the JSON API over `gatrix.insights`.

Access: the `openpanel-client-id` + `openpanel-client-secret` of a `read` or `root` client of
that project. Handlers parse, call one report function off the event loop, and return it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter

from gatrix.clickhouse.store import QueryTooHeavy
from gatrix.insights import goals, reports
from gatrix.insights import live as live_report
from gatrix.insights.admission import ReadGate, ReadsBusy, caller
from gatrix.insights.filters import InvalidFilter
from gatrix.insights.query import InvalidQuery, QueryParams, build_query
from gatrix.logs import log_unexpected
from gatrix.meta import accounts
from gatrix.meta.projects import SecretsThrottled
from gatrix.services import Services
from gatrix.web.auth import SESSION_COOKIE


class KPIs(msgspec.Struct):
    visitors: int
    sessions: int
    pageviews: int
    events: int
    views_per_session: float
    bounce_rate: float
    avg_session_duration: float
    range: dict[str, str]
    revenue: float | None = None  # None: no event in the range carries revenue


class PreviousKPIs(msgspec.Struct):
    """The comparison period; every value is None when no comparison was asked for."""

    visitors: int | None
    sessions: int | None
    pageviews: int | None
    events: int | None
    views_per_session: float | None
    bounce_rate: float | None
    avg_session_duration: float | None
    range: dict[str, str] | None
    revenue: float | None = None


class MetricsOut(KPIs):
    previous: PreviousKPIs | None = None


class Point(msgspec.Struct):
    bucket: str
    value: int | float | None  # None: a ratio in a bucket without sessions


class TimeseriesOut(msgspec.Struct):
    metric: str
    interval: str
    range: dict[str, str]
    points: list[Point]
    axis: list[str]
    previous: list[Point] | None = None


class BreakdownOut(msgspec.Struct):
    dimension: str
    range: dict[str, str]
    page: int
    limit: int
    sort: str
    has_more: bool
    rows: list[dict[str, Any]]
    has_revenue: bool = False
    goal: dict[str, Any] | None = None  # with `goal=<id>`: rows carry conversion rates


class LivePage(msgspec.Struct):
    path: str
    visitors: int


class LiveEvent(msgspec.Struct):
    name: str
    path: str
    country: str
    browser: str
    time: str


class LiveMinute(msgspec.Struct):
    minute: str
    visitors: int
    pageviews: int


class LiveOut(msgspec.Struct):
    visitors: int
    pages: list[LivePage]
    recent: list[LiveEvent]
    per_minute: list[LiveMinute]


class ErrorBody(msgspec.Struct):
    error: str
    detail: str


class InternalErrorBody(ErrorBody):
    request_id: str


def _error_spec(description: str) -> ResponseSpec:
    return ResponseSpec(data_container=ErrorBody, description=description)


# What the handlers really answer on errors (`api_error_handler`), replacing the framework's
# default `{status_code, detail, extra}` in the schema.
ERROR_RESPONSES: dict[int, ResponseSpec] = {
    400: _error_spec("invalid_query: a parameter is missing, unknown or malformed"),
    401: _error_spec("unauthenticated or invalid_credentials"),
    403: _error_spec("forbidden or client_cannot_read"),
    422: _error_spec("query_too_heavy: the report passed the rows or memory budget; narrow it"),
    500: ResponseSpec(
        data_container=InternalErrorBody,
        description="internal_error: a bug; the request id is in the server log",
    ),
    503: _error_spec("query_too_heavy: the report passed the time budget; narrow it or retry"),
}


class ApiError(HTTPException):
    def __init__(
        self, status: int, code: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status_code=status, detail=detail, extra={"error": code}, headers=headers)
        self.code = code


def too_heavy(exc: QueryTooHeavy) -> ApiError:
    """A report past the query budget: a 422 when it read or held too much (the same
    question fails again), a 503 when it ran out of time (it may pass on a quieter server)."""
    if isinstance(exc, ReadsBusy):  # not this question's fault: the same one passes later
        status = 429 if exc.limit == "queue" else 503
        code = "too_many_queries" if exc.limit == "queue" else "queries_busy"
        return ApiError(status, code, exc.advice, {"retry-after": str(exc.retry_after)})
    logging.getLogger("gatrix.insights").warning("query over budget (%s): %s", exc.limit, exc)
    if exc.limit == "time":
        return ApiError(503, "query_too_heavy", exc.advice, {"retry-after": "30"})
    return ApiError(422, "query_too_heavy", exc.advice)


@dataclass(frozen=True)
class Reader:
    project_id: str
    timezone: str
    actor: str = ""  # who asked: the client id, or the user's email
    # may change the project's definitions (goals): a root client or a project admin
    manager: bool = False


def by_session(request: Request) -> bool:
    """Whether `authorize` goes by the login session (no client id): read exactly as it reads
    the header, so a blank-looking id (say, a no-break space) cannot skip the CSRF check
    that a session's changes need while still being taken for no id."""
    return not request.headers.get("openpanel-client-id", "").strip()


async def authorize(
    request: Request, services: Services, project_id: str, root: bool = False
) -> Reader:
    """Who may read `project_id`: a read/root client by its headers, or a logged-in user with
    a role on the project; with `root`, only a root client (an erasure). Anything else is
    401/403 saying what is wrong."""
    client_id = request.headers.get("openpanel-client-id", "").strip()
    if not client_id and request.cookies.get(SESSION_COOKIE):
        if root:
            raise ApiError(
                403,
                "client_not_root",
                "erasing takes a root client's credentials; in the dashboard, use the erase "
                "form on the person's page",
            )
        return await _authorize_user(request, services, project_id)
    directory = services.directory
    secret = request.headers.get("openpanel-client-secret", "")
    if not client_id or not secret:
        raise ApiError(
            401,
            "unauthenticated",
            "send openpanel-client-id and openpanel-client-secret of a read client, or log in",
        )
    client = await directory.client(client_id) if len(client_id) <= 64 else None
    try:
        verified = client is not None and await directory.secret_ok(
            client, secret, request.client.host if request.client else ""
        )
    except SecretsThrottled:
        raise ApiError(
            429, "too_many_invalid_secrets", "too many wrong secrets for this client; retry later"
        ) from None
    if client is None or not verified:
        raise ApiError(401, "invalid_credentials", "unknown client or wrong secret")
    if client.project_id != project_id:
        raise ApiError(403, "forbidden", "this client belongs to another project")
    if not client.can_read:
        raise ApiError(403, "client_cannot_read", "write clients cannot read insights")
    if root and client.type != "root":
        raise ApiError(403, "client_not_root", "only a root client may erase people")
    caller.set(f"client:{client.client_id}")  # this request's reads queue as this client's
    return Reader(project_id, client.timezone, client.client_id, client.type == "root")


async def _authorize_user(request: Request, services: Services, project_id: str) -> Reader:
    engine = services.engine
    user_id = await services.web_auth.session_user_id(request)
    user = await asyncio.to_thread(accounts.get_user, engine, user_id) if user_id else None
    if user is None:
        raise ApiError(401, "unauthenticated", "your session has ended: log in again")
    role = await asyncio.to_thread(accounts.role, engine, user, project_id)
    if role is None:
        raise ApiError(403, "forbidden", "you have no access to this project")
    timezone = await asyncio.to_thread(_project_timezone, engine, project_id)
    caller.set(f"user:{user.id}")
    return Reader(project_id, timezone, user.email, role == "admin")


def _project_timezone(engine: Any, project_id: str) -> str:
    project = accounts.project_summary(engine, project_id)
    return project["timezone"] if project else "UTC"


def _params(
    range_: str,
    start: str | None,
    end: str | None,
    interval: str | None,
    compare: str | None,
    filters: list[str] | None,
) -> QueryParams:
    return QueryParams(
        range=range_,
        start=start,
        end=end,
        interval=interval,
        compare=compare,
        filters=list(filters or []),
    )


async def _run(fn: Any, *args: Any, reads: ReadGate | None = None) -> Any:
    """`fn(*args)` off the event loop: through `reads` when it reads the store."""
    try:
        if reads is not None:
            return await reads.run(fn, *args)
        return await asyncio.to_thread(fn, *args)
    except (InvalidQuery, InvalidFilter) as exc:
        raise ApiError(400, "invalid_query", str(exc)) from None
    except QueryTooHeavy as exc:
        raise too_heavy(exc) from None


RangeParam = Annotated[str, Parameter(query="range", description="named range or custom")]
FilterParam = Annotated[
    list[str] | None, Parameter(query="filter", description="dimension:operator:value (repeatable)")
]


async def _report(
    request: Request,
    services: Services,
    project_id: str,
    params: QueryParams,
    report: Any,
    *args: Any,
) -> Any:
    """Authorize, build the query in the project's time zone, run `report` off the loop."""
    reader = await authorize(request, services, project_id)
    query = await _run(build_query, project_id, reader.timezone, params, _now())
    return await _run(report, services.store, query, *args, reads=services.reads)


class InsightsController(Controller):
    path = "/insights/{project_id:str}"
    tags = ["insights"]

    @get("/metrics", summary="KPIs (with compare, a previous period's)", responses=ERROR_RESPONSES)
    async def metrics(
        self,
        request: Request,
        services: Services,
        project_id: str,
        range_: RangeParam = "30d",
        start: str | None = None,
        end: str | None = None,
        compare: str | None = None,
        filters: FilterParam = None,
    ) -> MetricsOut:
        result = await _report(
            request,
            services,
            project_id,
            _params(range_, start, end, None, compare, filters),
            reports.metrics,
        )
        return msgspec.convert(result, MetricsOut)

    @get("/timeseries", summary="One metric per bucket, up to now", responses=ERROR_RESPONSES)
    async def timeseries(
        self,
        request: Request,
        services: Services,
        project_id: str,
        metric: str = "visitors",
        interval: str | None = None,
        range_: RangeParam = "30d",
        start: str | None = None,
        end: str | None = None,
        compare: str | None = None,
        filters: FilterParam = None,
    ) -> TimeseriesOut:
        result = await _report(
            request,
            services,
            project_id,
            _params(range_, start, end, interval, compare, filters),
            reports.timeseries,
            metric,
        )
        return msgspec.convert(result, TimeseriesOut)

    @get(
        "/breakdown/{dimension:str}", summary="Top values of a dimension", responses=ERROR_RESPONSES
    )
    async def breakdown(
        self,
        request: Request,
        services: Services,
        project_id: str,
        dimension: str,
        range_: RangeParam = "30d",
        start: str | None = None,
        end: str | None = None,
        filters: FilterParam = None,
        limit: int = 10,
        page: int = 1,
        sort: str | None = None,
        goal: Annotated[
            str | None, Parameter(description="a goal id: conversion per value")
        ] = None,
    ) -> BreakdownOut:
        params = _params(range_, start, end, None, None, filters)
        if goal is not None:
            args: tuple[Any, ...] = (goals.breakdown_by_goal, services.engine, goal, dimension)
            result = await _report(request, services, project_id, params, *args, limit, page)
        else:
            args = (reports.breakdown, dimension, limit, page, sort)
            result = await _report(request, services, project_id, params, *args)
        return msgspec.convert(result, BreakdownOut)

    @get(
        "/breakdown/properties/{event:str}/{key:str}",
        summary="Values of an event property",
        responses=ERROR_RESPONSES,
    )
    async def properties(
        self,
        request: Request,
        services: Services,
        project_id: str,
        event: str,
        key: str,
        range_: RangeParam = "30d",
        start: str | None = None,
        end: str | None = None,
        filters: FilterParam = None,
        limit: int = 10,
        page: int = 1,
        sort: str | None = None,
    ) -> BreakdownOut:
        result = await _report(
            request,
            services,
            project_id,
            _params(range_, start, end, None, None, filters),
            reports.property_breakdown,
            event,
            key,
            limit,
            page,
            sort,
        )
        return msgspec.convert(result, BreakdownOut)

    @get("/live", summary="Visitors in the last 5 minutes", responses=ERROR_RESPONSES)
    async def live(self, request: Request, services: Services, project_id: str) -> LiveOut:
        reader = await authorize(request, services, project_id)
        result = await _run(
            live_report.live,
            services.store,
            project_id,
            _now(),
            reader.timezone,
            reads=services.reads,
        )
        return msgspec.convert(result, LiveOut)


def _now() -> datetime:
    return datetime.now(UTC)


# what the framework says when a client hung up before its request body was complete
CLIENT_LEFT = "client disconnected prematurely"


def api_error_handler(request: Request, exc: HTTPException) -> Response[dict[str, str]]:
    if exc.status_code == 500 and exc.detail == CLIENT_LEFT:
        # nobody will read the answer: no traceback in the log, no "internal error"
        logging.getLogger("gatrix.http").info("client left mid-request: %s", request.scope["path"])
        return Response({"error": "client_disconnected", "detail": CLIENT_LEFT}, status_code=400)
    if exc.status_code == 500:
        return internal_error_response(request, exc)
    detail = str(exc.detail)
    if isinstance(exc, ValidationException):
        # a parameter of the wrong type (`limit=abc`): say which, like the other bad queries
        problems = exc.extra if isinstance(exc.extra, list) else []
        reasons = "; ".join(
            f"{p.get('key', '?')}: {p.get('message', '')}" for p in problems if isinstance(p, dict)
        )
        code, detail = "invalid_query", reasons or detail
    else:
        code = getattr(exc, "code", None) or {
            400: "bad_request",
            401: "unauthenticated",
            403: "forbidden",
            404: "not_found",
            405: "method_not_allowed",
        }.get(exc.status_code, "error")
    # headers carry meaning on some errors (Allow on 405)
    return Response(
        {"error": code, "detail": detail}, status_code=exc.status_code, headers=exc.headers
    )


def internal_error_response(request: Request, exc: BaseException) -> Response[dict[str, str]]:
    if isinstance(exc, QueryTooHeavy):  # a handler that did not expect it: still not a fault
        return api_error_handler(request, too_heavy(exc))
    rid = log_unexpected(exc, f"{request.method} {request.scope.get('path', '')}")
    return Response(
        {
            "error": "internal_error",
            "detail": f"the server failed on this request; report request id {rid}",
            "request_id": rid,
        },
        status_code=500,
    )
