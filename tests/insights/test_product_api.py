"""The product analytics API over real HTTP: answers with known numbers, goal definitions
(root or project admin only), and hostile parameters that are all a JSON 400, never a 500
and never another project's data."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatrix.clickhouse.store import Store
from gatrix.meta.projects import create_client, create_project

from ..factory import events
from ..websession import admin_session, csrf_of, new_project
from .test_api import Api, new_api

RANGE = {"range": "custom", "start": "2026-03-01", "end": "2026-03-07"}
T = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def seed(store: Store, project: str) -> None:
    rows = []
    for n, device in enumerate(("A", "B", "C")):
        sid = f"{device}-1"
        rows.append({"at": T, "device_id": device, "session_id": sid, "path": "/"})
        if n < 2:
            at = T + timedelta(minutes=2)
            rows.append({"at": at, "device_id": device, "session_id": sid, "path": "/pricing"})
        if n < 1:
            at = T + timedelta(minutes=3)
            rows.append(
                {
                    "at": at,
                    "device_id": device,
                    "session_id": sid,
                    "name": "purchase",
                    "properties": {"plan": "pro"},
                    "revenue": 9.0,
                }
            )
    events(store, project, rows)


@pytest.fixture
def api(server: Any, http: httpx.Client, store: Store) -> Api:
    created = new_api(server, http)
    seed(store, created.project)
    return created


def send(api: Api, method: str, path: str, **kw: Any) -> httpx.Response:
    return api.http.request(method, f"/insights/{api.project}/{path}", headers=api.headers, **kw)


def test_funnel_retention_paths_and_goals_answer(api: Api) -> None:
    funnel = api.get(
        "funnel", step=["page:/", "page:/pricing", "event:purchase[plan=pro]"], **RANGE
    )
    assert [s["visitors"] for s in funnel["steps"]] == [3, 2, 1]
    assert funnel["window_seconds"] == 86400 and funnel.get("breakdown") is None
    split = api.get("funnel", step=["page:/", "page:/pricing"], breakdown="browsers", **RANGE)
    assert [r["value"] for r in split["breakdown"]["rows"]] == ["Chrome"]
    grid = api.get("retention", interval="day", **RANGE)
    assert grid["cohorts"][1]["cohort"] == "2026-03-02" and grid["cohorts"][1]["size"] == 3
    # a start step beside the custom range's start date
    stepped = api.get(
        "retention",
        interval="day",
        start=["2026-03-01", "event:purchase"],
        range="custom",
        end="2026-03-07",
    )
    assert stepped["start"] == "event:purchase"
    assert sum(c["size"] for c in stepped["cohorts"]) == 1
    flow = api.get("paths", **{"from": "/"}, depth=2, **RANGE)
    names = {n["name"] for n in flow["nodes"]}
    assert {"/", "/pricing", "exit"} <= names and flow["sessions"] == 3
    back = api.get("paths", to="/pricing", **RANGE)
    assert {(n["level"], n["name"]) for n in back["nodes"]} == {
        (0, "/pricing"),
        (-1, "/"),
        (-2, "entry"),
    }


def test_goal_definitions_and_report(api: Api, server: Any) -> None:
    assert api.get("goals/definitions") == {"goals": []}
    reply = send(
        api, "POST", "goals/definitions", json={"name": "Pro", "step": "event:purchase[plan=pro]"}
    )
    assert reply.status_code == 201, reply.text
    pro = reply.json()
    assert pro["step"] == "event:purchase[plan=pro]" and pro["revenue_property"] is None
    reply = send(api, "POST", "goals/definitions", json={"page": "/pricing"})
    assert reply.status_code == 201
    report = api.get("goals", **RANGE)
    assert report["visitors"] == 3
    by_step = {g["step"]: g for g in report["goals"]}
    assert by_step["event:purchase[plan=pro]"]["conversion_rate"] == 33.3
    assert by_step["event:purchase[plan=pro]"]["revenue"] == 9.0
    assert by_step["page:/pricing"]["visitors"] == 2
    rows = api.get("breakdown/pages", goal=str(pro["id"]), **RANGE)
    assert rows["goal"]["id"] == pro["id"]
    assert rows["rows"][0] == {
        "value": "/",
        "visitors": 3,
        "conversions": 1,
        "conversion_rate": 33.3,
    }
    # another project cannot see, use or delete this goal
    other = new_api(server, api.http)
    status, body = other.status("breakdown/pages", goal=str(pro["id"]), **RANGE)
    assert status == 400 and body["error"] == "invalid_query"
    assert send(other, "DELETE", f"goals/definitions/{pro['id']}").status_code == 404
    assert other.get("goals/definitions") == {"goals": []}
    assert send(api, "DELETE", f"goals/definitions/{pro['id']}").status_code == 204
    assert [g["step"] for g in api.get("goals/definitions")["goals"]] == ["page:/pricing"]


def test_only_root_clients_define_goals(api: Api, server: Any) -> None:
    reader = create_client(server.services.engine, api.project, "read")
    headers = {
        "openpanel-client-id": reader.client_id,
        "openpanel-client-secret": reader.client_secret,
    }
    path = f"/insights/{api.project}/goals/definitions"
    reply = api.http.post(path, json={"event": "x"}, headers=headers)
    assert reply.status_code == 403 and reply.json()["error"] == "forbidden"
    assert api.http.get(path, headers=headers).status_code == 403
    # but a read client reads the goals report
    assert api.http.get(f"/insights/{api.project}/goals", headers=headers).status_code == 200
    assert api.http.post(path, json={"event": "x"}).status_code == 401


HOSTILE: list[tuple[str, dict[str, Any]]] = [
    ("funnel", {}),
    ("funnel", {"step": "page:/"}),
    ("funnel", {"step": ["page:/"] * 9}),
    ("funnel", {"step": ["page:/", "nope"]}),
    ("funnel", {"step": ["page:/", "event:x["]}),
    ("funnel", {"step": ["page:/", "event:" + "x" * 600]}),
    ("funnel", {"step": ["page:/", "event:a'; DROP TABLE events --"], "window": "1y"}),
    ("funnel", {"step": ["page:/", "page:/x"], "window": "0m"}),
    ("funnel", {"step": ["page:/", "page:/x"], "window": "99999999d"}),
    ("funnel", {"step": ["page:/", "page:/x"], "breakdown": "nope"}),
    ("funnel", {"step": ["page:/", "page:/x"], "limit": "0"}),
    ("funnel", {"step": ["page:/", "page:/x"], "limit": "abc"}),
    ("funnel", {"step": ["page:/", "page:/x"], "range": "forever"}),
    ("funnel", {"step": ["page:/", "page:/x"], "filter": "nope:is:x"}),
    ("retention", {"interval": "hour"}),
    ("retention", {"interval": "day", "range": "12m"}),
    ("retention", {"start": "event:"}),
    ("retention", {"start": ["event:a", "event:b"]}),
    ("retention", {"return": "page:no-slash"}),
    ("retention", {"range": "custom", "start": "2026-13-01", "end": "2026-03-01"}),
    ("retention", {"interval": "day", "range": "today", "start": "evnt:signup"}),
    ("retention", {"interval": "day", "start": "Event:signup"}),
    ("retention", {"interval": "day", "start": "2026-03-01"}),
    ("paths", {}),
    ("paths", {"from": "/", "to": "/x"}),
    ("paths", {"from": "/", "depth": "6"}),
    ("paths", {"from": "/", "depth": "0"}),
    ("paths", {"from": "/", "limit": "21"}),
    ("paths", {"from": "nope"}),
    ("paths", {"from": "/x[a=b]"}),
    ("paths", {"to": "/\x00"}),
    ("goals", {"range": "nope"}),
    ("breakdown/pages", {"goal": "abc"}),
    ("breakdown/pages", {"goal": "99999999999999"}),
    ("breakdown/pages", {"goal": "²"}),
]


@pytest.mark.parametrize(("path", "params"), HOSTILE)
def test_hostile_parameters_are_json_400(api: Api, path: str, params: dict[str, Any]) -> None:
    status, body = api.status(path, **params)
    assert status == 400, body
    assert set(body) == {"error", "detail"}


@pytest.mark.parametrize(
    "body",
    [b"", b"nope", b"[]", b'{"event": 1}', b'{"step": "page:x"}', b"{" * 5000, b'{"x": 1}'],
)
def test_hostile_goal_bodies_are_json_400(api: Api, body: bytes) -> None:
    reply = send(api, "POST", "goals/definitions", content=body)
    assert reply.status_code == 400, reply.text
    assert set(reply.json()) == {"error", "detail"}


def test_another_projects_client_reads_nothing(api: Api, server: Any) -> None:
    other = create_project(server.services.engine, f"other {uuid.uuid4().hex[:6]}")
    headers = {
        "openpanel-client-id": other.client_id,
        "openpanel-client-secret": other.client_secret,
    }
    for path in (
        "funnel?step=page:/&step=page:/pricing",
        "retention",
        "paths?from=/",
        "goals",
        "goals/definitions",
    ):
        reply = api.http.get(f"/insights/{api.project}/{path}", headers=headers)
        assert reply.status_code == 403 and reply.json()["error"] == "forbidden", path
    reply = api.http.post(
        f"/insights/{api.project}/goals/definitions", json={"event": "x"}, headers=headers
    )
    assert reply.status_code == 403


def test_openapi_schema_lists_the_product_routes(http: httpx.Client) -> None:
    paths = set(http.get("/schema/openapi.json").json()["paths"])
    for suffix in ("funnel", "retention", "paths", "goals", "goals/definitions"):
        assert f"/insights/{{project_id}}/{suffix}" in paths, suffix


TEXT = st.text(max_size=60) | st.sampled_from(["page:/", "event:x[a=b]", "page:/*", "7d", "5"])


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(
    path=st.sampled_from(["funnel", "retention", "paths", "goals"]),
    names=st.lists(
        st.sampled_from(
            [
                "step",
                "window",
                "breakdown",
                "limit",
                "interval",
                "start",
                "return",
                "from",
                "to",
                "depth",
                "range",
                "end",
                "filter",
            ]
        ),
        max_size=6,
    ),
    values=st.lists(TEXT, min_size=6, max_size=6),
)
def test_fuzzed_parameters_never_fail_the_server(
    api: Api, path: str, names: list[str], values: list[str]
) -> None:
    params = [(name, values[i]) for i, name in enumerate(names)]
    reply = api.http.get(f"/insights/{api.project}/{path}", params=params, headers=api.headers)
    assert reply.status_code in (200, 400), (params, reply.status_code, reply.text[:300])
    if reply.status_code == 400:
        assert set(reply.json()) == {"error", "detail"}


def test_a_project_admin_defines_goals_with_the_csrf_token(site: Any) -> None:
    admin = admin_session(site)
    proj = new_project(site, admin, "goals by an admin")
    path = f"/insights/{proj.id}/goals/definitions"
    refused = admin.post(path, json={"event": "signup"})
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    token = csrf_of(admin.get(f"/projects/{proj.id}/settings").text)
    reply = admin.post(path, json={"event": "signup"}, headers={"X-CSRF-Token": token})
    assert reply.status_code == 201, reply.text
    assert [g["step"] for g in admin.get(path).json()["goals"]] == ["event:signup"]
    assert admin.get(f"/insights/{proj.id}/goals").status_code == 200
