"""Dashboard pages and the fragments they poll. Each fragment is one template: the page
includes it on first render (no blank flash) and its route returns it on poll. Numbers come
from `gatrix.insights` (the same functions as the JSON API); charts from `web.charts`."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

from litestar import Request, get
from litestar.response import Template

from gatrix.insights import reports
from gatrix.insights.filters import InvalidFilter
from gatrix.insights.live import live, live_visitors
from gatrix.insights.query import InvalidQuery, Query, build_query
from gatrix.meta import accounts
from gatrix.services import Services
from gatrix.web import charts
from gatrix.web.kit import PageError, page, require_role
from gatrix.web.vendor import PLOTLY_PATH
from gatrix.web.view import (
    KPI_CARDS,
    PANEL_TITLES,
    PANELS,
    RANGE_LABELS,
    SERIES_FOR,
    View,
)

DRILL_DOWN = {"browsers": ("browsers", "browser_versions"), "os": ("os", "os_versions")}


def _figure_json(figure: dict[str, Any]) -> str:
    # embedded in <script type="application/json">: "</" must not end the script element
    return json.dumps(figure).replace("</", "<\\/")


def _query(project: dict[str, Any], view: View) -> Query:
    try:
        return build_query(project["id"], project["timezone"], view.params(), datetime.now(UTC))
    except (InvalidQuery, InvalidFilter) as exc:
        raise PageError(status_code=400, detail=f"Invalid view: {exc}") from None


def kpis_context(services: Services, q: Query) -> dict[str, Any]:
    m = reports.metrics(services.store, q)
    cards = []
    for key in KPI_CARDS:
        now, before = m[key], m["previous"][key]
        change = None if not before else round(100 * (now - before) / before, 1)
        cards.append(
            {
                "key": key,
                "label": charts.LABELS[key],
                "value": now,
                "change": change,
                "better_when_lower": key == "bounce_rate",
            }
        )
    return {"cards": cards, "has_data": any(m[k] for k in ("visitors", "events", "pageviews"))}


def chart_context(services: Services, q: Query, view: View) -> dict[str, Any]:
    metric = SERIES_FOR.get(view.metric, view.metric)
    series = reports.timeseries(services.store, q, metric)
    return {
        "figure": _figure_json(charts.timeseries_figure(series)),
        "points": len(series["points"]),
        "metric": metric,
    }


def panel_context(services: Services, q: Query, view: View, panel: str) -> dict[str, Any]:
    tab = view.tab(panel)
    dimension = next(d for key, d, _ in PANELS[panel] if key == tab)
    filter_dim = dimension
    store = services.store
    # drill-down: with a browser/OS chosen, show its versions
    if tab in DRILL_DOWN and any(f.startswith(f"{DRILL_DOWN[tab][0]}:is:") for f in view.filters):
        dimension = filter_dim = DRILL_DOWN[tab][1]
    extra: dict[str, Any] = {}
    chosen_event = next(
        (f.split(":", 2)[2] for f in view.filters if f.startswith(("name:is:", "events:is:"))), None
    )
    if panel == "events" and chosen_event:
        keys = reports.property_keys(store, q, chosen_event)
        key = view.tabs.get("prop") if view.tabs.get("prop") in keys else (keys[0] if keys else "")
        rows = reports.property_breakdown(store, q, chosen_event, key)["rows"] if key else []
        extra = {"event": chosen_event, "keys": keys, "key": key}
        filter_dim = f"property.{key}"
    else:
        rows = reports.breakdown(store, q, dimension, limit=10)["rows"]
        if panel == "events":
            filter_dim = "name"
    value_key = (
        "pageviews" if dimension == "pages" else ("events" if panel == "events" else "visitors")
    )
    context = {
        "panel": panel,
        "title": PANEL_TITLES[panel],
        "tabs": PANELS[panel],
        "tab": tab,
        "rows": rows,
        "filter_dim": filter_dim,
        "dimension": dimension,
        "value_key": value_key,
        **extra,
    }
    if panel == "locations" and rows:
        context["figure"] = _figure_json(charts.bars_figure(rows))
    return context


def live_context(services: Services, project: dict[str, Any]) -> dict[str, Any]:
    data = live(services.store, project["id"], datetime.now(UTC), project["timezone"])
    return {"live": data, "figure": _figure_json(charts.per_minute_figure(data["per_minute"]))}


async def _project(request: Request, services: Services, project_id: str) -> dict[str, Any]:
    await require_role(request, services, project_id)
    return await _project_summary(services, project_id)


async def _project_summary(services: Services, project_id: str) -> dict[str, Any]:
    project = await asyncio.to_thread(accounts.project_summary, services.engine, project_id)
    if project is None:
        raise PageError(status_code=404, detail="No such project.")
    return project


def _common(
    request: Request, project: dict[str, Any], view: View, dash: str, shared: bool
) -> dict[str, Any]:
    return {
        "project": project,
        "view": view,
        "metrics": KPI_CARDS,
        "labels": charts.LABELS,
        "ranges": RANGE_LABELS,
        "panels": list(PANELS),
        "plotly": PLOTLY_URL,
        "dash": request.app.state.settings.root_path + dash,
        "shared": shared,
    }


async def render_dashboard(
    request: Request, services: Services, project: dict[str, Any], dash: str, user: Any = None
) -> Template:
    """The overview; `dash` is where its links and fragments live (a login or a share link)."""
    view = View.from_request(request)
    q = _query(project, view)

    def build() -> dict[str, Any]:
        return {
            "kpis": kpis_context(services, q),
            "chart": chart_context(services, q, view),
            "panel_contexts": {p: panel_context(services, q, view, p) for p in PANELS},
            "live_badge": live_visitors(services.store, project["id"], datetime.now(UTC)),
        }

    data = await asyncio.to_thread(build)
    return page(
        request,
        "pages/dashboard.html.j2",
        user=user,
        **_common(request, project, view, dash, user is None),
        **data,
    )


async def render_realtime(
    request: Request, services: Services, project: dict[str, Any], dash: str, user: Any = None
) -> Template:
    data = await asyncio.to_thread(live_context, services, project)
    return page(
        request,
        "pages/realtime.html.j2",
        user=user,
        **_common(request, project, View.from_request(request), dash, user is None),
        **data,
    )


async def render_fragment(
    request: Request, services: Services, project: dict[str, Any], dash: str, name: str, panel: str
) -> Template:
    view = View.from_request(request)
    common = _common(request, project, view, dash, False)
    if name == "live-badge":
        count = await asyncio.to_thread(
            live_visitors, services.store, project["id"], datetime.now(UTC)
        )
        return page(request, "fragments/live_badge.html.j2", **common, live_badge=count)
    if name == "realtime":
        data = await asyncio.to_thread(live_context, services, project)
        return page(request, "fragments/realtime.html.j2", **common, **data)
    q = _query(project, view)
    if name == "kpis":
        data = await asyncio.to_thread(kpis_context, services, q)
        return page(request, "fragments/kpis.html.j2", **common, kpis=data)
    if name == "chart":
        data = await asyncio.to_thread(chart_context, services, q, view)
        return page(request, "fragments/chart.html.j2", **common, chart=data)
    if name == "panel" and panel in PANELS:
        data = await asyncio.to_thread(panel_context, services, q, view, panel)
        return page(request, "fragments/panel.html.j2", **common, p=data)
    raise PageError(status_code=404, detail="No such fragment.")


@get("/dashboard/{project_id:str}", include_in_schema=False)
async def dashboard_page(request: Request, services: Services, project_id: str) -> Template:
    user, _ = await require_role(request, services, project_id)
    project = await _project_summary(services, project_id)
    return await render_dashboard(request, services, project, f"/dashboard/{project_id}", user)


@get("/dashboard/{project_id:str}/realtime", include_in_schema=False)
async def realtime_page(request: Request, services: Services, project_id: str) -> Template:
    user, _ = await require_role(request, services, project_id)
    project = await _project_summary(services, project_id)
    return await render_realtime(request, services, project, f"/dashboard/{project_id}", user)


@get("/dashboard/{project_id:str}/fragments/{name:str}", include_in_schema=False)
async def fragment(
    request: Request, services: Services, project_id: str, name: str, panel: str = ""
) -> Template:
    project = await _project(request, services, project_id)
    return await render_fragment(
        request, services, project, f"/dashboard/{project_id}", name, panel
    )


PLOTLY_URL = PLOTLY_PATH
DASHBOARD_ROUTES = [dashboard_page, realtime_page, fragment]
