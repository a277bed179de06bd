"""The People pages of the dashboard: the list (search, sort, pages) and one person (header,
properties, counters, devices, places, their visits as a timeline, and the erase form for
project admins). Logged-in users only: share links never show people (personal data).

The list's state (q, sort, page) is the URL: the search form and the page links swap
`#people` with htmx and push the URL they asked for; the person's older events swap
`#timeline` the same way.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from itertools import groupby
from typing import Annotated, Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from litestar import Request, get, post
from litestar.params import Parameter
from litestar.plugins.htmx import HTMXRequest
from litestar.response import Redirect, Template

from gatrix.clickhouse.store import QueryTooHeavy
from gatrix.insights import erase as erasure
from gatrix.insights.people import PeopleQuery, list_people
from gatrix.insights.person import Cursor, InvalidPerson, get_person
from gatrix.insights.query import InvalidQuery
from gatrix.meta import accounts
from gatrix.meta.timezones import usable
from gatrix.pageviews import PAGEVIEW_NAMES
from gatrix.services import Services
from gatrix.web.kit import (
    PageError,
    done,
    form_of,
    page,
    plain_number,
    require_role,
    take_flash,
    too_heavy_page,
)

PAGE_SIZE = 50
TIMELINE_SIZE = 50
SORT_LABELS = {
    "last_seen": "Last seen, latest first",
    "first_seen": "First seen, latest first",
    "events": "Events, most first",
}


def _fragment(request: Request) -> bool:
    htmx = request.htmx if isinstance(request, HTMXRequest) else None
    return bool(htmx) and not htmx.history_restore_request


def _when(value: str | None, zone: ZoneInfo) -> str:
    if not value:
        return "—"
    return datetime.fromisoformat(value).astimezone(zone).strftime("%Y-%m-%d %H:%M")


def initials(name: str, email: str, person_id: str) -> str:
    """Two letters for the avatar: of the name, else the email's user, else the id."""
    words = [w for w in re.split(r"[\W_]+", name or email.split("@")[0] or person_id) if w]
    return "".join(w[0] for w in words[:2]).upper() or "?"


def list_context(services: Services, project: dict[str, Any], pq: PeopleQuery) -> dict[str, Any]:
    zone = ZoneInfo(usable(project["timezone"]))
    out = list_people(services.store, pq)
    for row in out["rows"]:
        row["href"] = person_path(row["id"])
        row["initials"] = initials(row["name"], row["email"], row["id"])
        row["first_seen_shown"] = _when(row["first_seen"], zone)
        row["last_seen_shown"] = _when(row["last_seen"], zone)
    return {"people": out, "sorts": SORT_LABELS}


# ids a path segment cannot carry: a browser folds `.`/`..` (even percent-encoded) and many
# servers refuse an encoded `/`; these people's pages take the id as a query parameter
_BY_QUERY = "person"


def person_path(person_id: str) -> str:
    """A person's page below the list's URL (ids may hold any character)."""
    if "/" in person_id or person_id in (".", "..", _BY_QUERY) or person_id.startswith("."):
        return f"{_BY_QUERY}?{urlencode({'id': person_id})}"
    return quote(person_id, safe="")


def _with_query(url: str, **params: str) -> str:
    return url + ("&" if "?" in url else "?") + urlencode(params)


def list_url(base: str, q: str, sort: str, page: int) -> str:
    params = {"q": q, "sort": sort if sort != "last_seen" else "", "page": page if page > 1 else ""}
    query = urlencode({k: v for k, v in params.items() if v != ""})
    return f"{base}?{query}" if query else base


def person_context(
    services: Services, project: dict[str, Any], person_id: str, before: Cursor | None
) -> dict[str, Any] | None:
    zone = ZoneInfo(usable(project["timezone"]))
    person = get_person(services.store, project["id"], person_id, before, TIMELINE_SIZE)
    if person is None:
        return None
    for event in person["events"]:
        event["time_shown"] = _when(event["created_at"], zone)
    for device in person["devices"]:
        device["last_seen_shown"] = _when(device["last_seen"], zone)
    # a visit's events together, newest visit first (the events come newest first)
    visits = [
        _visit(sid, list(events), zone)
        for sid, events in groupby(person["events"], key=lambda e: e["session_id"])
    ]
    href = person_path(person["id"])
    return {
        "person": person,
        "href": href,
        "erase_href": _with_query(f"{_BY_QUERY}/erase", id=person["id"]),
        "older_href": (
            _with_query(href, before=person["next_before"]) if person["has_more"] else ""
        ),
        "aliases": [{"id": a, "href": person_path(a)} for a in person["aliases"]],
        "initials": initials(person["name"], person["email"], person["id"]),
        "first_seen_shown": _when(person["first_seen"], zone),
        "last_seen_shown": _when(person["last_seen"], zone),
        "visits": visits,
        "showing_older": before is not None,
        "zone_name": zone.key,
    }


def _visit(session_id: str, events: list[dict[str, Any]], zone: ZoneInfo) -> dict[str, Any]:
    """A visit's heading from the events shown of it (newest first): when it began, how long
    it lasted, its page views, and where it came from (the landing event's referrer)."""
    first, last = events[-1], events[0]
    began = datetime.fromisoformat(first["created_at"])
    minutes = (datetime.fromisoformat(last["created_at"]) - began).total_seconds() / 60
    for event in events:
        shown = {k: v for k, v in (event.get("properties") or {}).items() if k[:2] != "__"}
        event["details"] = ", ".join(f"{k}: {v}" for k, v in list(shown.items())[:6])
    return {
        "session_id": session_id,
        "events": events,
        "began_shown": began.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
        "minutes": round(minutes),
        "pages": sum(1 for e in events if e["name"] in PAGEVIEW_NAMES),
        "source": first.get("referrer_name") or "",
    }


async def _project(request: Request, services: Services, project_id: str) -> Any:
    user, role = await require_role(request, services, project_id)
    project = await asyncio.to_thread(accounts.project_summary, services.engine, project_id)
    if project is None:
        raise PageError(status_code=404, detail="No such project.")
    return user, role, project


def _people_query(project_id: str, q: str, sort: str, page_no: int) -> PeopleQuery:
    try:
        return PeopleQuery(project_id, q, sort, PAGE_SIZE, page_no)
    except InvalidQuery as exc:
        raise PageError(status_code=400, detail=f"Invalid search: {exc}") from None


@get("/dashboard/{project_id:str}/people", include_in_schema=False)
async def people_page(
    request: Request,
    services: Services,
    project_id: str,
    q: str = "",
    sort: str = "last_seen",
    page_no: Annotated[str, Parameter(query="page")] = "1",
) -> Template:
    user, _, project = await _project(request, services, project_id)
    # read here rather than by the framework, so a bad value gets this page's own message
    if not plain_number(page_no, 6):
        raise PageError(status_code=400, detail="Invalid search: page must be a number.")
    pq = _people_query(project_id, q, sort, int(page_no))
    try:
        data = await services.reads.run(list_context, services, project, pq)
    except QueryTooHeavy as exc:
        raise too_heavy_page(exc) from None
    base = request.app.state.settings.root_path + f"/dashboard/{project_id}/people"
    context = {"project": project, "base": base, "list_url": list_url, **data}
    if _fragment(request):
        return page(request, "fragments/people.html.j2", **context)
    flash = await take_flash(request, services, user)
    return page(request, "pages/people.html.j2", user=user, **context, **flash)


def _before(value: str) -> Cursor | None:
    if not value:
        return None
    try:
        return Cursor.parse(value)
    except ValueError:
        raise PageError(status_code=400, detail="Invalid position in the timeline.") from None


async def _person(
    request: Request, services: Services, project: dict[str, Any], person_id: str, before: str
) -> dict[str, Any]:
    try:
        data = await services.reads.run(
            person_context, services, project, person_id, _before(before)
        )
    except InvalidPerson as exc:
        raise PageError(status_code=400, detail=str(exc)) from None
    except QueryTooHeavy as exc:
        raise too_heavy_page(exc) from None
    if data is None:
        raise PageError(status_code=404, detail="No person of this project has that id.")
    return data


@get("/dashboard/{project_id:str}/people/person", include_in_schema=False)
async def person_page_by_query(
    request: Request,
    services: Services,
    project_id: str,
    person_id: Annotated[str, Parameter(query="id")] = "",
    before: str = "",
) -> Template:
    if not person_id:  # this page's own message, not the framework's JSON
        raise PageError(status_code=400, detail="Which person? This page takes ?id=<their id>.")
    return await person_page.fn(request, services, project_id, person_id, before)


@get("/dashboard/{project_id:str}/people/{person_id:str}", include_in_schema=False)
async def person_page(
    request: Request, services: Services, project_id: str, person_id: str, before: str = ""
) -> Template:
    user, role, project = await _project(request, services, project_id)
    data = await _person(request, services, project, person_id, before)
    flash = {} if _fragment(request) else await take_flash(request, services, user)
    root = request.app.state.settings.root_path
    context = {
        "project": project,
        "base": f"{root}/dashboard/{project_id}/people",
        "can_erase": role == "admin",
        **data,
    }
    if _fragment(request):
        return page(request, "fragments/timeline.html.j2", **context)
    return page(request, "pages/person.html.j2", user=user, **context, **flash)


@post("/dashboard/{project_id:str}/people/person/erase", include_in_schema=False)
async def erase_person(
    request: Request,
    services: Services,
    project_id: str,
    person_id: Annotated[str, Parameter(query="id")] = "",
) -> Redirect:
    user, _ = await require_role(request, services, project_id, admin=True)
    if not person_id:
        raise PageError(status_code=400, detail="Which person? The form names them in ?id=.")
    form = await form_of(request)
    here = f"/dashboard/{project_id}/people/{person_path(person_id)}"
    if str(form.get("confirm", "")).strip() != person_id:
        error = "Nothing was erased: type the person's id exactly to confirm."
        return await done(request, services, user, here, error=error, at="erase")
    try:
        result = await erasure.erase(
            services.store, services.flusher, services.engine, project_id, person_id, user.email
        )
    except InvalidPerson as exc:
        raise PageError(status_code=400, detail=str(exc)) from None
    except erasure.ErasureBusy as exc:
        raise PageError(status_code=409, detail=str(exc)) from None
    if result is None:
        raise PageError(status_code=404, detail="No person of this project has that id.")
    events = result["deleted"].get("events", 0)
    notice = f"Erased {result['id']}: {events} events and every profile row."
    return await done(request, services, user, f"/dashboard/{project_id}/people", notice=notice)


PEOPLE_ROUTES = [people_page, person_page_by_query, person_page, erase_person]
