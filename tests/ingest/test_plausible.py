"""`POST /api/event`: what Plausible's tracker sends → rows, projects found by domain."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

from gatrix.clickhouse.store import Store
from gatrix.meta.projects import NewClient, create_project
from gatrix.pageviews import ENGAGEMENT_NAME

from ..conftest import CHROME_UA, LiveServer, event_rows, wait_events, wait_for


def _site(server: LiveServer, *origins: str) -> NewClient:
    project = create_project(server.services.engine, f"site {uuid.uuid4().hex[:6]}", list(origins))
    server.services.directory.forget()  # the domain index is cached for a few seconds
    return project


def _send(http: httpx.Client, body: dict[str, Any], origin: str) -> httpx.Response:
    # the tracker's request: JSON as text/plain, so browsers send no preflight
    return http.post(
        "/api/event",
        content=json.dumps(body),
        headers={"content-type": "text/plain", "origin": origin, "user-agent": CHROME_UA},
    )


def test_pageview_props_revenue_and_engagement(
    http: httpx.Client, server: LiveServer, store: Store
) -> None:
    domain = f"{uuid.uuid4().hex[:8]}.example"
    project = _site(server, f"https://{domain}")
    origin = f"https://{domain}"
    url = f"https://{domain}/pricing?utm_source=newsletter"
    view = _send(
        http, {"n": "pageview", "u": url, "d": domain, "r": "https://www.google.com/"}, origin
    )
    assert view.status_code == 202 and view.text == "ok"
    assert view.headers["access-control-allow-origin"] == origin
    signup = {
        "n": "Signup",
        "u": url,
        "d": domain,
        "p": {"plan": "pro", "seats": 3},
        "$": {"amount": "12.50", "currency": "eur"},
    }
    assert _send(http, signup, origin).status_code == 202
    engagement = {"n": "engagement", "u": url, "d": domain, "sd": 80, "e": 30000, "p": {}}
    assert _send(http, engagement, origin).status_code == 202
    rows = wait_events(store, project.project_id, 3)
    by_name = {r["name"]: r for r in rows}
    page, custom, engaged = by_name["pageview"], by_name["Signup"], by_name[ENGAGEMENT_NAME]
    assert (page["path"], page["utm_source"], page["referrer_type"]) == (
        "/pricing",
        "newsletter",
        "search",
    )
    assert custom["properties"] == {"plan": "pro", "seats": "3", "currency": "EUR"}
    assert custom["revenue"] == 12.5
    assert engaged["duration"] == 30000 and engaged["properties"] == {"scroll_depth": "80"}
    assert len({r["session_id"] for r in rows}) == 1
    # the engagement ends the visit, and is neither a page view nor a custom event
    session = wait_for(
        lambda: store.query_dicts(
            "SELECT sum(pageviews) AS pv, sum(custom_events) AS ce, max(last_at) AS last "
            "FROM gatrix.sessions WHERE project_id = {p:String}",
            {"p": project.project_id},
        )[0]
    )
    assert (session["pv"], session["ce"]) == (1, 1)
    assert session["last"] == max(r["created_at"] for r in rows) == engaged["created_at"]
    events = store.query_dicts(
        "SELECT name, sum(events) AS n FROM gatrix.event_hourly WHERE project_id = {p:String} "
        "GROUP BY name",
        {"p": project.project_id},
    )
    assert events == [{"name": "Signup", "n": 1}]


def test_domain_lists_and_several_matching_projects(
    http: httpx.Client, server: LiveServer, store: Store
) -> None:
    a, b = f"a{uuid.uuid4().hex[:8]}.example", f"b{uuid.uuid4().hex[:8]}.example"
    first = _site(server, f"https://{a}")
    wildcard = _site(server, f"*.{b}")  # names b through a wildcard only
    exact = _site(server, f"https://{b}", f"https://{a}")  # names both; younger than first
    event = {"n": "pageview", "u": f"https://{a}/", "d": f"{a}, {b}"}
    assert _send(http, event, f"https://{a}").status_code == 202
    # a → the oldest project naming it; b → the one naming it exactly, not the wildcard
    assert len(wait_events(store, first.project_id, 1)) == 1
    assert len(wait_events(store, exact.project_id, 1)) == 1
    assert event_rows(store, wildcard.project_id) == []


def test_bad_input_is_a_json_4xx_and_stores_nothing(
    http: httpx.Client, server: LiveServer, store: Store
) -> None:
    domain = f"{uuid.uuid4().hex[:8]}.example"
    project = _site(server, f"https://{domain}")
    origin = f"https://{domain}"
    for body, code in [
        ({"u": f"{origin}/", "d": domain}, "missing_field"),
        ({"n": "pageview", "d": domain}, "missing_field"),
        ({"n": "pageview", "u": f"{origin}/"}, "missing_field"),
        ({"n": "pageview", "u": f"{origin}/", "d": domain, "p": [1]}, "invalid_properties"),
        ({"n": "x", "u": f"{origin}/", "d": domain, "$": {"amount": "lots"}}, "invalid_field"),
        # an integer beyond any float (float() of it raises)
        ({"n": "x", "u": f"{origin}/", "d": domain, "$": {"amount": 10**400}}, "invalid_field"),
        ({"n": "pageview", "u": f"{origin}/", "d": "nobody.example"}, "unknown_domain"),
    ]:
        reply = _send(http, body, origin)
        assert reply.status_code == 400, body
        assert reply.json()["error"] == code
    stranger = _send(http, {"n": "pageview", "u": "/", "d": domain}, "https://evil.example")
    assert stranger.status_code == 401 and stranger.json()["error"] == "origin_not_allowed"
    assert (
        _send(http, {"n": "pageview", "u": "/", "d": domain, "p": "{"}, origin).status_code == 400
    )
    assert event_rows(store, project.project_id) == []
