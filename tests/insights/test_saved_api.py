"""Segments and annotations over real HTTP: known answers, who may change them (a read client
lists but cannot write), ids of another project that delete and list nothing, and hostile
bodies that are all a JSON 4xx."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from gatrix.meta import annotations, segments
from gatrix.meta.accounts import delete_project_rows
from gatrix.meta.projects import create_client, create_project

from ..websession import admin_session, csrf_of, new_project
from .test_api import Api, new_api


@pytest.fixture
def api(server: Any, http: httpx.Client) -> Api:
    return new_api(server, http)  # its client is the project's root client


def send(api: Api, method: str, path: str, headers: dict[str, str] | None = None, **kw: Any):
    url = f"/insights/{api.project}/{path}"
    return api.http.request(method, url, headers=headers or api.headers, **kw)


def reader_of(server: Any, api: Api) -> dict[str, str]:
    made = create_client(server.services.engine, api.project, "read")
    return {"openpanel-client-id": made.client_id, "openpanel-client-secret": made.client_secret}


def test_segments_are_saved_listed_and_deleted(api: Api, server: Any) -> None:
    assert api.get("segments") == {"segments": []}
    body = {
        "name": "Korea from Google",
        "query": "filter=countries%3Ais%3AKR&filter=referrers:is:Google",
    }
    made = send(api, "POST", "segments", json=body)
    assert made.status_code == 201, made.text
    segment = made.json()
    assert segment["filters"] == ["countries:is:KR", "referrers:is:Google"]
    assert segment["query"] == "filter=countries%3Ais%3AKR&filter=referrers%3Ais%3AGoogle"
    assert segment["created_by"] == api.headers["openpanel-client-id"]
    listed = send(
        api, "POST", "segments", json={"name": "Mobile", "filters": ["devices:is:mobile"]}
    )
    assert listed.status_code == 201
    # a read client lists them (by name) but may not change them
    reader = reader_of(server, api)
    names = [s["name"] for s in send(api, "GET", "segments", reader).json()["segments"]]
    assert names == ["Korea from Google", "Mobile"]
    refused = send(api, "POST", "segments", reader, json={"name": "x", "filters": ["os:is:iOS"]})
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    assert send(api, "DELETE", f"segments/{segment['id']}", reader).status_code == 403
    assert send(api, "DELETE", f"segments/{segment['id']}").status_code == 204
    assert send(api, "DELETE", f"segments/{segment['id']}").status_code == 404
    assert [s["name"] for s in api.get("segments")["segments"]] == ["Mobile"]


def test_annotations_are_saved_listed_and_deleted(api: Api, server: Any) -> None:
    made = send(api, "POST", "annotations", json={"day": "2026-03-05", "text": " v2.3 released "})
    assert made.status_code == 201, made.text
    note = made.json()
    assert (note["day"], note["text"]) == ("2026-03-05", "v2.3 released")
    send(api, "POST", "annotations", json={"day": "2026-03-01", "text": "launch"})
    assert [n["day"] for n in api.get("annotations")["annotations"]] == [
        "2026-03-01",
        "2026-03-05",
    ]
    reader = reader_of(server, api)
    assert len(send(api, "GET", "annotations", reader).json()["annotations"]) == 2
    refused = send(api, "POST", "annotations", reader, json={"day": "2026-03-02", "text": "x"})
    assert refused.status_code == 403
    assert send(api, "DELETE", f"annotations/{note['id']}", reader).status_code == 403
    assert send(api, "DELETE", f"annotations/{note['id']}").status_code == 204
    assert [n["text"] for n in api.get("annotations")["annotations"]] == ["launch"]


def test_another_projects_ids_delete_and_list_nothing(api: Api, server: Any) -> None:
    segment = send(api, "POST", "segments", json={"name": "US", "filters": ["countries:is:US"]})
    note = send(api, "POST", "annotations", json={"day": "2026-03-05", "text": "mine"})
    other = new_api(server, api.http)
    assert other.get("segments") == {"segments": []}
    assert other.get("annotations") == {"annotations": []}
    assert send(other, "DELETE", f"segments/{segment.json()['id']}").status_code == 404
    assert send(other, "DELETE", f"annotations/{note.json()['id']}").status_code == 404
    # nor can the other project's root client reach this project's lists
    reply = send(api, "GET", "segments", other.headers)
    assert reply.status_code == 403 and reply.json()["error"] == "forbidden"
    assert send(api, "DELETE", f"segments/{segment.json()['id']}", other.headers).status_code == 403
    assert len(api.get("segments")["segments"]) == 1
    assert len(api.get("annotations")["annotations"]) == 1


def test_limits_per_project(api: Api) -> None:
    for n in range(50):
        reply = send(api, "POST", "segments", json={"name": f"s{n}", "filters": ["os:is:iOS"]})
        assert reply.status_code == 201, reply.text
    over = send(api, "POST", "segments", json={"name": "one more", "filters": ["os:is:iOS"]})
    assert over.status_code == 400 and "at most 50" in over.json()["detail"]


SEGMENT_BODIES: list[Any] = [
    None,
    [],
    "filter=os:is:iOS",
    {},
    {"name": "x"},
    {"name": 1, "filters": ["os:is:iOS"]},
    {"name": "", "filters": ["os:is:iOS"]},
    {"name": "x" * 101, "filters": ["os:is:iOS"]},
    {"name": "tab\there", "filters": ["os:is:iOS"]},
    {"name": "x", "filters": "os:is:iOS"},
    {"name": "x", "filters": [1]},
    {"name": "x", "filters": []},
    {"name": "x", "filters": ["nope:is:x"]},
    {"name": "x", "filters": ["os:like:x"]},
    {"name": "x", "filters": ["os"]},
    {"name": "x", "filters": [f"os:is:{n}" for n in range(21)]},
    {"name": "x", "filters": ["os:is:" + "x" * 600]},
    {"name": "x", "query": "range=7d&filter=os:is:iOS"},
    {"name": "x", "query": "tab_pages=entry"},
    {"name": "x", "query": "filter=" + "a" * 5000},
    {"name": "x", "query": ["filter=os:is:iOS"]},
    {"name": "x", "query": "filter=os:is:iOS", "filters": ["os:is:iOS"]},
    {"name": "x", "filters": ["os:is:iOS"], "owner": "me"},
]


@pytest.mark.parametrize("body", SEGMENT_BODIES)
def test_hostile_segment_bodies_are_json_400(api: Api, body: Any) -> None:
    reply = send(api, "POST", "segments", json=body)
    assert reply.status_code == 400, reply.text
    assert set(reply.json()) == {"error", "detail"}
    assert reply.json()["error"] in ("invalid_segment", "invalid_json")


ANNOTATION_BODIES: list[Any] = [
    None,
    [],
    {"day": "2026-03-05"},
    {"text": "x"},
    {"day": "2026-03-05", "text": ""},
    {"day": "2026-03-05", "text": "x" * 201},
    {"day": "2026-03-05", "text": 5},
    {"day": "2026-03-05", "text": "line\nbreak"},
    {"day": "1999-12-31", "text": "too early"},
    {"day": "2101-01-01", "text": "too late"},
    {"day": "2026-02-30", "text": "no such day"},
    {"day": "20260305", "text": "x"},
    {"day": 20260305, "text": "x"},
    {"day": "2026-03-05T10:00", "text": "x"},
    {"day": "2026-03-05", "text": "x", "color": "red"},
]


@pytest.mark.parametrize("body", ANNOTATION_BODIES)
def test_hostile_annotation_bodies_are_json_400(api: Api, body: Any) -> None:
    reply = send(api, "POST", "annotations", json=body)
    assert reply.status_code == 400, reply.text
    assert set(reply.json()) == {"error", "detail"}


@pytest.mark.parametrize("raw", [b"", b"nope", b"{" * 5000, b"x" * 10_000, b'{"day": "\xff"}'])
def test_bodies_that_are_not_json_are_400(api: Api, raw: bytes) -> None:
    for path in ("segments", "annotations"):
        reply = send(api, "POST", path, content=raw)
        assert reply.status_code == 400, (path, reply.text)
        assert set(reply.json()) == {"error", "detail"}


def test_a_goal_definition_of_bad_utf8_is_400(api: Api) -> None:
    reply = send(api, "POST", "goals/definitions", content=b'{"event": "\xff"}')
    assert reply.status_code == 400 and reply.json()["error"] == "invalid_json"


@pytest.mark.parametrize("ident", ["abc", "-1", "0", "99999999999999", "²", "1.5"])
def test_odd_ids_are_404(api: Api, ident: str) -> None:
    for path in ("segments", "annotations"):
        reply = send(api, "DELETE", f"{path}/{ident}")
        assert reply.status_code == 404, (path, reply.text)
        assert reply.json()["error"] == "not_found"


def test_anonymous_and_write_clients_are_refused(api: Api, server: Any) -> None:
    anonymous = api.http.get(f"/insights/{api.project}/segments")
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "unauthenticated"
    writer = create_client(server.services.engine, api.project, "write")
    headers = {
        "openpanel-client-id": writer.client_id,
        "openpanel-client-secret": writer.client_secret,
    }
    assert send(api, "GET", "annotations", headers).status_code == 403


def test_a_project_admin_writes_with_the_csrf_token(site: Any) -> None:
    admin = admin_session(site)
    proj = new_project(site, admin, f"saved by an admin {uuid.uuid4().hex[:4]}")
    path = f"/insights/{proj.id}/segments"
    body = {"name": "Germany", "filters": ["countries:is:DE"]}
    refused = admin.post(path, json=body)
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    # a client id of blank-looking characters is no client id: still the session, still CSRF
    for blank in (b"\xa0", b"\x85"):
        sneaky = admin.post(path, json=body, headers=[(b"openpanel-client-id", blank)])
        assert sneaky.status_code == 403 and "CSRF" in sneaky.json()["detail"], blank
    goals = f"/insights/{proj.id}/goals/definitions"
    sneaky = admin.post(goals, json={"event": "x"}, headers=[(b"openpanel-client-id", b"\xa0")])
    assert sneaky.status_code == 403 and "CSRF" in sneaky.json()["detail"]
    token = csrf_of(admin.get(f"/projects/{proj.id}/settings").text)
    made = admin.post(path, json=body, headers={"X-CSRF-Token": token})
    assert made.status_code == 201, made.text
    assert made.json()["created_by"] == "admin@gatrix.test"
    assert [s["name"] for s in admin.get(path).json()["segments"]] == ["Germany"]
    # the project's read client sees it too
    listed = httpx.get(f"{site.url}{path}", headers=proj.read_headers).json()
    assert [s["filters"] for s in listed["segments"]] == [["countries:is:DE"]]


def test_openapi_schema_lists_the_routes(http: httpx.Client) -> None:
    paths = set(http.get("/schema/openapi.json").json()["paths"])
    for suffix in (
        "segments",
        "segments/{segment_id}",
        "annotations",
        "annotations/{annotation_id}",
    ):
        assert f"/insights/{{project_id}}/{suffix}" in paths, suffix


def test_a_deleted_projects_segments_and_notes_go_with_it(server: Any) -> None:
    engine = server.services.engine
    made = create_project(engine, f"doomed {uuid.uuid4().hex[:6]}")
    segments.create_segment(engine, made.project_id, {"name": "a", "filters": ["os:is:iOS"]})
    annotations.create_annotation(engine, made.project_id, {"day": "2026-01-01", "text": "a"})
    delete_project_rows(engine, made.project_id)
    assert segments.list_segments(engine, made.project_id) == []
    assert annotations.list_annotations(engine, made.project_id) == []
