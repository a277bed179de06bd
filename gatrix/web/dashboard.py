"""Dashboard pages and the fragments they poll. Each fragment is one template: the page
includes it on first render (no blank flash) and its route returns it on poll. Numbers come
from `gatrix.insights` (the same functions as the JSON API); charts from `web.charts`."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from litestar import Request, get
from litestar.plugins.htmx import HTMXRequest
from litestar.response import Template

from gatrix.clickhouse.store import QueryTooHeavy
from gatrix.insights import goals, reports
from gatrix.insights.admission import ReadsBusy
from gatrix.insights.filters import InvalidFilter
from gatrix.insights.live import live, live_visitors
from gatrix.insights.query import (
    INTERVALS,
    InvalidQuery,
    Query,
    auto_interval,
    bucket_starts,
    build_query,
    interval_fits,
)
from gatrix.insights.sql import from_first_event
from gatrix.meta import accounts, annotations, projects, segments
from gatrix.meta import goals as goal_defs
from gatrix.meta.goals import GoalDef
from gatrix.services import Services
from gatrix.web import charts, humane
from gatrix.web.figures import figure_json
from gatrix.web.kit import PageError, base_url, page, require_role, take_flash, too_heavy_page
from gatrix.web.view import (
    COLUMN_LABELS,
    DIMENSION_LABELS,
    ENTRY_EXIT_LABELS,
    KPI_CARDS,
    KPI_LABELS,
    PAGE_DIMENSIONS,
    PANEL_TITLES,
    PANELS,
    RANGE_LABELS,
    View,
    show_metric,
)

DRILL_DOWN = {"browsers": ("browsers", "browser_versions"), "os": ("os", "os_versions")}
# panels that show a chosen goal's conversion rate per value
GOAL_PANELS = ("pages", "sources", "locations", "devices")


def _figure_json(figure: dict[str, Any]) -> str:
    # the builders (gatrix.web.charts) escape the visitors' text they draw themselves
    return figure_json(figure, escape_data=False)


def _asked(request: Request) -> View:
    try:
        return View.from_request(request)
    except InvalidQuery as exc:
        raise PageError(status_code=400, detail=f"Invalid view: {exc}") from None


def _query(project: dict[str, Any], view: View) -> Query:
    try:
        return build_query(project["id"], project["timezone"], view.params(), datetime.now(UTC))
    except (InvalidQuery, InvalidFilter) as exc:
        raise PageError(status_code=400, detail=f"Invalid view: {exc}") from None


def _view_query(services: Services, project: dict[str, Any], view: View) -> Query:
    """The query a view shows, with the automatic interval. "All time" starts at the
    project's first event (one small read) and gets the interval that suits that span, not
    the year 2000's."""
    q = _query(project, replace(view, interval=""))
    if q.range.name == "all":
        q = from_first_event(services.store, q)
        q = replace(q, interval=auto_interval(q.range))
    return q


def resolve(services: Services, project: dict[str, Any], view: View) -> tuple[View, Query]:
    """The view the controls meant, and its query: typed dates (see settle_dates), and an
    interval kept from a shorter range that would cut this one into too many buckets falls
    back to automatic (the API refuses it with a 400; a dashboard user only changed the
    range). Blocking (it may read the first event): call it from a worker thread."""
    if view.start and view.end and view.start > view.end:
        view = replace(view, start=view.end, end=view.start)  # From after To: the user's intent
    if view.range != "custom" and (view.start or view.end):
        named = _view_query(services, project, replace(view, start="", end=""))
        view = settle_dates(view, named)
    q = _view_query(services, project, view)
    if view.interval and interval_fits(q.range, view.interval):
        return view, replace(q, interval=view.interval)
    return replace(view, interval=""), q


def usable_intervals(q: Query) -> list[str]:
    """Intervals that cut the range into at least two buckets and at most MAX_BUCKETS."""
    return [
        i for i in INTERVALS if interval_fits(q.range, i) and len(bucket_starts(q.range, i)) > 1
    ]


def settle_dates(view: View, named: Query) -> View:
    """Dates typed into From/To beside a named range (`named`, that range's query) mean a
    custom range; dates that only repeat what the named range shows mean that range (the
    boxes always show the period in view); a range just chosen wins over the boxes."""
    if view.shown_range and view.shown_range != view.range:
        return replace(view, start="", end="")
    first, last = period_of(named)
    if (view.start or first, view.end or last) == (first, last):
        return replace(view, start="", end="")
    return replace(view, range="custom")


def period_of(q: Query) -> tuple[str, str]:
    """The first and last day in view, in the project's zone (the range's end is exclusive)."""
    tz = q.range.tz
    last = q.range.end.astimezone(tz) - timedelta(microseconds=1)
    return q.range.start.astimezone(tz).date().isoformat(), last.date().isoformat()


def kpis_context(services: Services, q: Query) -> dict[str, Any]:
    m = reports.metrics(services.store, q)
    previous = m.get("previous") or {}
    cards = []
    ratios = ("views_per_session", "bounce_rate", "avg_session_duration")
    for key in KPI_CARDS:
        now, before = m[key], previous.get(key)
        if key in ratios:  # no visits: there is no ratio to show, not a zero
            now = now if m.get("sessions") else None
            before = before if previous.get("sessions") else None
        cards.append(_card(q, key, now, before))
    if m.get("revenue") is not None:  # only when some event in range carries __revenue
        # no series of its own to chart: the card is not a link
        cards.append({**_card(q, "revenue", m["revenue"], previous.get("revenue")), "static": True})
    return {"cards": cards, "has_data": any(m[k] for k in ("visitors", "events", "pageviews"))}


def _card(q: Query, key: str, now: float | None, before: float | None) -> dict[str, Any]:
    return {
        "key": key,
        "label": KPI_LABELS[key],
        "value": now,
        "shown": show_metric(key, now),
        "before_shown": show_metric(key, before),
        "before": before,
        "change": _change(now, before) if q.compare else None,
        "better_when_lower": key == "bounce_rate",
    }


def _change(now: float | None, before: float | None) -> float | None:
    return None if not before or now is None else round(100 * (now - before) / before, 1)


def notes_in(services: Services, q: Query) -> list[dict[str, Any]]:
    """The project's annotations on the days in view (in the project's zone)."""
    first, last = period_of(q)
    found = annotations.list_annotations(
        services.engine, q.project_id, date.fromisoformat(first), date.fromisoformat(last)
    )
    return [note.as_dict() for note in found]


def chart_context(services: Services, q: Query, view: View) -> dict[str, Any]:
    metric = view.metric
    series = reports.timeseries(services.store, q, metric)
    notes = notes_in(services, q)
    return {
        "figure": _figure_json(charts.timeseries_figure(series, notes)),
        "points": len(series["points"]),
        "metric": metric,
        "notes": notes,
    }


def chosen_goal(services: Services, project_id: str, view: View) -> GoalDef | None:
    """The goal the URL names, when this project has it (another's id names nothing)."""
    if not view.goal:
        return None
    return goal_defs.get_goal(services.engine, project_id, int(view.goal))


def goals_context(services: Services, q: Query, view: View) -> dict[str, Any]:
    defs = goal_defs.list_goals(services.engine, q.project_id)
    report = goals.goals(services.store, q, defs)
    rows = [
        {
            **g,
            "chosen": str(g["id"]) == view.goal,
            "cells": [show_metric(k, g[k]) for k in GOAL_COLUMNS],
        }
        for g in report["goals"]
    ]
    return {"visitors": report["visitors"], "rows": rows, "columns": GOAL_COLUMNS}


GOAL_COLUMNS = ("visitors", "conversions", "conversion_rate", "revenue")


def panel_context(services: Services, q: Query, view: View, panel: str) -> dict[str, Any]:
    tab = view.tab(panel)
    dimension = next(d for key, d, _ in PANELS[panel] if key == tab)
    filter_dim = dimension
    store = services.store
    # drill-down: with a browser/OS chosen, show its versions
    if tab in DRILL_DOWN and any(f.startswith(f"{DRILL_DOWN[tab][0]}:is:") for f in view.filters):
        dimension = filter_dim = DRILL_DOWN[tab][1]
    extra: dict[str, Any] = {}
    goal = chosen_goal(services, q.project_id, view) if panel in GOAL_PANELS else None
    chosen_event = next(
        (f.split(":", 2)[2] for f in view.filters if f.startswith(("name:is:", "events:is:"))), None
    )
    if panel == "events" and chosen_event:
        keys = reports.property_keys(store, q, chosen_event)
        key = view.tabs.get("prop") if view.tabs.get("prop") in keys else (keys[0] if keys else "")
        rows = reports.property_breakdown(store, q, chosen_event, key)["rows"] if key else []
        extra = {"event": chosen_event, "keys": keys, "key": key}
        filter_dim = f"property.{key}"
        heading = key or "property"
    elif goal is not None:
        rows = goals.goal_breakdown(store, q, goal, dimension, limit=10)["rows"]
        extra = {"goal": goal.as_dict()}
        heading = DIMENSION_LABELS.get(dimension, dimension.replace("_", " ").capitalize())
    elif dimension in ("regions", "cities") and not services.settings.geoip_path:
        rows = []  # nothing but "(not set)" without a city database: the hint says why
        heading = DIMENSION_LABELS[dimension]
    else:
        sort = "sessions" if dimension in ("entry_pages", "exit_pages") else None
        rows = reports.breakdown(store, q, dimension, limit=10, sort=sort)["rows"]
        if panel == "events":
            filter_dim = "name"
        heading = DIMENSION_LABELS.get(dimension, dimension.replace("_", " ").capitalize())
    columns = goal_columns() if goal is not None else panel_columns(panel, dimension, rows)
    context = {
        "panel": panel,
        "title": PANEL_TITLES[panel],
        "tabs": PANELS[panel],
        "tab": tab,
        "rows": shown_rows(rows, dimension, columns),
        "columns": columns,
        "heading": heading,
        "filter_dim": filter_dim,
        "dimension": dimension,
        "hint": panel_hint(services, dimension, rows),
        **extra,
    }
    if panel == "locations" and rows:
        context["figure"] = _figure_json(charts.bars_figure(rows, dimension=dimension))
    return context


def goal_columns() -> list[dict[str, str]]:
    """A panel by a goal: the visitors with each value, those who reached the goal, the rate;
    sorted by conversions (gatrix.insights.goals)."""
    keys = ["conversions", "visitors", "conversion_rate"]
    return [{"key": k, "label": COLUMN_LABELS[k]} for k in keys]


def panel_columns(panel: str, dimension: str, rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The numbers a panel shows, the one it is sorted by first."""
    if panel == "events":
        keys = ["events", "visitors"]
    elif dimension == "pages":
        keys = ["pageviews", "visitors"]
    elif dimension in PAGE_DIMENSIONS:  # entry and exit pages: visits that began or ended there
        keys = ["sessions", "visitors"]
    else:
        keys = ["visitors"]
    if any(row.get("revenue") for row in rows):
        keys.append("revenue")
    labels = {**COLUMN_LABELS, "sessions": ENTRY_EXIT_LABELS.get(dimension, "Visits")}
    return [{"key": k, "label": labels[k]} for k in keys]


def shown_rows(
    rows: list[dict[str, Any]], dimension: str, columns: list[dict[str, str]]
) -> list[dict[str, Any]]:
    first = columns[0]["key"]
    top = max((row.get(first) or 0 for row in rows), default=0)
    return [
        {
            "value": row["value"],
            "label": humane.country(row["value"])
            if dimension == "countries"
            else humane.dimension_value(dimension, row["value"]),
            "share": round(100 * (row.get(first) or 0) / top) if top else 0,
            "cells": [show_metric(c["key"], row.get(c["key"])) for c in columns],
            "numbers": [row.get(c["key"]) for c in columns],  # unrounded, for the CSV
        }
        for row in rows
    ]


def panel_hint(services: Services, dimension: str, rows: list[dict[str, Any]]) -> str:
    if dimension in ("regions", "cities") and not services.settings.geoip_path:
        return (
            "Regions and cities need a city database: set GATRIX_GEOIP_PATH to a "
            "MaxMind-format .mmdb file (GeoLite2 City or DB-IP City Lite) and restart."
        )
    return ""


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
        "labels": KPI_LABELS,
        "dim_labels": DIMENSION_LABELS,
        "ranges": RANGE_LABELS,
        "panels": list(PANELS),
        "panel_titles": PANEL_TITLES,
        "col_labels": COLUMN_LABELS,
        "dash": request.app.state.settings.root_path + dash,
        "scope": view.scope_query(),
        "shared": shared,
    }


def _swap(request: Request, template: str, context: dict[str, Any], push: str) -> Template:
    """A fragment for htmx. A change of view (a control said so) also moves the address bar
    to the view's canonical URL, so back, reload and bookmarks show the same thing."""
    response = page(request, template, **context)
    if request.headers.get("x-view-change"):
        response.headers["HX-Push-Url"] = push
    return response


def _wants_fragment(request: Request) -> bool:
    # a history restore wants the whole page (htmx swaps it in as the new body)
    htmx = request.htmx if isinstance(request, HTMXRequest) else None
    return bool(htmx) and not htmx.history_restore_request


async def render_dashboard(
    request: Request,
    services: Services,
    project: dict[str, Any],
    dash: str,
    user: Any = None,
    admin: bool = False,
) -> Template:
    """The overview; `dash` is where its links and fragments live (a login or a share link).
    Only a logged-in user sees the saved segments; only a project admin the forms that
    change segments and notes."""
    view, q = await asyncio.to_thread(resolve, services, project, _asked(request))
    fragment_only = _wants_fragment(request)

    def build() -> dict[str, Any]:
        data: dict[str, Any] = {"goal": chosen_goal(services, project["id"], view)}
        if user is not None:
            data["segments"] = segments.list_segments(services.engine, project["id"])
        try:
            if not fragment_only:
                now = datetime.now(UTC)
                data["live_badge"] = live_visitors(services.store, project["id"], now)
            data["kpis"] = kpis_context(services, q)
            data["chart"] = chart_context(services, q, view)
        except QueryTooHeavy as exc:
            # the controls stay, so the range can be narrowed from here
            data["too_heavy"] = exc.advice
            return data
        if user is not None and not data["kpis"]["has_data"] and not view.filters:
            data["snippet"] = _snippet(request, services, project["id"])
        return data

    try:
        data = await services.reads.run(build)
    except ReadsBusy as exc:
        raise too_heavy_page(exc) from None
    common = _common(request, project, view, dash, user is None)
    flash = await take_flash(request, services, user) if user is not None else {}
    context = {
        **common,
        **data,
        "period": dict(zip(("start", "end"), period_of(q), strict=True)),
        "intervals": usable_intervals(q),
        "admin": admin and user is not None,
        "flash": flash,
    }
    if fragment_only:
        push = f"{common['dash']}?{view.query_string()}"
        return _swap(request, "fragments/dash.html.j2", context, push)
    return page(request, "pages/dashboard.html.j2", user=user, **context)


def _snippet(request: Request, services: Services, project_id: str) -> str:
    """The tag to paste, with this server's address and the project's tracking client."""
    client_id = projects.tracking_client_id(services.engine, project_id) or "YOUR_CLIENT_ID"
    src = f"{base_url(request, services)}/op1.js"
    return f'<script src="{src}" data-client-id="{client_id}" defer></script>'


async def render_realtime(
    request: Request, services: Services, project: dict[str, Any], dash: str, user: Any = None
) -> Template:
    try:
        data = await services.reads.run(live_context, services, project)
    except QueryTooHeavy as exc:
        raise too_heavy_page(exc) from None
    return page(
        request,
        "pages/realtime.html.j2",
        user=user,
        **_common(request, project, _asked(request), dash, user is None),
        **data,
    )


async def render_fragment(
    request: Request, services: Services, project: dict[str, Any], dash: str, name: str, panel: str
) -> Template:
    asked = _asked(request)
    if name in ("live-badge", "realtime"):
        common = _common(request, project, asked, dash, False)
        try:
            if name == "live-badge":
                count = await services.reads.run(
                    live_visitors, services.store, project["id"], datetime.now(UTC)
                )
                return page(request, "fragments/live_badge.html.j2", **common, live_badge=count)
            data = await services.reads.run(live_context, services, project)
            return page(request, "fragments/realtime.html.j2", **common, **data)
        except QueryTooHeavy as exc:
            return _too_heavy(request, common, name, exc.advice)
    if name not in ("kpis", "chart", "goals") and not (name == "panel" and panel in PANELS):
        raise PageError(status_code=404, detail="No such fragment.")

    def build() -> tuple[View, dict[str, Any]]:  # one worker-thread hop for the whole fragment
        view, q = resolve(services, project, asked)
        try:
            return view, report(view, q)
        except QueryTooHeavy as exc:
            return view, {"too_heavy": exc.advice}

    def report(view: View, q: Query) -> dict[str, Any]:
        if name == "kpis":
            return {"kpis": kpis_context(services, q)}
        if name == "chart":
            return {"chart": chart_context(services, q, view)}
        if name == "goals":
            return {"goals": goals_context(services, q, view)}
        return {"p": panel_context(services, q, view, panel)}

    try:
        view, data = await services.reads.run(build)
    except ReadsBusy as exc:  # shown in the fragment's place, like a report over budget
        view, data = asked, {"too_heavy": exc.advice}
    common = _common(request, project, view, dash, False)
    if "too_heavy" in data:
        target = {"kpis": "kpis", "chart": "chart-data", "goals": "panel-goals"}.get(
            name, f"panel-{panel}"
        )
        title = PANEL_TITLES.get(panel, "") if name == "panel" else ""
        return _too_heavy(request, common, target, data["too_heavy"], title)
    if name == "panel":
        push = f"{common['dash']}?{view.query_string()}"
        return _swap(request, "fragments/panel.html.j2", {**common, **data}, push)
    return page(request, f"fragments/{name}.html.j2", **common, **data)


def _too_heavy(
    request: Request, common: dict[str, Any], target: str, advice: str, title: str = ""
) -> Template:
    # in place of the fragment, with its id, and not polled: asking again costs as much
    return page(
        request,
        "fragments/too_heavy.html.j2",
        **common,
        target=target,
        title=title,
        too_heavy=advice,
    )


@get("/dashboard/{project_id:str}", include_in_schema=False)
async def dashboard_page(request: Request, services: Services, project_id: str) -> Template:
    user, role = await require_role(request, services, project_id)
    project = await _project_summary(services, project_id)
    dash = f"/dashboard/{project_id}"
    return await render_dashboard(request, services, project, dash, user, role == "admin")


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


DASHBOARD_ROUTES = [dashboard_page, realtime_page, fragment]
