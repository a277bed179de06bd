"""Property-based: hostile bodies, parameters and paths at every public route that takes
input — /track, /track/batch, the insights API, the dashboard, its fragments, realtime,
settings and share pages. The one invariant: never a 5xx. Errors are the JSON
`{"error", "detail"}` shape (pages may answer their HTML error page), and ingest replies
always carry CORS headers.

Example counts are bounded so the module runs in about half a minute on two cores; the
regression tests for what these found live in test_input_hardening.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gatrix.clickhouse.store import Store
from gatrix.ingest.payloads import RESERVED
from gatrix.insights.filters import ALIASES, EVENT_DIMENSIONS, OPERATORS, SESSION_DIMENSIONS
from gatrix.insights.query import COMPARES, INTERVALS, RANGES
from gatrix.insights.reports import SERIES_METRICS, SORTS
from gatrix.web.view import KPI_CARDS, PANELS

from ..conftest import CHROME_UA, LiveServer
from ..factory import events
from ..websession import SiteProject, admin_session, csrf_of, new_project


def bounded(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,  # no example database written into the checkout
        suppress_health_check=list(HealthCheck),
    )


def no_5xx(reply: httpx.Response, html_ok: bool = False) -> None:
    assert reply.status_code < 500, (
        reply.request.method,
        str(reply.request.url)[:300],
        reply.status_code,
        reply.text[:300],
    )
    if reply.status_code < 400:
        return
    if html_ok and reply.headers.get("content-type", "").startswith("text/html"):
        return
    assert set(reply.json()) == {"error", "detail"}, reply.text[:300]


@pytest.fixture(scope="module")
def admin(site: LiveServer) -> Iterator[httpx.Client]:
    client = admin_session(site)
    yield client
    client.close()


@pytest.fixture(scope="module")
def proj(site: LiveServer, admin: httpx.Client, store: Store) -> SiteProject:
    created = new_project(site, admin, f"fuzz {uuid.uuid4().hex[:6]}", timezone="Asia/Seoul")
    at = datetime.now(UTC) - timedelta(hours=2)
    events(
        store,
        created.id,
        [
            {"at": at, "path": "/", "country": "KR", "referrer_name": "Google"},
            {"at": at + timedelta(minutes=1), "path": "/pricing", "country": "KR"},
            {
                "at": at + timedelta(minutes=2),
                "name": "purchase",
                "properties": {"plan": "pro", "k\u00e9y": "<b>v</b>"},
            },
            {"at": at - timedelta(days=40), "device_id": "v2", "session_id": "s2", "path": "/"},
        ],
    )
    return created


@pytest.fixture(scope="module")
def http(site: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=site.url, timeout=30) as client:
        yield client


# --- shared pieces of hostile input

texts = st.text(max_size=40)
# hostile on purpose: control characters, encoded NULs, traversal, SQL and placeholder syntax
hostile_text = texts | st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "%00",
        "../../etc",
        "'; DROP TABLE events;--",
        "{p:String}",
        "\u202e",
        "9" * 400,
    ]
)


def mostly(valid: st.SearchStrategy[Any], hostile: st.SearchStrategy[Any]) -> Any:
    # one_of picks branches evenly: three valid to one hostile, so the paths behind the
    # validation (queries, templates) get their share of examples
    return valid | valid | valid | hostile


dates = st.dates(min_value=datetime(1, 1, 1).date(), max_value=datetime(9999, 12, 31).date())
moments = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30))
range_bounds = (
    dates.map(str)
    | moments.map(lambda t: t.isoformat())
    | moments.map(lambda t: t.isoformat() + "+14:00")
    | st.sampled_from(["2026-02-30", "2026-13-01", "0000-00-00", "1e400", "now"])
    | hostile_text
)
big_ints = st.integers(min_value=-(10**40), max_value=10**40).map(str)
dimensions = sorted({*SESSION_DIMENSIONS, *EVENT_DIMENSIONS, *ALIASES})
# clicks the dashboard itself makes: an event row, a browser or OS (drill-down to versions)
clicked = st.sampled_from(
    ["name:is:purchase", "events:is:purchase", "browsers:is:Chrome", "os:is:Windows"]
)
built_filters = st.builds(
    lambda dim, op, value: f"{dim}:{op}:{value}",
    mostly(st.sampled_from([*dimensions, "name", "property.plan"]), hostile_text),
    mostly(st.sampled_from(OPERATORS), hostile_text),
    mostly(st.sampled_from(["KR", "/", "purchase", "pro", "Google"]), hostile_text),
)
odd_filters = hostile_text | st.sampled_from(["property.:is:x", "property.\x01:is:x", "name:is"])
filters = st.one_of(clicked, built_filters, built_filters, odd_filters)
query_params = st.fixed_dictionaries(
    {"filter": st.lists(filters, max_size=3)},  # an empty list sends none
    optional={
        "range": mostly(st.sampled_from(RANGES), hostile_text),
        "start": mostly(dates.map(str), range_bounds),
        "end": mostly(dates.map(str), range_bounds),
        "interval": mostly(st.sampled_from(INTERVALS), hostile_text),
        "compare": mostly(st.sampled_from([*COMPARES, "off"]), hostile_text),
        "metric": mostly(st.sampled_from([*SERIES_METRICS, *KPI_CARDS]), hostile_text),
        "limit": mostly(st.integers(1, 1000).map(str), big_ints | hostile_text),
        "page": mostly(st.integers(1, 10_000).map(str), big_ints | hostile_text),
        "sort": mostly(
            st.sampled_from(sorted({s for v in SORTS.values() for s in v})), hostile_text
        ),
    },
)
segments = st.sampled_from(["pages", "countries", "x"]) | hostile_text.filter(bool)


def seg(text: str) -> str:
    return quote(text, safe="")


# --- /track and /track/batch

raw_numbers = st.sampled_from(
    [b"1e400", b"-1e400", b"1e-400", b"-0", b"NaN", b"Infinity", b"0.1e1", b"1E+2"]
) | st.integers(min_value=-(10**4290), max_value=10**4290).map(lambda n: str(n).encode())
raw_scalars = (
    raw_numbers
    | st.sampled_from([b"true", b"false", b"null"])
    | texts.map(lambda s: json.dumps(s).encode())
)


def _array(items: list[bytes]) -> bytes:
    return b"[" + b",".join(items) + b"]"


def _object(items: dict[str, bytes]) -> bytes:
    return b"{" + b",".join(json.dumps(k).encode() + b":" + v for k, v in items.items()) + b"}"


raw_values = st.recursive(
    raw_scalars,
    lambda inner: (
        st.lists(inner, max_size=3).map(_array)
        | st.dictionaries(st.sampled_from([*RESERVED, "plan"]) | texts, inner, max_size=3).map(
            _object
        )
    ),
    max_leaves=8,
) | st.builds(
    lambda depth, leaf: b"[" * depth + leaf + b"]" * depth, st.integers(50, 2500), raw_scalars
)

raw_payloads = st.fixed_dictionaries(
    {},
    optional={
        "name": st.just(b'"fuzz"') | raw_values,
        "value": raw_values,
        "profileId": st.just(b'"u1"') | raw_values,
        "property": st.just(b'"credits"') | raw_values,
        "path": raw_values,
        "properties": st.dictionaries(
            st.sampled_from([*RESERVED, "plan"]), raw_values, max_size=4
        ).map(_object)
        | raw_values,
    },
).map(_object)
raw_envelopes = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["track", "identify", "increment", "decrement", "group"]).map(
            lambda t: json.dumps(t).encode()
        )
        | raw_values,
        "payload": raw_payloads | raw_values,
    }
).map(_object)
ingest_bodies = (
    raw_envelopes
    | st.lists(raw_envelopes, max_size=4).map(_array)
    | raw_values
    | st.binary(max_size=100)
)


def test_ingest_never_5xx_and_always_cors(http: httpx.Client, proj: SiteProject) -> None:
    headers = {
        "content-type": "application/json",
        "origin": "https://fuzz.example",
        "user-agent": CHROME_UA,
        "openpanel-client-id": proj.client_id,
    }

    @bounded(300)
    @given(path=st.sampled_from(["/track", "/track/batch"]), body=ingest_bodies)
    def run(path: str, body: bytes) -> None:
        reply = http.post(path, content=body, headers=headers)
        no_5xx(reply)
        assert reply.headers["access-control-allow-origin"] == "https://fuzz.example"
        if path == "/track/batch" and reply.status_code == 200:
            statuses = [r["status"] for r in reply.json()["results"]]
            assert all(s < 500 for s in statuses), reply.text[:300]

    run()


# --- insights API


def test_insights_api_never_5xx(http: httpx.Client, admin: httpx.Client, proj: SiteProject) -> None:
    endpoints = (
        st.sampled_from(["metrics", "timeseries", "live"])
        | st.builds(lambda d: f"breakdown/{seg(d)}", st.sampled_from(dimensions) | segments)
        | st.builds(
            lambda e, k: f"breakdown/properties/{seg(e)}/{seg(k)}",
            st.sampled_from(["purchase"]) | segments,
            st.sampled_from(["plan", "k\u00e9y"]) | segments,
        )
    )
    callers = st.sampled_from(["reader", "reader", "reader", "admin", "nobody", "wrong"])

    @bounded(200)
    @given(endpoint=endpoints, params=query_params, caller=callers)
    def run(endpoint: str, params: dict[str, Any], caller: str) -> None:
        client = admin if caller == "admin" else http
        headers = {
            "reader": proj.read_headers,
            "wrong": {
                "openpanel-client-id": b"x" * 70,
                "openpanel-client-secret": "\u00ff".encode(),
            },
        }.get(caller, {})
        reply = client.get(f"/insights/{proj.id}/{endpoint}", params=params, headers=headers)
        no_5xx(reply)

    run()


# --- dashboard, fragments, realtime, share, settings

fragments = mostly(
    st.sampled_from(["kpis", "chart", "panel", "goals", "live-badge", "realtime"]), segments
)
dashboard_params = st.fixed_dictionaries(
    {},
    optional={
        "panel": mostly(st.sampled_from(list(PANELS)), hostile_text),
        "prop": mostly(st.sampled_from(["plan", "k\u00e9y"]), hostile_text),
        "goal": mostly(st.sampled_from(["1", "2", "999999999"]), hostile_text),
        **{
            f"tab_{p}": mostly(st.sampled_from([t[0] for t in PANELS[p]]), hostile_text)
            for p in PANELS
        },
    },
).flatmap(lambda extra: query_params.map(lambda q: {**q, **extra}))


def test_dashboard_routes_never_5xx(
    http: httpx.Client, admin: httpx.Client, proj: SiteProject
) -> None:
    pages = st.sampled_from(["", "/realtime", "/settings"]) | fragments.map(
        lambda f: f"/fragments/{seg(f)}"
    )

    @bounded(120)
    @given(page=pages, params=dashboard_params, shared=st.booleans())
    # the click on an Events row, which once broke the template, always among the examples
    @example(page="", params={"filter": ["name:is:purchase"]}, shared=True)
    @example(
        page="/fragments/panel",
        params={"panel": "events", "filter": ["events:is:purchase"]},
        shared=False,
    )
    def run(page: str, params: dict[str, Any], shared: bool) -> None:
        if page == "/settings":
            reply = admin.get(f"/projects/{proj.id}/settings", params=params)
        elif shared:
            reply = http.get(f"/share/{proj.share_token}{page}", params=params)
        else:
            reply = admin.get(f"/dashboard/{proj.id}{page}", params=params)
        no_5xx(reply, html_ok=True)

    run()


def test_unknown_ids_and_tokens_never_5xx(http: httpx.Client, admin: httpx.Client) -> None:
    @bounded(60)
    @given(
        kind=st.sampled_from(["dashboard", "share", "settings", "insights"]),
        ident=hostile_text.filter(lambda t: t.strip() not in ("", ".", "..")),
    )
    def run(kind: str, ident: str) -> None:
        path = {
            "dashboard": f"/dashboard/{seg(ident)}",
            "share": f"/share/{seg(ident)}/fragments/kpis",
            "settings": f"/projects/{seg(ident)}/settings",
            "insights": f"/insights/{seg(ident)}/metrics",
        }[kind]
        no_5xx((http if kind in ("share", "insights") else admin).get(path), html_ok=True)

    run()


def test_settings_and_project_forms_never_5xx(
    site: LiveServer, admin: httpx.Client, http: httpx.Client
) -> None:
    own = new_project(site, admin, f"form {uuid.uuid4().hex[:6]}")
    settings_url = f"/projects/{own.id}/settings"
    token = csrf_of(admin.get(settings_url).text)
    zones = st.sampled_from(
        ["UTC", "Asia/Seoul", "posixrules", "right/UTC", "posix/UTC", "localtime", "Factory", ""]
    )
    forms = st.fixed_dictionaries(
        {
            "name": mostly(st.just("form"), hostile_text),
            "origins": mostly(st.just("*"), hostile_text),
            "timezone": mostly(zones, hostile_text),
            "kind": mostly(st.sampled_from(["website", "app", "backend"]), hostile_text),
        }
    )
    valid = {"name": "form", "origins": "*", "kind": "website"}

    @bounded(40)
    @given(form=forms, create=st.booleans())
    @example(form={**valid, "timezone": "posixrules"}, create=False)
    @example(form={**valid, "timezone": "right/UTC"}, create=False)
    def run(form: dict[str, str], create: bool) -> None:
        action = "/projects" if create else settings_url
        no_5xx(admin.post(action, data={"_csrf": token, **form}), html_ok=True)
        # whatever was saved, the project's pages still answer
        no_5xx(admin.get(f"/dashboard/{own.id}?range=7d"), html_ok=True)
        no_5xx(http.get(f"/insights/{own.id}/timeseries", headers=own.read_headers))

    run()


def test_segment_note_and_goal_forms_never_5xx(
    site: LiveServer, admin: httpx.Client, http: httpx.Client
) -> None:
    own = new_project(site, admin, f"marks {uuid.uuid4().hex[:6]}")
    token = csrf_of(admin.get(f"/projects/{own.id}/settings").text)
    actions = st.sampled_from(
        [
            f"/dashboard/{own.id}/segments",
            f"/dashboard/{own.id}/annotations",
            f"/projects/{own.id}/goals",
            f"/dashboard/{own.id}/segments/1/delete",
            f"/dashboard/{own.id}/annotations/x/delete",
            f"/projects/{own.id}/goals/99999999999/delete",
        ]
    )
    forms = st.fixed_dictionaries(
        {},
        optional={
            "name": hostile_text,
            "view": mostly(st.just("range=7d&filter=countries:is:KR"), hostile_text),
            "day": mostly(
                st.sampled_from(["2026-03-05", "1999-01-01", "2026-02-30"]), hostile_text
            ),
            "text": hostile_text,
            "kind": mostly(st.sampled_from(["event", "page", "step"]), hostile_text),
            "target": mostly(st.sampled_from(["signup", "/p*", "event:x[a=b]"]), hostile_text),
            "revenue_property": hostile_text,
        },
    )

    @bounded(60)
    @given(action=actions, form=forms)
    def run(action: str, form: dict[str, str]) -> None:
        no_5xx(admin.post(action, data={"_csrf": token, **form}), html_ok=True)
        # whatever was saved, the pages that show it still answer
        no_5xx(admin.get(f"/dashboard/{own.id}?range=7d"), html_ok=True)
        no_5xx(admin.get(f"/dashboard/{own.id}/fragments/goals?range=7d"), html_ok=True)
        no_5xx(http.get(f"/share/{own.share_token}?range=7d"), html_ok=True)

    run()
