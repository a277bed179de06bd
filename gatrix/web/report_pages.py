"""The Funnels, Retention and Paths pages of the dashboard, their CSV downloads, and the
saved reports on them. Logged-in users of the project only: share links show none of this.

Each page is one fragment (`#report`: the form, the chart, the tables, the saved menu) that
the page includes and its own route returns to htmx, with the state's canonical URL pushed
(`HX-Push-Url`). Numbers come from the same report functions as the insights API; a state
that cannot run shows why above the form (a 400 on a page load, the fragment with the
message on an htmx swap, which htmx would not swap in as an error).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qsl

from litestar import Request, Response, get, post
from litestar.datastructures import MultiDict
from litestar.plugins.htmx import HTMXRequest
from litestar.response import Redirect, Template

from gatrix.buffer.keys import FLASH_TTL_S
from gatrix.clickhouse.store import QueryTooHeavy
from gatrix.insights import cohorts, funnels, paths
from gatrix.insights.admission import ReadsBusy
from gatrix.insights.breakdowns import breakdown
from gatrix.insights.filters import InvalidFilter
from gatrix.insights.query import InvalidQuery, Query
from gatrix.insights.steps import parse_step
from gatrix.meta import saved_reports
from gatrix.meta.accounts import UserInfo
from gatrix.services import Services
from gatrix.web import report_charts, report_tables
from gatrix.web.dashboard import _project_summary, period_of, resolve
from gatrix.web.downloads import csv_text
from gatrix.web.figures import figure_json
from gatrix.web.kit import (
    PageError,
    form_of,
    go,
    page,
    require_role,
    take_flash,
    too_heavy_page,
)
from gatrix.web.report_view import (
    BREAKDOWNS,
    STEP_KINDS,
    WINDOWS,
    FunnelState,
    PathsState,
    RetentionState,
    read_funnel,
    read_paths,
    read_retention,
)
from gatrix.web.view import DIMENSION_LABELS, RANGE_LABELS, View

SUGGESTIONS = 50


@dataclass(frozen=True)
class Report:
    kind: str  # the saved report's kind
    path: str  # below /dashboard/{projectId}/
    title: str
    read: Callable[[Any], Any]
    build: Callable[[Services, Query, Any], dict[str, Any]]
    csv: Callable[[dict[str, Any]], tuple[list[str], list[list[Any]]]]


def _funnel(services: Services, q: Query, state: FunnelState) -> dict[str, Any]:
    steps = [parse_step(text, f"step {n}") for n, text in enumerate(state.steps(), start=1)]
    seconds = funnels.parse_window(state.window)
    result = funnels.funnel(services.store, q, steps, seconds, state.breakdown or None)
    rows = (result.get("breakdown") or {}).get("rows")
    return {
        "result": result,
        "tables": report_tables.funnel_tables(result),
        "figure": figure_json(report_charts.funnel_figure(result["steps"], rows)),
        "empty": not result["steps"][0]["visitors"],
    }


def _retention(services: Services, q: Query, state: RetentionState) -> dict[str, Any]:
    start = None if state.start.blank else parse_step(state.start.text(), "start step")
    back = None if state.returned.blank else parse_step(state.returned.text(), "return step")
    result = cohorts.retention(services.store, q, state.interval, start, back)
    return {
        "result": result,
        "tables": [report_tables.retention_table(result)],
        "figure": figure_json(report_charts.retention_figure(state.interval, result["cohorts"])),
        "empty": not any(c["size"] for c in result["cohorts"]),
    }


def _paths(services: Services, q: Query, state: PathsState) -> dict[str, Any]:
    anchor = paths.anchor_step(state.page.strip())
    result = paths.paths(services.store, q, anchor, state.direction, int(state.depth))
    return {
        "result": result,
        "tables": [report_tables.transitions_table(result)],
        "figure": figure_json(report_charts.paths_figure(result["nodes"], result["links"])),
        "empty": not result["sessions"],
    }


REPORTS = {
    "funnel": Report(
        "funnel", "funnels", "Funnels", read_funnel, _funnel, report_tables.funnel_csv
    ),
    "retention": Report(
        "retention",
        "retention",
        "Retention",
        read_retention,
        _retention,
        report_tables.retention_csv,
    ),
    "paths": Report(
        "paths",
        "paths",
        "Paths",
        read_paths,
        _paths,
        lambda result: _table_csv(report_tables.transitions_table(result)),
    ),
}


def _table_csv(table: report_tables.Table) -> tuple[list[str], list[list[Any]]]:
    return table.header, table.values


def _problem(state: Any) -> str:
    return state.range.problem or state.problem


def suggestions(services: Services, q: Query) -> dict[str, list[str]]:
    """What the step boxes offer: the range's custom events and most viewed pages."""
    store = services.store
    events = breakdown(store, q, "events", limit=SUGGESTIONS)["rows"]
    pages = breakdown(store, q, "pages", limit=SUGGESTIONS)["rows"]
    return {
        "events": [r["value"] for r in events if r["value"]],
        "pages": [r["value"] for r in pages if r["value"]],
    }


def report_context(
    services: Services, project: dict[str, Any], report: Report, state: Any
) -> dict[str, Any]:
    """Everything the fragment shows. Blocking (ClickHouse): run it in a worker thread."""
    out: dict[str, Any] = {"problem": _problem(state), "suggest": {"events": [], "pages": []}}
    try:
        view, q = resolve(services, project, state.range.view)
    except PageError as exc:  # a range or filter the query builder refuses
        out["problem"] = out["problem"] or str(exc.detail)
        return out
    state = replace(state, range=replace(state.range, view=view))
    out["state"] = state
    out["period"] = dict(zip(("start", "end"), period_of(q), strict=True))
    try:
        out["suggest"] = suggestions(services, q)
        if state.ready:
            out.update(report.build(services, q, state))
    except (InvalidQuery, InvalidFilter) as exc:
        out["problem"] = str(exc)
    except QueryTooHeavy as exc:  # the form stays, to narrow the range or the steps
        out["problem"] = exc.advice
    return out


def _chips(here: str, state: Any) -> list[dict[str, str]]:
    view: View = state.range.view
    chips = []
    for f in view.filters:
        dim, value = View.filter_parts(f)
        rest = tuple(x for x in view.filters if x != f)
        smaller = replace(state, range=replace(state.range, view=replace(view, filters=rest)))
        chips.append(
            {
                "label": DIMENSION_LABELS.get(dim, dim),
                "value": value,
                "dim": dim,
                "href": f"{here}?{smaller.query_string()}",
            }
        )
    return chips


def _fragment(request: Request) -> bool:
    # a history restore wants the whole page (htmx swaps it in as the new body)
    htmx = request.htmx if isinstance(request, HTMXRequest) else None
    return bool(htmx) and not htmx.history_restore_request


async def _report_data(
    services: Services, project: dict[str, Any], report: Report, state: Any
) -> dict[str, Any]:
    """`report_context` through the read gate; a busy server is an error page that says
    when to come back (the report itself shows budget problems in place)."""
    try:
        return await services.reads.run(report_context, services, project, report, state)
    except ReadsBusy as exc:
        raise too_heavy_page(exc) from None


async def render_report(
    request: Request, services: Services, project_id: str, report: Report
) -> Template:
    user, role = await require_role(request, services, project_id)
    project = await _project_summary(services, project_id)
    state = report.read(request.query_params)
    data = await _report_data(services, project, report, state)
    state = data.pop("state", state)
    dash = go(request, f"/dashboard/{project_id}")
    here = f"{dash}/{report.path}"
    query = state.query_string()
    saved = await asyncio.to_thread(
        saved_reports.list_reports, services.engine, project_id, report.kind
    )
    context = {
        **data,
        "project": project,
        "report": report,
        "state": state,
        "view": state.range.view,
        "query": query,
        "here": here,
        "dash": dash,
        "scope": state.range.view.scope_query(),
        "chips": _chips(here, state),
        "ranges": RANGE_LABELS,
        "windows": WINDOWS if state_window(state) in WINDOWS else (*WINDOWS, state_window(state)),
        "breakdowns": [(d, DIMENSION_LABELS.get(d, d)) for d in BREAKDOWNS],
        "step_kinds": STEP_KINDS,
        "saved": saved,
        "can_save": role == "admin",
        "max_steps": funnels.MAX_STEPS,
        "depths": range(paths.MIN_DEPTH, paths.MAX_DEPTH + 1),
    }
    if isinstance(state, PathsState) and not state.page.strip():
        context["starts"] = [
            {"page": p, "href": f"{here}?{replace(state, page=p).query_string()}"}
            for p in data["suggest"]["pages"][:5]
        ]
    template = f"fragments/report_{report.kind}.html.j2"
    if _fragment(request):
        response = page(request, template, **context)
        response.headers["HX-Push-Url"] = f"{here}?{query}" if query else here
        return response
    flash = await take_flash(request, services, user)
    status = 400 if context["problem"] else 200
    return page(
        request, "pages/report.html.j2", status, user=user, fragment=template, **context, **flash
    )


def state_window(state: Any) -> str:
    return getattr(state, "window", "") or funnels.DEFAULT_WINDOW


@get("/dashboard/{project_id:str}/funnels", include_in_schema=False)
async def funnels_page(request: Request, services: Services, project_id: str) -> Template:
    return await render_report(request, services, project_id, REPORTS["funnel"])


@get("/dashboard/{project_id:str}/retention", include_in_schema=False)
async def retention_page(request: Request, services: Services, project_id: str) -> Template:
    return await render_report(request, services, project_id, REPORTS["retention"])


@get("/dashboard/{project_id:str}/paths", include_in_schema=False)
async def paths_page(request: Request, services: Services, project_id: str) -> Template:
    return await render_report(request, services, project_id, REPORTS["paths"])


def _report_of(kind: str) -> Report:
    if kind not in REPORTS:
        raise PageError(status_code=404, detail="No such report.")
    return REPORTS[kind]


@get("/dashboard/{project_id:str}/reports/{name:str}", include_in_schema=False)
async def report_download(
    request: Request, services: Services, project_id: str, name: str
) -> Response[str]:
    """`funnel.csv`, `retention.csv` or `paths.csv` of the state in the query string."""
    await require_role(request, services, project_id)
    report = _report_of(name.removesuffix(".csv") if name.endswith(".csv") else "")
    project = await _project_summary(services, project_id)
    state = report.read(request.query_params)
    data = await _report_data(services, project, report, state)
    if data["problem"] or "result" not in data:
        reason = data["problem"] or "Choose what the report shows first."
        raise PageError(status_code=400, detail=reason)
    header, rows = report.csv(data["result"])
    filename = f"{project_id}-{report.path}-{data['state'].range.view.range}.csv"
    return Response(
        csv_text(header, rows),
        media_type="text/csv",  # the framework adds "; charset=utf-8"
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )


async def _back(
    request: Request, services: Services, user: UserInfo, path: str, query: str, **flash: str
) -> Redirect:
    """Post/Redirect/Get back to a report's state, with a notice shown once (as kit.done,
    whose path carries no query of its own)."""
    url = go(request, path) + (f"?{query}" if query else "")
    if flash:
        token = secrets.token_urlsafe(16)
        record = json.dumps({"user": user.id, **flash})
        await services.redis.set(services.keys.flash(token), record, ex=FLASH_TTL_S)
        url += f"{'&' if query else '?'}flash={token}"
    return Redirect(url, status_code=303)


def _runnable(report: Report, query: str) -> str | None:
    """The report's own URL query for `query` when it reads as a complete report of its
    kind, else None: a saved report is a report, not any string (nor a URL elsewhere)."""
    if len(query) > saved_reports.MAX_QUERY_BYTES:
        return None
    state = report.read(MultiDict(parse_qsl(query, keep_blank_values=True)))
    return state.query_string() if state.ready else None


@post("/dashboard/{project_id:str}/reports/{kind:str}/save", include_in_schema=False)
async def save_report(request: Request, services: Services, project_id: str, kind: str) -> Redirect:
    user, _ = await require_role(request, services, project_id, admin=True)
    report = _report_of(kind)
    form = await form_of(request)
    query, name = str(form.get("query", "")), str(form.get("name", ""))
    path = f"/dashboard/{project_id}/{report.path}"
    canonical = _runnable(report, query)
    if canonical is None:
        error = "Not saved: this is not a complete report (build it, then save it)."
        return await _back(request, services, user, path, "", error=error)
    query = canonical
    try:
        made = await asyncio.to_thread(
            saved_reports.add_report,
            services.engine,
            project_id,
            kind,
            name,
            query,
            user.email,
        )
    except saved_reports.InvalidSavedReport as exc:
        shown = query if len(query) <= saved_reports.MAX_QUERY_BYTES else ""
        return await _back(request, services, user, path, shown, error=f"Not saved: {exc}.")
    return await _back(request, services, user, path, made.query, notice=f"Saved “{made.name}”.")


@post(
    "/dashboard/{project_id:str}/reports/{kind:str}/saved/{report_id:str}/delete",
    include_in_schema=False,
)
async def delete_saved_report(
    request: Request, services: Services, project_id: str, kind: str, report_id: str
) -> Redirect:
    user, _ = await require_role(request, services, project_id, admin=True)
    report = _report_of(kind)
    form = await form_of(request)
    # back to the report that was in view (the form carries it), not to an empty builder
    in_view = _runnable(report, str(form.get("query", ""))) or ""
    number = (
        int(report_id) if report_id.isascii() and report_id.isdigit() and len(report_id) < 10 else 0
    )
    gone = await asyncio.to_thread(
        saved_reports.delete_report, services.engine, project_id, kind, number
    )
    if not gone:
        raise PageError(status_code=404, detail="No such saved report in this project.")
    path = f"/dashboard/{project_id}/{report.path}"
    return await _back(request, services, user, path, in_view, notice="Deleted the saved report.")


REPORT_ROUTES = [
    funnels_page,
    retention_page,
    paths_page,
    report_download,
    save_report,
    delete_saved_report,
]
