"""`/insights/{projectId}/profiles…`: the People list, one person, and erasing one.

Reading takes a `read` or `root` client (or a logged-in user of the project), like every
insights route; erasing takes a `root` client. Personal data: never on share links.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from litestar import Controller, Request, delete, get
from litestar.openapi.datastructures import ResponseSpec

from gatrix.insights import erase as erasure
from gatrix.insights.admission import ReadGate
from gatrix.insights.api import ERROR_RESPONSES, ApiError, ErrorBody, authorize
from gatrix.insights.people import PeopleQuery, list_people
from gatrix.insights.person import MAX_EVENTS, Cursor, InvalidPerson, get_person
from gatrix.insights.query import InvalidQuery
from gatrix.services import Services


class PersonRow(msgspec.Struct):
    id: str
    name: str
    email: str
    avatar: str
    first_seen: str | None
    last_seen: str | None
    events: int
    sessions: int


class PeopleOut(msgspec.Struct):
    q: str
    sort: str
    page: int
    limit: int
    has_more: bool
    rows: list[PersonRow]


class Device(msgspec.Struct):
    id: str
    browser: str
    os: str
    device: str
    last_seen: str | None
    events: int


class Location(msgspec.Struct):
    country: str
    city: str
    events: int


class PersonEvent(msgspec.Struct):
    id: str
    name: str
    created_at: str
    session_id: str
    device_id: str
    profile_id: str
    path: str
    title: str
    referrer_name: str
    country: str
    city: str
    browser: str
    os: str
    device: str
    revenue: float
    properties: dict[str, str]


class Totals(msgspec.Struct):
    events: int
    sessions: int


class PersonOut(msgspec.Struct):
    id: str
    name: str
    email: str
    avatar: str
    first_seen: str | None
    last_seen: str | None
    totals: Totals
    first_name: str
    last_name: str
    properties: dict[str, str]
    counters: dict[str, float]
    aliases: list[str]
    devices: list[Device]
    locations: list[Location]
    events: list[PersonEvent]  # newest first; `next_before` continues the list
    has_more: bool
    next_before: str | None


class ErasedOut(msgspec.Struct):
    id: str
    deleted: dict[str, int]
    hours_rebuilt: int


PERSON_ERRORS: dict[int, ResponseSpec] = {
    **ERROR_RESPONSES,
    404: ResponseSpec(data_container=ErrorBody, description="not_found: no such person"),
    409: ResponseSpec(
        data_container=ErrorBody, description="erasure_running: another erasure took too long"
    ),
}


async def _call(fn: Any, *args: Any, reads: ReadGate | None = None) -> Any:
    """`fn(*args)` off the event loop: through `reads` when it reads the store."""
    try:
        if reads is not None:
            return await reads.run(fn, *args)
        return await asyncio.to_thread(fn, *args)
    except InvalidQuery as exc:
        raise ApiError(400, "invalid_query", str(exc)) from None
    except InvalidPerson as exc:
        raise ApiError(400, "invalid_id", str(exc)) from None


def _not_found(found: Any) -> Any:
    if found is None:
        raise ApiError(404, "not_found", "no person of this project has that id")
    return found


def _id(path: str) -> str:
    """The profile id from the rest of the URL: ids may hold `/` (`team/42`)."""
    return path.removeprefix("/")


def _before(value: str | None) -> Cursor | None:
    if not value:
        return None
    try:
        return Cursor.parse(value)
    except ValueError:
        raise ApiError(
            400, "invalid_query", "before: an ISO 8601 time, or the next_before of a page"
        ) from None


class PeopleController(Controller):
    path = "/insights/{project_id:str}/profiles"
    tags = ["people"]

    @get("/", summary="People: search, sort and page", responses=ERROR_RESPONSES)
    async def people(
        self,
        request: Request,
        services: Services,
        project_id: str,
        q: str = "",
        sort: str = "last_seen",
        limit: int = 50,
        page: int = 1,
    ) -> PeopleOut:
        await authorize(request, services, project_id)
        pq = await _call(PeopleQuery, project_id, q, sort, limit, page)
        return msgspec.convert(
            await _call(list_people, services.store, pq, reads=services.reads), PeopleOut
        )

    @get("/{profile_id:path}", summary="One person and their events", responses=PERSON_ERRORS)
    async def person(
        self,
        request: Request,
        services: Services,
        project_id: str,
        profile_id: str,
        before: str | None = None,
        limit: int = 50,
    ) -> PersonOut:
        await authorize(request, services, project_id)
        if not 1 <= limit <= MAX_EVENTS:
            raise ApiError(400, "invalid_query", f"limit must be between 1 and {MAX_EVENTS}")
        found = await _call(
            get_person,
            services.store,
            project_id,
            _id(profile_id),
            _before(before),
            limit,
            reads=services.reads,
        )
        return msgspec.convert(_not_found(found), PersonOut)

    @delete(
        "/{profile_id:path}",
        summary="Erase a person (root client)",
        responses=PERSON_ERRORS,
        status_code=200,
    )
    async def erase(
        self, request: Request, services: Services, project_id: str, profile_id: str
    ) -> ErasedOut:
        reader = await authorize(request, services, project_id, root=True)
        try:
            found = await erasure.erase(
                services.store,
                services.flusher,
                services.engine,
                project_id,
                _id(profile_id),
                reader.actor,
            )
        except InvalidPerson as exc:
            raise ApiError(400, "invalid_id", str(exc)) from None
        except erasure.ErasureBusy as exc:
            raise ApiError(409, "erasure_running", str(exc)) from None
        return msgspec.convert(_not_found(found), ErasedOut)
