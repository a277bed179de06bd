"""The insights API over real HTTP against hand-built events with known answers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from gatrix.clickhouse.store import Store
from gatrix.meta.projects import NewClient, create_client, create_project

from ..factory import events

UTC_ = UTC


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


class Api:
    def __init__(self, http: httpx.Client, created: NewClient) -> None:
        self.http = http
        self.project = created.project_id
        self.headers = {
            "openpanel-client-id": created.client_id,
            "openpanel-client-secret": created.client_secret,
        }

    def get(self, path: str, **params: Any) -> Any:
        reply = self.http.get(
            f"/insights/{self.project}/{path}", params=params, headers=self.headers
        )
        assert reply.status_code == 200, reply.text
        return reply.json()

    def status(self, path: str, **params: Any) -> tuple[int, Any]:
        reply = self.http.get(
            f"/insights/{self.project}/{path}", params=params, headers=self.headers
        )
        return reply.status_code, reply.json()


def new_api(server: Any, http: httpx.Client, timezone: str = "UTC") -> Api:
    return Api(
        http,
        create_project(server.services.engine, f"ins {uuid.uuid4().hex[:6]}", timezone=timezone),
    )


WEEK = {"range": "custom", "start": "2026-03-01", "end": "2026-03-07"}


def seed_week(store: Store, project: str) -> None:
    events(
        store,
        project,
        [
            # visitor A, session 1: two page views and a signup, 6 minutes
            {
                "at": at("2026-03-02T10:00:00"),
                "device_id": "A",
                "session_id": "s1",
                "path": "/",
                "referrer_name": "Google",
                "referrer_type": "search",
                "country": "US",
                "utm_source": "spring",
            },
            {
                "at": at("2026-03-02T10:05:00"),
                "device_id": "A",
                "session_id": "s1",
                "path": "/pricing",
                "country": "US",
            },
            {
                "at": at("2026-03-02T10:06:00"),
                "device_id": "A",
                "session_id": "s1",
                "name": "signup",
                "path": "/pricing",
                "country": "US",
                "properties": {"plan": "pro", "it's": 'odd "key"'},
            },
            # visitor A, session 2: a bounce
            {
                "at": at("2026-03-03T12:00:00"),
                "device_id": "A",
                "session_id": "s2",
                "path": "/",
                "country": "US",
            },
            # visitor B, session 3: two blog pages from Hacker News, Korea, Firefox, 10 minutes
            {
                "at": at("2026-03-04T09:00:00"),
                "device_id": "B",
                "session_id": "s3",
                "path": "/blog",
                "referrer_name": "Hacker News",
                "referrer_type": "social",
                "country": "KR",
                "browser": "Firefox",
            },
            {
                "at": at("2026-03-04T09:10:00"),
                "device_id": "B",
                "session_id": "s3",
                "path": "/blog/x",
                "country": "KR",
                "browser": "Firefox",
            },
            # visitor C, session 4: only a custom event (not a bounce)
            {
                "at": at("2026-03-05T08:00:00"),
                "device_id": "C",
                "session_id": "s4",
                "name": "download",
                "path": "/app",
                "properties": {"plan": "free"},
            },
            # visitor D: the week before (previous period)
            {"at": at("2026-02-27T08:00:00"), "device_id": "D", "session_id": "s5", "path": "/old"},
        ],
    )


@pytest.fixture
def week(server: Any, http: httpx.Client, store: Store) -> Api:
    api = new_api(server, http)
    seed_week(store, api.project)
    return api


def test_metrics_exact(week: Api) -> None:
    m = week.get("metrics", **WEEK, compare="previous")
    assert {
        k: m[k]
        for k in (
            "visitors",
            "sessions",
            "pageviews",
            "events",
            "views_per_session",
            "bounce_rate",
            "avg_session_duration",
        )
    } == {
        "visitors": 3,
        "sessions": 4,
        "pageviews": 5,
        "events": 2,
        "views_per_session": 1.25,
        "bounce_rate": 25.0,
        "avg_session_duration": 240.0,
    }
    assert m["range"] == {
        "start": "2026-03-01T00:00:00+00:00",
        "end": "2026-03-08T00:00:00+00:00",
        "timezone": "UTC",
    }
    prev = m["previous"]
    assert (prev["visitors"], prev["sessions"], prev["pageviews"], prev["bounce_rate"]) == (
        1,
        1,
        1,
        100.0,
    )
    assert prev["range"]["start"] == "2026-02-22T00:00:00+00:00"
    assert m["revenue"] is None  # no event carries revenue
    # without compare the previous period is not read: same keys, no values
    alone = week.get("metrics", **WEEK)
    assert alone["visitors"] == 3 and set(alone["previous"]) == set(prev)
    assert set(alone["previous"].values()) == {None}


def test_rollups_and_raw_events_agree(week: Api) -> None:
    fast = week.get("metrics", **WEEK)  # whole hours, no filter: rollups
    raw = week.get("metrics", **WEEK, filter="name:is_not:zzz")  # any filter: raw events
    for key in ("visitors", "sessions", "pageviews", "events", "bounce_rate"):
        assert fast[key] == raw[key], key
    fast_pages = week.get("breakdown/pages", **WEEK)["rows"]
    raw_pages = week.get("breakdown/pages", **WEEK, filter="name:is_not:zzz")["rows"]
    assert fast_pages == raw_pages


def test_filters_combined(week: Api) -> None:
    korea_blog = week.get("metrics", **WEEK, filter=["countries:is:KR", "pages:starts_with:/blog"])
    assert (korea_blog["visitors"], korea_blog["sessions"], korea_blog["pageviews"]) == (1, 1, 2)
    assert korea_blog["avg_session_duration"] == 600.0
    not_us = week.get("metrics", **WEEK, filter="country:is_not:US")
    assert (not_us["visitors"], not_us["sessions"]) == (2, 2)  # B and C
    pricing = week.get("metrics", **WEEK, filter="page:is:/pricing")
    assert (pricing["visitors"], pricing["sessions"], pricing["pageviews"]) == (1, 1, 1)
    signup = week.get("metrics", **WEEK, filter="name:is:signup")
    assert (signup["visitors"], signup["sessions"], signup["events"]) == (1, 1, 1)
    prop = week.get("metrics", **WEEK, filter="property.plan:contains:PR")  # case-insensitive
    assert (prop["visitors"], prop["events"]) == (1, 1)
    search = week.get("metrics", **WEEK, filter="referrer_types:is:search")
    assert (search["sessions"], search["pageviews"]) == (1, 2)


def test_breakdowns(week: Api) -> None:
    pages = week.get("breakdown/pages", **WEEK)["rows"]
    assert pages[0] == {"value": "/", "visitors": 1, "pageviews": 2}
    assert {r["value"] for r in pages} == {"/", "/pricing", "/blog", "/blog/x"}
    entry = {r["value"]: r for r in week.get("breakdown/entry_pages", **WEEK)["rows"]}
    assert entry["/"]["sessions"] == 2 and entry["/"]["bounce_rate"] == 50.0
    assert entry["/blog"]["avg_session_duration"] == 600.0
    exits = {r["value"] for r in week.get("breakdown/exit_pages", **WEEK)["rows"]}
    assert {"/pricing", "/", "/blog/x"} <= exits
    refs = {r["value"]: r["visitors"] for r in week.get("breakdown/referrers", **WEEK)["rows"]}
    assert refs == {"Google": 1, "Hacker News": 1, "": 2}
    channels = {r["value"] for r in week.get("breakdown/channels", **WEEK)["rows"]}
    assert channels == {"search", "social", ""}
    countries = week.get("breakdown/countries", **WEEK, sort="sessions")["rows"]
    assert [(r["value"], r["sessions"]) for r in countries] == [("US", 2), ("", 1), ("KR", 1)]
    browsers = {r["value"]: r["visitors"] for r in week.get("breakdown/browsers", **WEEK)["rows"]}
    assert browsers == {"Chrome": 2, "Firefox": 1}
    utm = week.get("breakdown/utm_source", **WEEK)["rows"]
    assert {r["value"] for r in utm} == {"spring", ""}
    evs = {r["value"]: r["events"] for r in week.get("breakdown/events", **WEEK)["rows"]}
    assert evs == {"signup": 1, "download": 1}
    plan = week.get("breakdown/properties/signup/plan", **WEEK)["rows"]
    assert plan == [{"value": "pro", "visitors": 1, "events": 1}]
    odd = week.get("breakdown/properties/signup/it's", **WEEK)["rows"]
    assert odd[0]["value"] == 'odd "key"'


def test_breakdown_paging_and_sort(week: Api) -> None:
    first = week.get("breakdown/pages", **WEEK, limit=2, page=1, sort="pageviews")
    second = week.get("breakdown/pages", **WEEK, limit=2, page=2, sort="pageviews")
    assert first["has_more"] and not second["has_more"]
    assert len(first["rows"]) == 2 and len(second["rows"]) == 2
    assert not {r["value"] for r in first["rows"]} & {r["value"] for r in second["rows"]}


def test_timeseries_zero_filled_and_gaps(week: Api) -> None:
    series = week.get("timeseries", metric="pageviews", interval="day", **WEEK)
    assert [p["value"] for p in series["points"]] == [0, 2, 1, 2, 0, 0, 0]
    assert series["points"][0]["bucket"] == "2026-03-01T00:00:00+00:00"
    sessions = week.get("timeseries", metric="sessions", interval="day", **WEEK)
    assert [p["value"] for p in sessions["points"]] == [0, 1, 1, 1, 1, 0, 0]
    bounce = week.get("timeseries", metric="bounce_rate", interval="day", **WEEK)
    # a day without sessions has no bounce rate (a gap in the chart), not 0 %
    assert [p["value"] for p in bounce["points"]] == [None, 0.0, 100.0, 0.0, 0.0, None, None]
    hourly = week.get("timeseries", metric="visitors", interval="hour", **WEEK)
    assert len(hourly["points"]) == 7 * 24 and sum(p["value"] for p in hourly["points"]) == 4
    weekly = week.get("timeseries", metric="events", interval="week", **WEEK)
    assert [p["bucket"][:10] for p in weekly["points"]] == ["2026-02-23", "2026-03-02"]
    assert [p["value"] for p in weekly["points"]] == [0, 2]


def test_views_per_session_screens_and_revenue_over_http(week: Api, store: Store) -> None:
    vps = week.get("timeseries", metric="views_per_session", interval="day", **WEEK)
    assert [p["value"] for p in vps["points"]] == [None, 2.0, 1.0, 2.0, 0.0, None, None]
    assert len(vps["axis"]) == 7
    assert week.get("breakdown/screens", **WEEK)["rows"][0]["value"] == ""
    assert week.get("metrics", **WEEK, filter="screen:is:1x1")["visitors"] == 0
    events(
        store,
        week.project,
        [
            {
                "at": at("2026-03-06T10:00:00"),
                "device_id": "E",
                "session_id": "s9",
                "name": "purchase",
                "revenue": 12.5,
            }
        ],
    )
    m = week.get("metrics", **WEEK)
    assert m["revenue"] == 12.5
    evs = week.get("breakdown/events", **WEEK)
    assert evs["has_revenue"]
    assert {r["value"]: r["revenue"] for r in evs["rows"]} == {
        "download": 0.0,
        "purchase": 12.5,
        "signup": 0.0,
    }


def test_compare_previous_and_year(week: Api) -> None:
    series = week.get("timeseries", metric="visitors", interval="day", compare="previous", **WEEK)
    assert len(series["previous"]) == 7 and series["previous"][5]["value"] == 1  # 27 February
    year = week.get("metrics", **WEEK, compare="year")
    assert year["previous"]["range"]["start"] == "2025-03-01T00:00:00+00:00"
    assert year["previous"]["visitors"] == 0


def test_time_zone_edges(server: Any, http: httpx.Client, store: Store) -> None:
    api = new_api(server, http, timezone="Asia/Seoul")  # UTC+9
    events(
        store,
        api.project,
        [
            {"at": at("2026-03-05T14:30:00"), "device_id": "late", "session_id": "k1"},  # 23:30 KST
            {"at": at("2026-03-05T15:30:00"), "device_id": "early", "session_id": "k2"},  # 00:30
            # one session across local midnight: counts on the day it starts
            {"at": at("2026-03-06T14:50:00"), "device_id": "night", "session_id": "k3"},
            {"at": at("2026-03-06T15:20:00"), "device_id": "night", "session_id": "k3"},
        ],
    )
    rng = {"range": "custom", "start": "2026-03-05", "end": "2026-03-07"}
    pv = api.get("timeseries", metric="pageviews", interval="day", **rng)["points"]
    assert [(p["bucket"], p["value"]) for p in pv] == [
        ("2026-03-05T00:00:00+09:00", 1),
        ("2026-03-06T00:00:00+09:00", 2),
        ("2026-03-07T00:00:00+09:00", 1),
    ]
    sessions = api.get("timeseries", metric="sessions", interval="day", **rng)["points"]
    assert [p["value"] for p in sessions] == [1, 2, 0]
    m = api.get("metrics", **rng)
    assert m["range"]["start"] == "2026-03-05T00:00:00+09:00"
    assert (m["sessions"], m["visitors"], m["avg_session_duration"]) == (3, 3, 600.0)
    first_day = api.get("metrics", range="custom", start="2026-03-05", end="2026-03-05")
    assert (first_day["visitors"], first_day["sessions"]) == (1, 1)


def test_empty_range_gives_zeros(server: Any, http: httpx.Client) -> None:
    api = new_api(server, http)
    m = api.get("metrics", range="7d")
    assert (m["visitors"], m["sessions"], m["bounce_rate"], m["avg_session_duration"]) == (
        0,
        0,
        0.0,
        0.0,
    )
    assert api.get("breakdown/countries", range="7d")["rows"] == []
    assert all(p["value"] == 0 for p in api.get("timeseries", range="7d")["points"])


@pytest.mark.parametrize(
    "name",
    [
        "30min",
        "1h",
        "24h",
        "today",
        "yesterday",
        "7d",
        "30d",
        "90d",
        "mtd",
        "lastmonth",
        "ytd",
        "12m",
        "all",
    ],
)
def test_every_named_range_answers(server: Any, http: httpx.Client, name: str) -> None:
    api = new_api(server, http)
    assert api.get("metrics", range=name)["visitors"] == 0


def test_live(server: Any, http: httpx.Client, store: Store) -> None:
    api = new_api(server, http)
    now = datetime.now(UTC)
    events(
        store,
        api.project,
        [
            {
                "at": now - timedelta(minutes=1),
                "device_id": "x",
                "session_id": "l1",
                "path": "/a",
                "country": "KR",
            },
            {"at": now - timedelta(minutes=2), "device_id": "y", "session_id": "l2", "path": "/a"},
            {
                "at": now - timedelta(minutes=3),
                "device_id": "y",
                "session_id": "l2",
                "name": "click",
                "path": "/a",
            },
            {"at": now - timedelta(minutes=20), "device_id": "z", "session_id": "l3", "path": "/b"},
        ],
    )
    live = api.get("live")
    assert live["visitors"] == 2
    assert live["pages"] == [{"path": "/a", "visitors": 2}]
    assert [e["name"] for e in live["recent"]][:3] == ["screen_view", "screen_view", "click"]
    assert live["recent"][0]["country"] == "KR"
    assert len(live["per_minute"]) == 30
    assert sum(m["pageviews"] for m in live["per_minute"]) == 3


INJECTIONS = ["'; DROP TABLE gatrix.events; --", "\\' OR 1=1 --", "{p0:String}", "x') OR ('1'='1"]


@pytest.mark.parametrize("payload", INJECTIONS)
def test_injection_attempts_are_only_text(week: Api, store: Store, payload: str) -> None:
    m = week.get("metrics", **WEEK, filter=f"pages:is:{payload}")
    assert m["visitors"] == 0
    rows = week.get("breakdown/properties/signup/" + payload.replace("/", ""), **WEEK)["rows"]
    assert rows == []
    # a key holding ':' cannot be written in this syntax: a clear 400, never an error
    status, _ = week.status("metrics", **WEEK, filter=f"property.{payload}:is:{payload}")
    assert status == (400 if ":" in payload else 200)
    assert store.query_rows("SELECT count() FROM gatrix.events")[0][0] > 0  # table still there


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"range": "fortnight"}, "unknown range"),
        ({"range": "custom"}, "needs start and end"),
        ({"range": "custom", "start": "2026-03-05", "end": "2026-03-01"}, "after start"),
        ({"range": "custom", "start": "yesterday-ish", "end": "2026-03-01"}, "invalid date"),
        ({"filter": "planet:is:mars"}, "unknown dimension"),
        ({"filter": "countries:like:US"}, "unknown operator"),
        ({"filter": "countries-US"}, "dimension:operator:value"),
        ({"compare": "decade"}, "unknown compare"),
    ],
)
def test_bad_parameters_get_400(week: Api, params: dict[str, str], fragment: str) -> None:
    status, body = week.status("metrics", **params)
    assert status == 400 and body["error"] == "invalid_query" and fragment in body["detail"]


def test_bad_report_parameters_get_400(week: Api) -> None:
    assert week.status("breakdown/planets", **WEEK)[0] == 400
    assert week.status("breakdown/pages", **WEEK, sort="bounce_rate")[0] == 400
    assert week.status("breakdown/pages", **WEEK, limit=0)[0] == 400
    assert week.status("timeseries", metric="revenue", **WEEK)[0] == 400
    status, body = week.status("timeseries", interval="minute", range="90d")
    assert status == 400 and "buckets" in body["detail"]


def test_access_rules(server: Any, http: httpx.Client, week: Api) -> None:
    engine = server.services.engine
    path = f"/insights/{week.project}/metrics"
    assert http.get(path).status_code == 401
    assert http.get(path).json()["error"] == "unauthenticated"
    wrong = {**week.headers, "openpanel-client-secret": "sec_nope"}
    assert http.get(path, headers=wrong).status_code == 401
    other = create_project(engine, "someone else")
    other_headers = {
        "openpanel-client-id": other.client_id,
        "openpanel-client-secret": other.client_secret,
    }
    reply = http.get(path, headers=other_headers)
    assert reply.status_code == 403 and reply.json()["error"] == "forbidden"
    writer = create_client(engine, week.project, "write")
    reply = http.get(
        path,
        headers={
            "openpanel-client-id": writer.client_id,
            "openpanel-client-secret": writer.client_secret,
        },
    )
    assert reply.status_code == 403 and reply.json()["error"] == "client_cannot_read"
    reader = create_client(engine, week.project, "read")
    reply = http.get(
        path,
        params=WEEK,
        headers={
            "openpanel-client-id": reader.client_id,
            "openpanel-client-secret": reader.client_secret,
        },
    )
    assert reply.status_code == 200 and reply.json()["visitors"] == 3


def test_openapi_schema_lists_the_insights(http: httpx.Client) -> None:
    schema = http.get("/schema/openapi.json").json()
    paths = set(schema["paths"])
    for suffix in (
        "metrics",
        "live",
        "timeseries",
        "breakdown/{dimension}",
        "breakdown/properties/{event}/{key}",
    ):
        assert f"/insights/{{project_id}}/{suffix}" in paths
    params = {
        p["name"] for p in schema["paths"]["/insights/{project_id}/metrics"]["get"]["parameters"]
    }
    assert {"range", "start", "end", "compare", "filter"} <= params
