"""Forms that change what a project keeps beside its data: saved segments and annotations
(on the dashboard) and goals (on the settings page). Project admins only; each answers with
a redirect (Post/Redirect/Get) back to the view it was sent from, a refused one with its
message shown in the form that sent it."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qsl, urlencode

from litestar import Request, Response, post

from gatrix.meta import annotations, segments
from gatrix.meta import goals as goal_defs
from gatrix.services import Services
from gatrix.web.admin import _admin_page, _settings_path
from gatrix.web.kit import done, form_of, require_role

MAX_VIEW = 4000
GOAL_KINDS = ("event", "page", "step")


def _view_path(project_id: str, form: dict[str, Any]) -> str:
    """The dashboard view the form was sent from (its URL's query, re-encoded so nothing but
    query parameters can ride along), without a stale flash."""
    pairs = parse_qsl(str(form.get("view", ""))[:MAX_VIEW].lstrip("?"), keep_blank_values=True)
    query = urlencode([(k, v) for k, v in pairs if k != "flash"])
    return f"/dashboard/{project_id}" + (f"?{query}" if query else "")


def _id(text: str) -> int:
    return int(text) if text.isascii() and text.isdigit() and len(text) < 10 else 0


@post("/dashboard/{project_id:str}/segments", include_in_schema=False)
async def segment_create(request: Request, services: Services, project_id: str) -> Response:
    user, _ = await require_role(request, services, project_id, admin=True)
    form = await form_of(request)
    back = _view_path(project_id, form)
    filters = [v for k, v in parse_qsl(back.partition("?")[2]) if k == "filter"]
    name = str(form.get("name", ""))[: segments.MAX_NAME + 1]
    try:
        if not filters:
            raise segments.InvalidSegment("Add a filter first: a segment is a set of filters.")
        body = {"name": name, "filters": filters}
        made = await asyncio.to_thread(
            segments.create_segment, services.engine, project_id, body, user.email
        )
    except segments.InvalidSegment as exc:
        return await done(
            request, services, user, back, error=_sentence(exc), at="segments", typed=name
        )
    return await done(request, services, user, back, notice=f"Saved “{made.name}”.", at="segments")


@post("/dashboard/{project_id:str}/segments/{segment_id:str}/delete", include_in_schema=False)
async def segment_delete(
    request: Request, services: Services, project_id: str, segment_id: str
) -> Response:
    user, _ = await require_role(request, services, project_id, admin=True)
    form = await form_of(request)
    gone = await asyncio.to_thread(
        segments.delete_segment, services.engine, project_id, _id(segment_id)
    )
    notice = "Segment deleted." if gone else "That segment was already deleted."
    back = _view_path(project_id, form)
    return await done(request, services, user, back, notice=notice, at="segments")


@post("/dashboard/{project_id:str}/annotations", include_in_schema=False)
async def annotation_create(request: Request, services: Services, project_id: str) -> Response:
    user, _ = await require_role(request, services, project_id, admin=True)
    form = await form_of(request)
    back = _view_path(project_id, form)
    day = str(form.get("day", ""))[:20]
    text = str(form.get("text", ""))[: annotations.MAX_TEXT + 1]
    try:
        made = await asyncio.to_thread(
            annotations.create_annotation,
            services.engine,
            project_id,
            {"day": day, "text": text},
            user.email,
        )
    except annotations.InvalidAnnotation as exc:
        return await done(
            request,
            services,
            user,
            back,
            error=_sentence(exc),
            at="annotations",
            typed={"day": day, "text": text},
        )
    notice = f"Note added on {made.day.isoformat()}."
    return await done(request, services, user, back, notice=notice, at="annotations")


@post("/dashboard/{project_id:str}/annotations/{annotation_id:str}/delete", include_in_schema=False)
async def annotation_delete(
    request: Request, services: Services, project_id: str, annotation_id: str
) -> Response:
    user, _ = await require_role(request, services, project_id, admin=True)
    form = await form_of(request)
    gone = await asyncio.to_thread(
        annotations.delete_annotation, services.engine, project_id, _id(annotation_id)
    )
    notice = "Note deleted." if gone else "That note was already deleted."
    back = _view_path(project_id, form)
    return await done(request, services, user, back, notice=notice, at="annotations")


@post("/projects/{project_id:str}/goals", include_in_schema=False)
async def goal_create(request: Request, services: Services, project_id: str) -> Response:
    user, _ = await require_role(request, services, project_id, admin=True)
    form = await form_of(request)
    typed = {
        "name": str(form.get("name", ""))[:200],
        "kind": str(form.get("kind", "event")),
        "target": str(form.get("target", ""))[:600],
        "revenue_property": str(form.get("revenue_property", ""))[:300],
    }
    try:
        if typed["kind"] not in GOAL_KINDS:
            raise goal_defs.InvalidGoal("Choose an event, a page or a step.")
        if not typed["target"].strip():
            raise goal_defs.InvalidGoal("Give the event name, page path or step to count.")
        body = {
            "name": typed["name"],
            typed["kind"]: typed["target"],
            "revenue_property": typed["revenue_property"],
        }
        made = await asyncio.to_thread(goal_defs.create_goal, services.engine, project_id, body)
    except goal_defs.InvalidGoal as exc:
        return await _admin_page(
            request,
            services,
            user,
            project_id,
            status=400,
            error=_sentence(exc),
            at="goals",
            goal_form=typed,
        )
    path = _settings_path(project_id)
    return await done(
        request, services, user, path, notice=f"Goal “{made.name}” added.", at="goals"
    )


@post("/projects/{project_id:str}/goals/{goal_id:str}/delete", include_in_schema=False)
async def goal_delete(
    request: Request, services: Services, project_id: str, goal_id: str
) -> Response:
    user, _ = await require_role(request, services, project_id, admin=True)
    await form_of(request)
    gone = await asyncio.to_thread(goal_defs.delete_goal, services.engine, project_id, _id(goal_id))
    notice = "Goal deleted." if gone else "That goal was already deleted."
    path = _settings_path(project_id)
    return await done(request, services, user, path, notice=notice, at="goals")


def _sentence(exc: Exception) -> str:
    text = str(exc)
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


DEFINITION_ROUTES = [
    segment_create,
    segment_delete,
    annotation_create,
    annotation_delete,
    goal_create,
    goal_delete,
]
