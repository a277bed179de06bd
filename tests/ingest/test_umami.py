"""`POST /api/send`: what Umami's trackers send → the rows in ClickHouse, and their replies."""

from __future__ import annotations

import uuid

import httpx
from sqlmodel import Session

from gatrix.clickhouse.store import Store
from gatrix.insights.profiles import get_profile
from gatrix.meta.models import Project
from gatrix.meta.projects import NewClient

from ..conftest import CHROME_UA, event_rows, wait_events, wait_for

HEADERS = {"origin": "https://shop.example.com", "user-agent": CHROME_UA}


def test_legacy_tracker_page_view_with_encoded_url_and_title(
    http: httpx.Client, server_project: NewClient, store: Store
) -> None:
    # the 2.x tracker: path + query passed through encodeURI once more, title through
    # encodeURIComponent, the hostname beside them
    payload = {
        "website": server_project.client_id,
        "hostname": "shop.example.com",
        "url": "/caf%25C3%25A9?utm_source=newsletter",
        "referrer": "https://news.ycombinator.com/item?id=1",
        "title": "Caf%C3%A9%20%26%20co",
        "screen": "1920x1080",
        "language": "en-US",
    }
    reply = http.post("/api/send", json={"type": "event", "payload": payload}, headers=HEADERS)
    assert reply.status_code == 200, reply.text
    assert reply.headers["access-control-allow-origin"] == "https://shop.example.com"
    body = reply.json()
    assert body["cache"] and body["sessionId"] == body["cache"]
    [row] = wait_events(store, server_project.project_id, 1)
    assert (row["name"], row["origin"], row["path"], row["query"]) == (
        "pageview",
        "https://shop.example.com",
        "/caf%C3%A9",
        "utm_source=newsletter",
    )
    assert row["title"] == "Café & co" and row["utm_source"] == "newsletter"
    assert row["referrer_name"] and row["referrer_type"] == "social"
    assert (row["screen"], row["language"], row["sdk_name"]) == ("1920x1080", "en-US", "umami")
    assert row["session_id"] == body["sessionId"]


def test_current_tracker_event_identify_and_distinct_id(
    http: httpx.Client, server_project: NewClient, store: Store
) -> None:
    base = {
        "website": server_project.client_id,
        "hostname": "shop.example.com",
        "url": "https://shop.example.com/pricing?plan=pro",
        "referrer": "",
        "title": "Pricing 100%",
    }
    identify = {"type": "identify", "payload": {**base, "id": "user-7", "data": {"tier": "gold"}}}
    assert http.post("/api/send", json=identify, headers=HEADERS).status_code == 200
    event = {
        "type": "event",
        "payload": {**base, "id": "user-7", "name": "signup", "data": {"plan": "pro", "n": 2}},
    }
    assert http.post("/api/send", json=event, headers=HEADERS).status_code == 200
    [row] = wait_events(store, server_project.project_id, 1)
    assert (row["name"], row["path"], row["title"], row["profile_id"]) == (
        "signup",
        "/pricing",
        "Pricing 100%",  # sent as it is: not decoded
        "user-7",
    )
    assert row["properties"] == {"plan": "pro", "n": "2"}
    profile = wait_for(lambda: get_profile(store, server_project.project_id, "user-7"))
    assert profile and profile["properties"] == {"tier": "gold"}


def test_website_id_chosen_on_the_project(
    http: httpx.Client, server: object, server_project: NewClient, store: Store
) -> None:
    website = str(uuid.uuid4())
    engine = server.services.engine  # type: ignore[attr-defined]
    with Session(engine) as db:
        project = db.get(Project, server_project.project_id)
        assert project is not None
        project.umami_website_id = website
        db.add(project)
        db.commit()
    server.services.directory.forget()  # type: ignore[attr-defined]
    payload = {"website": website, "hostname": "shop.example.com", "url": "/"}
    ok = http.post("/api/send", json={"type": "event", "payload": payload}, headers=HEADERS)
    assert ok.status_code == 200, ok.text
    # once a project chose its website id, its client id no longer stands for it
    old = {**payload, "website": server_project.client_id}
    refused = http.post("/api/send", json={"type": "event", "payload": old}, headers=HEADERS)
    assert refused.status_code == 400 and refused.json()["error"] == "unknown_website"
    assert len(wait_events(store, server_project.project_id, 1)) == 1


def test_preflight_and_bad_input(
    http: httpx.Client, server_project: NewClient, store: Store
) -> None:
    pre = http.options(
        "/api/send",
        headers={
            "origin": "https://shop.example.com",
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type,x-umami-cache",
        },
    )
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-headers"] == "content-type,x-umami-cache"
    assert "POST" in pre.headers["access-control-allow-methods"]
    website = server_project.client_id
    for body, code in [
        (b"{", "invalid_json"),
        (b'{"type": "event"}', "invalid_payload"),
        (b'{"type": "event", "payload": {}}', "missing_field"),
        (b'{"type": "visit", "payload": {"website": "%s"}}' % website.encode(), "invalid_type"),
        (b'{"type": "event", "payload": {"website": "%s", "data": 3}}' % website.encode(), None),
        # no URL can be made of these: a bad field, not a server error
        (
            b'{"type": "event", "payload": {"website": "%s", "hostname": "[", "url": "/"}}'
            % website.encode(),
            "invalid_field",
        ),
        (
            b'{"type": "event", "payload": {"website": "%s", "hostname": "a.b", "url": "//["}}'
            % website.encode(),
            "invalid_field",
        ),
        (
            b'{"type": "event", "payload": {"website": "%s", "hostname": "a.b", "url": "/",'
            b' "referrer": "//["}}' % website.encode(),
            "invalid_field",
        ),
    ]:
        reply = http.post("/api/send", content=body, headers=HEADERS)
        assert reply.status_code == 400, body
        assert reply.headers["content-type"] == "application/json"
        assert code is None or reply.json()["error"] == code
    foreign = http.post(
        "/api/send",
        json={"type": "event", "payload": {"website": website, "url": "/"}},
        headers={**HEADERS, "origin": "https://evil.example"},
    )
    assert foreign.status_code == 401 and foreign.json()["error"] == "origin_not_allowed"
    big = {"type": "event", "payload": {"website": website, "title": "x" * 70_000}}
    assert http.post("/api/send", json=big, headers=HEADERS).status_code == 413
    assert event_rows(store, server_project.project_id) == []
