"""`/insights/{projectId}/segments` and `/annotations`: what a project keeps beside its data
for the dashboard. Anyone who may read the project lists them; changing them takes a root
client, or a logged-in admin of the project (with the session's CSRF token in
`X-CSRF-Token`), as for goal definitions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
from litestar import Controller, Request, delete, get, post

from gatrix.insights.api import ERROR_RESPONSES, ApiError, Reader, authorize, by_session
from gatrix.meta import annotations, segments
from gatrix.services import Services
from gatrix.web import auth

T = TypeVar("T")
# a segment's query is at most 4 KB; its JSON (escaped) and name fit in twice that
MAX_BODY = 8192


class SegmentOut(msgspec.Struct):
    id: int
    name: str
    query: str
    filters: list[str]
    created_by: str


class SegmentsOut(msgspec.Struct):
    segments: list[SegmentOut]


class AnnotationOut(msgspec.Struct):
    id: int
    day: str
    text: str
    created_by: str


class AnnotationsOut(msgspec.Struct):
    annotations: list[AnnotationOut]


async def _writer(request: Request, services: Services, project_id: str) -> Reader:
    reader = await authorize(request, services, project_id)
    if not reader.manager:
        raise ApiError(403, "forbidden", "only a root client or a project admin may change this")
    if by_session(request) and not auth.csrf_ok(request, {}):
        raise ApiError(403, "forbidden", "send the session's CSRF token in X-CSRF-Token")
    return reader


async def _body(request: Request, code: str) -> Any:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise ApiError(400, code, f"the body is at most {MAX_BODY} bytes")
    try:
        return msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):  # msgspec raises the latter on bad UTF-8
        raise ApiError(400, "invalid_json", "the body is not JSON") from None


async def _meta(fn: Callable[..., T], *args: Any) -> T:
    try:
        return await asyncio.to_thread(fn, *args)
    except segments.InvalidSegment as exc:
        raise ApiError(400, "invalid_segment", str(exc)) from None
    except annotations.InvalidAnnotation as exc:
        raise ApiError(400, "invalid_annotation", str(exc)) from None


def _number(text: str) -> int:
    # an id that is not a small number names nothing: 404 like another project's id
    return int(text) if text.isascii() and text.isdigit() and len(text) < 10 else 0


class SavedController(Controller):
    path = "/insights/{project_id:str}"
    tags = ["segments and annotations"]

    @get("/segments", summary="The project's saved segments", responses=ERROR_RESPONSES)
    async def list_segments(
        self, request: Request, services: Services, project_id: str
    ) -> SegmentsOut:
        await authorize(request, services, project_id)
        found = await _meta(segments.list_segments, services.engine, project_id)
        return SegmentsOut([msgspec.convert(s.as_dict(), SegmentOut) for s in found])

    @post("/segments", summary="Save a segment", status_code=201, responses=ERROR_RESPONSES)
    async def create_segment(
        self, request: Request, services: Services, project_id: str
    ) -> SegmentOut:
        reader = await _writer(request, services, project_id)
        body = await _body(request, "invalid_segment")
        made = await _meta(segments.create_segment, services.engine, project_id, body, reader.actor)
        return msgspec.convert(made.as_dict(), SegmentOut)

    @delete(
        "/segments/{segment_id:str}",
        summary="Delete a segment",
        status_code=204,
        responses=ERROR_RESPONSES,
    )
    async def delete_segment(
        self, request: Request, services: Services, project_id: str, segment_id: str
    ) -> None:
        await _writer(request, services, project_id)
        number = _number(segment_id)
        if not await _meta(segments.delete_segment, services.engine, project_id, number):
            raise ApiError(404, "not_found", "no such segment in this project")

    @get("/annotations", summary="The project's annotations", responses=ERROR_RESPONSES)
    async def list_annotations(
        self, request: Request, services: Services, project_id: str
    ) -> AnnotationsOut:
        await authorize(request, services, project_id)
        found = await _meta(annotations.list_annotations, services.engine, project_id)
        return AnnotationsOut([msgspec.convert(n.as_dict(), AnnotationOut) for n in found])

    @post("/annotations", summary="Add an annotation", status_code=201, responses=ERROR_RESPONSES)
    async def create_annotation(
        self, request: Request, services: Services, project_id: str
    ) -> AnnotationOut:
        reader = await _writer(request, services, project_id)
        body = await _body(request, "invalid_annotation")
        made = await _meta(
            annotations.create_annotation, services.engine, project_id, body, reader.actor
        )
        return msgspec.convert(made.as_dict(), AnnotationOut)

    @delete(
        "/annotations/{annotation_id:str}",
        summary="Delete an annotation",
        status_code=204,
        responses=ERROR_RESPONSES,
    )
    async def delete_annotation(
        self, request: Request, services: Services, project_id: str, annotation_id: str
    ) -> None:
        await _writer(request, services, project_id)
        number = _number(annotation_id)
        if not await _meta(annotations.delete_annotation, services.engine, project_id, number):
            raise ApiError(404, "not_found", "no such annotation in this project")
