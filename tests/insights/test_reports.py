"""The report functions against chDB with hand-built events and a fixed `now`: how many
statements the KPIs cost, series that stop at now and leave gaps, KPIs that agree under an
event filter, breakdown order, screen and language dimensions, revenue."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gatrix.clickhouse.store import Store
from gatrix.insights import reports
from gatrix.insights.query import InvalidQuery, Query, QueryParams, build_query

from ..factory import events

NOW = datetime(2026, 3, 4, 14, 37, tzinfo=UTC)
MARCH = {"range": "custom", "start": "2026-03-01", "end": "2026-03-07"}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def query(project: str, tz: str = "UTC", now: datetime = NOW, **params: Any) -> Query:
    if "filters" in params and isinstance(params["filters"], str):
        params["filters"] = [params["filters"]]
    return build_query(project, tz, QueryParams(**params), now)


class CountingStore(Store):
    """The real store, recording every statement it sends with its bound parameters."""

    def __init__(self, store: Store) -> None:
        super().__init__(store.dsn, store.db)
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def query_dicts(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict]:
        self.sent.append((sql, dict(parameters or {})))
        return super().query_dicts(sql, parameters)

    def query_rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple]:
        self.sent.append((sql, dict(parameters or {})))
        return super().query_rows(sql, parameters)

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        self.sent.append((sql, dict(parameters or {})))
        return super().command(sql, parameters)

    def earliest_bound_time(self) -> datetime:
        return min(v for _, params in self.sent for v in params.values() if isinstance(v, datetime))


def new_project() -> str:
    return f"rep-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def shop(store: Store) -> str:
    """Three visitors in the first week of March 2026, two of whom buy something.

    P (DE, 1920x1080, de-DE): /, /product, /checkout, purchase 30.00 — 12 minutes
    Q (KR, 390x844, ko-KR):   /, /product, purchase 20.50 — 5 minutes
    R (KR, 390x844, ko-KR):   / only — a bounce
    and one visit in the last week of February (the previous period of the first week).
    """
    project = new_project()
    p = {"device_id": "P", "session_id": "p1", "country": "DE", "screen": "1920x1080"}
    p["language"] = "de-DE"
    q = {"device_id": "Q", "session_id": "q1", "country": "KR", "screen": "390x844"}
    q["language"] = "ko-KR"
    r = {"device_id": "R", "session_id": "r1", "country": "KR", "screen": "390x844"}
    r["language"] = "ko-KR"
    events(
        store,
        project,
        [
            {**p, "at": at("2026-03-02T10:00:00"), "path": "/", "referrer_name": "Google"},
            {**p, "at": at("2026-03-02T10:04:00"), "path": "/product"},
            {**p, "at": at("2026-03-02T10:10:00"), "path": "/checkout"},
            {
                **p,
                "at": at("2026-03-02T10:12:00"),
                "name": "purchase",
                "path": "/checkout",
                "revenue": 30.0,
                "properties": {"plan": "pro"},
            },
            {**q, "at": at("2026-03-03T09:00:00"), "path": "/"},
            {**q, "at": at("2026-03-03T09:03:00"), "path": "/product"},
            {
                **q,
                "at": at("2026-03-03T09:05:00"),
                "name": "purchase",
                "path": "/product",
                "revenue": 20.5,
                "properties": {"plan": "team"},
            },
            {**r, "at": at("2026-03-04T08:00:00"), "path": "/"},
            {"at": at("2026-02-25T08:00:00"), "device_id": "S", "session_id": "s0", "path": "/"},
        ],
    )
    return project


# --- 1. KPI statements


def test_metrics_read_both_periods_in_at_most_two_statements(store: Store, shop: str) -> None:
    counting = CountingStore(store)
    q = query(shop, **MARCH, compare="previous")
    m = reports.metrics(counting, q)
    assert len(counting.sent) <= 2
    assert (m["visitors"], m["sessions"], m["pageviews"], m["events"]) == (3, 3, 6, 2)
    assert (m["previous"]["visitors"], m["previous"]["pageviews"]) == (1, 1)
    assert m["previous"]["range"]["start"] == "2026-02-22T00:00:00+00:00"
    # the same numbers as asking for the previous period on its own
    alone = reports.metrics(
        store, query(shop, range="custom", start="2026-02-22", end="2026-02-28")
    )
    assert {k: v for k, v in m["previous"].items() if k != "range"} == {
        k: v for k, v in alone.items() if k not in ("range", "previous")
    }


@pytest.mark.parametrize("filters", [[], ["countries:is:KR"], ["name:is:purchase"]])
def test_without_compare_the_previous_period_is_not_read(
    store: Store, shop: str, filters: list[str]
) -> None:
    counting = CountingStore(store)
    q = query(shop, **MARCH, filters=filters)
    m = reports.metrics(counting, q)
    assert len(counting.sent) <= 2
    # nothing was bound before the range (less the day a session may have begun earlier)
    assert counting.earliest_bound_time() >= q.range.start - timedelta(days=1)
    assert m["previous"] == dict.fromkeys(m["previous"], None)
    assert set(m["previous"]) == set(m) - {"previous"}
    counting.sent.clear()
    reports.metrics(counting, query(shop, **MARCH, filters=filters, compare="year"))
    assert len(counting.sent) <= 2
    assert counting.earliest_bound_time() < datetime(2025, 3, 2, tzinfo=UTC)


def test_compare_year_across_overlapping_periods(store: Store, shop: str) -> None:
    # two years against the two years before, shifted by one: the periods overlap
    q = query(shop, range="custom", start="2025-03-01", end="2027-02-28", compare="year")
    m = reports.metrics(store, q)
    assert (m["visitors"], m["previous"]["visitors"]) == (4, 1)  # S (2026-02-25) in both


# --- 2. series that tell the truth


def test_range_all_begins_at_the_first_event(store: Store, shop: str) -> None:
    counting = CountingStore(store)
    q = query(shop, range="all", now=datetime(2026, 5, 20, 9, 0, tzinfo=UTC))
    series = reports.timeseries(counting, q, "visitors")
    assert [p["bucket"][:10] for p in series["points"]] == [
        "2026-02-01",
        "2026-03-01",
        "2026-04-01",
        "2026-05-01",
    ]
    assert [p["value"] for p in series["points"]] == [1, 3, 0, 0]
    assert series["range"]["start"] == "2026-02-25T00:00:00+00:00"
    counting.sent.clear()
    m = reports.metrics(counting, q)
    assert m["range"]["start"] == "2026-02-25T00:00:00+00:00" and m["visitors"] == 4
    # the first event, whether any identities are linked (a primary-key read), the KPIs
    assert len(counting.sent) == 3
    empty = reports.metrics(store, query(new_project(), "Asia/Seoul", range="all"))
    assert empty["range"]["start"] == "2026-03-04T00:00:00+09:00"  # today, in Seoul


def test_buckets_after_now_are_absent(store: Store, shop: str) -> None:
    series = reports.timeseries(store, query(shop, range="today"), "visitors")
    buckets = [p["bucket"][11:16] for p in series["points"]]
    assert buckets[0] == "00:00" and buckets[-1] == "14:00" and len(buckets) == 15
    assert [p["value"] for p in series["points"]][8] == 1  # R at 08:00
    assert len(series["axis"]) == 24 and series["axis"][-1].startswith("2026-03-04T23:00")
    compared = reports.timeseries(store, query(shop, range="today", compare="previous"), "events")
    assert len(compared["points"]) == 15 and len(compared["previous"]) == 24
    assert compared["previous"][9]["value"] == 1  # Q's purchase, yesterday 09:05


def test_ratios_are_none_in_buckets_without_sessions(store: Store, shop: str) -> None:
    def series(metric: str) -> list[Any]:
        q = query(shop, **MARCH, interval="day", now=datetime(2026, 4, 1, tzinfo=UTC))
        return [p["value"] for p in reports.timeseries(store, q, metric)["points"]]

    assert series("bounce_rate") == [None, 0.0, 0.0, 100.0, None, None, None]
    assert series("avg_session_duration") == [None, 720.0, 300.0, 0.0, None, None, None]
    assert series("views_per_session") == [None, 3.0, 2.0, 1.0, None, None, None]
    assert series("sessions") == [0, 1, 1, 1, 0, 0, 0]  # counts stay zero-filled
    assert series("pageviews") == [0, 3, 2, 1, 0, 0, 0]


# --- 3. KPIs that agree under an event filter


def test_an_event_name_filter_counts_the_page_views_of_its_sessions(
    store: Store, shop: str
) -> None:
    m = reports.metrics(store, query(shop, **MARCH, filters="name:is:purchase"))
    assert (m["visitors"], m["sessions"], m["events"]) == (2, 2, 2)
    assert m["pageviews"] == 5 and m["views_per_session"] == 2.5
    assert m["pageviews"] == round(m["views_per_session"] * m["sessions"])
    assert m["revenue"] == 50.5
    filtered = query(shop, **MARCH, interval="day", filters="name:is:purchase")
    per_day = reports.timeseries(store, filtered, "pageviews")["points"]
    assert sum(p["value"] for p in per_day) == m["pageviews"]
    pages = reports.breakdown(store, filtered, "pages")["rows"]
    assert [(r["value"], r["pageviews"]) for r in pages] == [
        ("/", 2),
        ("/product", 2),
        ("/checkout", 1),
    ]
    plan = reports.metrics(store, query(shop, **MARCH, filters="property.plan:is:team"))
    assert (plan["sessions"], plan["pageviews"], plan["events"]) == (1, 2, 1)
    assert plan["views_per_session"] == 2.0


def test_a_page_filter_counts_that_page_and_the_events_of_its_sessions(
    store: Store, shop: str
) -> None:
    m = reports.metrics(store, query(shop, **MARCH, filters="pages:is:/checkout"))
    assert (m["visitors"], m["sessions"], m["pageviews"], m["events"]) == (1, 1, 1, 1)
    assert m["revenue"] == 30.0
    both = query(shop, **MARCH, filters=["pages:is:/product", "name:is:purchase"])
    m = reports.metrics(store, both)
    assert (m["sessions"], m["pageviews"], m["events"]) == (2, 2, 2)


def test_a_filter_that_matches_everything_changes_nothing(store: Store, shop: str) -> None:
    plain = reports.metrics(store, query(shop, **MARCH))  # rollups
    everything = reports.metrics(store, query(shop, **MARCH, filters="name:is_not:zzz"))  # raw
    assert {k: v for k, v in plain.items() if k != "previous"} == {
        k: v for k, v in everything.items() if k != "previous"
    }


def test_a_session_filter_judges_the_whole_session_by_its_merged_value(store: Store) -> None:
    """A session stored in two parts (two inserts, as two flushes store it) whose rows
    disagree: its country is the merged one, and every event of a passing session counts,
    not only its rows that match."""
    project = new_project()
    mixed = {"session_id": "mixed", "device_id": "m"}
    start = at("2026-03-02T10:00:00")
    events(
        store,
        project,
        [{**mixed, "at": start + timedelta(minutes=i), "country": "KR"} for i in range(3)]
        + [{"session_id": "kr", "device_id": "k", "at": start, "country": "KR"}],
    )
    events(
        store,
        project,
        [
            {
                **mixed,
                "at": start + timedelta(minutes=5 + i),
                "session_start": start,
                "country": "US",
            }
            for i in range(2)
        ],
    )

    def kpis(*filters: str) -> tuple[int, int, int]:
        m = reports.metrics(store, query(project, **MARCH, filters=list(filters)))
        return m["visitors"], m["sessions"], m["pageviews"]

    # the mixed session is a US one (its merged value), with all five of its page views
    assert kpis("countries:is:US") == (1, 1, 5)
    assert kpis("countries:contains:u") == (1, 1, 5)
    assert kpis("countries:starts_with:U") == (1, 1, 5)
    assert kpis("countries:is:KR") == (1, 1, 1)
    assert kpis("countries:is_not:KR") == (1, 1, 5)
    assert kpis("countries:is:US", "browsers:is:Chrome") == (1, 1, 5)
    assert kpis("countries:is:KR", "browsers:is:Chrome") == (1, 1, 1)
    assert kpis("countries:is:US", "browsers:is:Firefox") == (0, 0, 0)
    us = query(project, **MARCH, interval="day", filters=["countries:is:US"])
    assert sum(p["value"] for p in reports.timeseries(store, us, "pageviews")["points"]) == 5
    rows = reports.breakdown(store, us, "pages")["rows"]
    assert [(r["value"], r["pageviews"]) for r in rows] == [("/", 5)]


# --- 5. breakdowns: order, screens and languages, revenue


@pytest.fixture
def popular(store: Store) -> str:
    """/a: 30 page views by 2 visitors; /b: 29 page views by 3 visitors; signup 5 times by
    one visitor, download once each by 3 visitors."""
    project = new_project()
    specs: list[dict[str, Any]] = []
    start = at("2026-03-02T08:00:00")
    for i in range(30):
        specs.append({"at": start + timedelta(minutes=i), "device_id": f"a{i % 2}", "path": "/a"})
    for i in range(29):
        at_ = start + timedelta(hours=2, minutes=i)
        specs.append({"at": at_, "device_id": f"b{i % 3}", "path": "/b"})
    for i in range(5):
        specs.append({"at": start + timedelta(hours=5, minutes=i), "name": "signup"})
    for i in range(3):
        specs.append({"at": start + timedelta(hours=6), "device_id": f"d{i}", "name": "download"})
    for spec in specs:
        spec["session_id"] = f"{spec.get('device_id', 'v1')}-{spec['at'].hour}"
    events(store, project, specs)
    return project


def test_breakdowns_sort_by_the_column_shown_first(store: Store, popular: str) -> None:
    q = query(popular, **MARCH)
    pages = reports.breakdown(store, q, "pages")
    assert pages["sort"] == "pageviews"
    assert [(r["value"], r["pageviews"], r["visitors"]) for r in pages["rows"]] == [
        ("/a", 30, 2),
        ("/b", 29, 3),
    ]
    entries = reports.breakdown(store, q, "entry_pages")["rows"]
    assert [r["value"] for r in entries][:2] == ["/a", "/b"]
    evs = reports.breakdown(store, q, "events")
    assert evs["sort"] == "events"
    assert [(r["value"], r["events"]) for r in evs["rows"]] == [("signup", 5), ("download", 3)]
    by_visitors = reports.breakdown(store, q, "events", sort="visitors")["rows"]
    assert [r["value"] for r in by_visitors] == ["download", "signup"]
    browsers = reports.breakdown(store, q, "browsers")
    assert browsers["sort"] == "visitors"
    # raw events (a filter) sort the same way
    raw = reports.breakdown(store, query(popular, **MARCH, filters="name:is_not:zzz"), "pages")
    assert [r["value"] for r in raw["rows"]] == ["/a", "/b"]


def test_screen_and_language_dimensions(store: Store, shop: str) -> None:
    q = query(shop, **MARCH)
    screens = reports.breakdown(store, q, "screens")["rows"]
    assert [(r["value"], r["visitors"], r["pageviews"]) for r in screens] == [
        ("390x844", 2, 3),
        ("1920x1080", 1, 3),
    ]
    languages = reports.breakdown(store, q, "languages")["rows"]
    assert [(r["value"], r["visitors"]) for r in languages] == [("ko-KR", 2), ("de-DE", 1)]
    big = reports.metrics(store, query(shop, **MARCH, filters="screen:is:1920x1080"))
    assert (big["visitors"], big["sessions"], big["pageviews"], big["events"]) == (1, 1, 3, 1)
    korean = reports.metrics(store, query(shop, **MARCH, filters="languages:starts_with:ko"))
    assert (korean["visitors"], korean["sessions"]) == (2, 2)


def test_revenue_when_some_event_carries_it(store: Store, shop: str) -> None:
    for filters in ([], ["referrer_types:is_not:zzz"]):  # rollups, then raw events
        q = query(shop, **MARCH, filters=filters)
        assert reports.metrics(store, q)["revenue"] == 50.5
        evs = reports.breakdown(store, q, "events")
        assert evs["has_revenue"] and evs["rows"] == [
            {"value": "purchase", "visitors": 2, "events": 2, "revenue": 50.5}
        ]
        countries = reports.breakdown(store, q, "countries")
        assert countries["has_revenue"]
        assert {r["value"]: r["revenue"] for r in countries["rows"]} == {"KR": 20.5, "DE": 30.0}
        # rows carry the documented keys only (an internal count once leaked past the first)
        assert all(
            "revenue_anywhere" not in r and "revenue_total" not in r for r in countries["rows"]
        )
        by_revenue = reports.breakdown(store, q, "countries", sort="revenue")["rows"]
        assert [r["value"] for r in by_revenue] == ["DE", "KR"]
        screens = reports.breakdown(store, q, "screens")["rows"]
        assert {r["value"]: r["revenue"] for r in screens} == {"390x844": 20.5, "1920x1080": 30.0}
        plans = reports.property_breakdown(store, q, "purchase", "plan")
        assert plans["has_revenue"] and plans["rows"][0] == {
            "value": "pro",
            "visitors": 1,
            "events": 1,
            "revenue": 30.0,
        }
        assert not reports.breakdown(store, q, "pages")["has_revenue"]
    # the previous period has no revenue: None, and rows without the key
    before = query(shop, range="custom", start="2026-02-22", end="2026-02-28")
    assert reports.metrics(store, before)["revenue"] is None
    countries = reports.breakdown(store, before, "countries")
    assert not countries["has_revenue"] and "revenue" not in countries["rows"][0]


def test_unknown_sorts_are_refused(store: Store, shop: str) -> None:
    with pytest.raises(InvalidQuery):
        reports.breakdown(store, query(shop, **MARCH), "pages", sort="revenue")
    with pytest.raises(InvalidQuery):
        reports.timeseries(store, query(shop, **MARCH), "revenue")
