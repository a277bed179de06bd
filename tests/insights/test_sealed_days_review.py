"""Sealed day totals and session days, reviewed against the unsealed reports: for any range,
zone, interval, comparison, filter or later change (late events, an erasure, a retention
cut), a report says with its days sealed exactly what it says with nothing sealed."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gatrix.clickhouse.store import Store
from gatrix.ingest.pipeline import ch_time
from gatrix.insights import reports, sealed
from gatrix.insights.erase import erase_person
from gatrix.insights.query import QueryParams, build_query
from gatrix.retention import cut_for, expire
from tests.factory import DEFAULTS, events

FIRST = datetime(2026, 3, 1, tzinfo=UTC)
DAYS = 19  # 1–19 March
NOW = datetime(2026, 3, 18, 14, 25, tzinfo=UTC)
REFERRERS = ["", "Google", "Bing", "X"]
COUNTRIES = ["US", "KR", "DE", "FR"]
SESSION_BREAKDOWNS = ("referrers", "countries", "browsers", "entry_pages", "exit_pages")
FILTERS = {
    "week, a session filter": ["country:is:KR"],
    "week, a page filter": ["page:is:/p1"],
    "week, an event filter": ["name:is:signup"],
}
MARKS = ("session_hours", "session_days", "page_days", "total_days")


def spread(store: Store, project: str, profiles: str = "none", scale: int = 1) -> None:
    """Sessions on every day of 1–19 March at changing hours and minutes, some of them
    across midnight, with page views, custom events and purchases. `profiles`: "none"
    (nobody signed in, nothing linked), "linked" (one person signed in on two devices) or
    "unlinked" (a profile id on events whose device is the profile: no link made)."""
    specs: list[dict[str, Any]] = []
    for d in range(DAYS):
        day = FIRST + timedelta(days=d)
        for n in range(3 + d % 4 + scale - 1):
            sid = f"s{d}-{n}"
            if n == 0:
                start = day + timedelta(hours=23, minutes=40 + d % 7)  # runs into the next day
            else:
                start = day + timedelta(hours=(5 * n + 3 * d) % 23, minutes=(7 * n + d) % 60)
            device = f"d{(d * 3 + n) % 17}"
            profile = ""
            if profiles == "linked" and device in ("d1", "d2"):
                profile = "alice"
            elif profiles == "unlinked" and device == "d4":
                profile, device = "bob", "bob"
            common = {
                "session_id": sid,
                "device_id": device,
                "profile_id": profile,
                "country": COUNTRIES[(d + n) % 4],
                "browser": "Firefox" if (d + n) % 3 == 0 else "Chrome",
            }
            for k in range(1 + (d + n) % 4):
                specs.append(
                    {
                        **common,
                        "at": start + timedelta(minutes=13 * k),
                        "path": f"/p{(d + n + k) % 7}",
                        "referrer_name": REFERRERS[(d + n) % 4] if k == 0 else "",
                    }
                )
            if (d + n) % 3 == 1:
                specs.append({**common, "at": start + timedelta(minutes=5), "name": "signup"})
            if (d + n) % 5 == 2:
                specs.append(
                    {**common, "at": start + timedelta(minutes=6), "name": "buy", "revenue": 4.5}
                )
    events(store, project, specs)


def query(project: str, zone: str = "UTC", now: datetime = NOW, **params: Any) -> Any:
    return build_query(project, zone, QueryParams(**params), now)


def queries(project: str) -> dict[str, Any]:
    """Ranges that start and end at midnight, mid-day on a whole hour, mid-hour; inside one
    day; ending now; in zones other than UTC (whole and half hours off it)."""
    out = {
        "week": query(project, range="custom", start="2026-03-02", end="2026-03-08"),
        "mid-day": query(
            project,
            range="custom",
            start="2026-03-03T05:00:00Z",
            end="2026-03-09T17:00:00Z",
        ),
        "mid-hour": query(
            project,
            range="custom",
            start="2026-03-03T05:17:00Z",
            end="2026-03-09T17:43:00Z",
        ),
        "one day, hours": query(
            project,
            range="custom",
            start="2026-03-05T02:00:00Z",
            end="2026-03-05T20:00:00Z",
        ),
        "one day, minutes": query(
            project,
            range="custom",
            start="2026-03-05T02:10:00Z",
            end="2026-03-05T20:50:00Z",
        ),
        "7d": query(project, range="7d"),
        "30d": query(project, range="30d"),
        "yesterday": query(project, range="yesterday"),
        "lastmonth": query(project, range="lastmonth", now=datetime(2026, 4, 2, 9, tzinfo=UTC)),
        "all": query(project, range="all"),
    }
    for zone in ("Asia/Seoul", "America/New_York", "Asia/Kolkata"):
        out[f"7d {zone}"] = query(project, zone, range="7d")
        out[f"week {zone}"] = query(
            project, zone, range="custom", start="2026-03-02", end="2026-03-08"
        )
    for name, filters in FILTERS.items():  # a filter reads the raw rows, sealed or not
        out[name] = query(
            project, range="custom", start="2026-03-02", end="2026-03-08", filters=filters
        )
    return out


CORE = ("week", "mid-hour", "7d", "7d Asia/Seoul")


def battery(store: Store, project: str, only: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every report the sealed rollups stand in for, over every range of `queries` (or
    `only` those named)."""
    out: dict[str, Any] = {}
    for name, q in queries(project).items():
        if only and name not in only:
            continue
        for compare in ("previous", "year"):
            out[f"{name} metrics {compare}"] = reports.metrics(
                store, build_like(q, compare=compare)
            )
        for interval in ("hour", "day", "week", "month"):
            by = build_like(q, interval=interval, compare="previous")
            for metric in ("visitors", "pageviews", "sessions"):
                out[f"{name} {metric} by {interval}"] = reports.timeseries(store, by, metric)
        for dimension in SESSION_BREAKDOWNS:
            out[f"{name} {dimension}"] = reports.breakdown(store, q, dimension, 50)
        out[f"{name} countries by bounce"] = reports.breakdown(
            store, q, "countries", 50, sort="bounce_rate"
        )
        for sort in ("pageviews", "visitors"):
            out[f"{name} pages {sort}"] = [
                reports.breakdown(store, q, "pages", 3, page, sort=sort) for page in (1, 2, 3)
            ]
        out[f"{name} events"] = reports.breakdown(store, q, "events", 50)
    return out


def build_like(q: Any, **changes: Any) -> Any:
    return replace(q, **changes)


def unseal(store: Store) -> None:
    for marks in MARKS:
        store.command(f"TRUNCATE TABLE {store.db}.{marks}")


def seal_all(store: Store) -> int:
    built = 0
    while count := sealed.seal(store, margin=timedelta(0)):
        built += count
    return built


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return [k for k in a if a[k] != b.get(k)]


def sealed_units(store: Store, project: str) -> dict[str, int]:
    return {
        marks: store.query_rows(
            f"SELECT count() FROM (SELECT DISTINCT * EXCEPT built_at FROM {store.db}.{marks} "
            "WHERE project_id = {p:String})",
            {"p": project},
        )[0][0]
        for marks in MARKS
    }


def new_project() -> str:
    return f"rev-{uuid.uuid4().hex[:8]}"


# --- sealed against unsealed, over many ranges


@pytest.mark.parametrize("profiles", ["none", "unlinked", "linked"])
def test_every_range_answers_alike_sealed_and_unsealed(scratch_store: Store, profiles: str) -> None:
    """Every range without profiles; the core ones with profiles, which change only the key
    a visitor is counted by (a linked project counts its visitors through the links, not
    the sealed sketches), so each kind of range edge is covered once without them. A
    battery is a few hundred reports."""
    store = scratch_store
    project = new_project()
    spread(store, project, profiles)
    only = () if profiles == "none" else CORE
    raw = battery(store, project, only)
    assert raw["week metrics previous"]["sessions"] > 0
    assert seal_all(store) > 0
    units = sealed_units(store, project)
    assert units["total_days"] == DAYS + 1 and units["session_days"] == DAYS
    got = battery(store, project, only)
    assert differences(raw, got) == []
    unseal(store)
    assert differences(battery(store, project, CORE), raw) == []


# --- changes after the days were sealed


def continued(store: Store, project: str, session_id: str, device: str, start: datetime) -> None:
    """A late page view of a session that began at `start`, one hour past the next midnight:
    as the ingest sends it, with the session's own start (its start's day is touched, the
    event's hour is on the next day)."""
    at = start.replace(hour=0, minute=0) + timedelta(days=1, hours=1)
    row = {
        **DEFAULTS,
        "id": str(uuid.uuid4()),
        "project_id": project,
        "session_id": session_id,
        "device_id": device,
        "path": "/continued",
        "created_at": ch_time(int(at.timestamp() * 1000)),
        "received_at": ch_time(int(at.timestamp() * 1000)),
        "session_start": ch_time(int(start.timestamp() * 1000)),
    }
    store.insert_json_rows("events", [json.dumps(row).encode()], f"late-{uuid.uuid4()}")


def late_events() -> list[dict[str, Any]]:
    """A new session on a sealed day and a session of one custom event."""
    day = FIRST + timedelta(days=4)
    return [
        {
            "at": day + timedelta(hours=7, minutes=31),
            "session_id": "late",
            "device_id": "new",
            "country": "JP",
            "path": "/late",
            "referrer_name": "Late",
        },
        {
            "at": day + timedelta(hours=7, minutes=40),
            "session_id": "late",
            "device_id": "new",
            "country": "JP",
            "path": "/late2",
        },
        {
            "at": day + timedelta(hours=9, minutes=2),
            "session_id": "late-custom",
            "device_id": "other",
            "name": "ping",
        },
    ]


def test_late_events_into_sealed_days_count_at_once(scratch_store: Store) -> None:
    store = scratch_store
    project = new_project()
    spread(store, project)
    seal_all(store)
    before = {"week metrics previous": reports.metrics(store, queries(project)["week"])}
    events(store, project, late_events())
    # the session of the 4th that began at 23:43 (on device d9) goes on at 01:00 on the 5th
    continued(store, project, "s3-0", "d9", FIRST + timedelta(days=3, hours=23, minutes=43))
    after = battery(store, project, CORE)
    week = after["week metrics previous"]
    assert week["sessions"] == before["week metrics previous"]["sessions"] + 2
    assert week["pageviews"] == before["week metrics previous"]["pageviews"] + 3
    assert week["events"] == before["week metrics previous"]["events"] + 1
    assert week["visitors"] == before["week metrics previous"]["visitors"] + 2
    countries = {r["value"]: r["sessions"] for r in after["week countries"]["rows"]}
    assert countries["JP"] == 1
    # the session of the sealed 4th now leaves from the page it saw on the 5th
    assert "/continued" in {r["value"] for r in after["week exit_pages"]["rows"]}
    unseal(store)
    assert differences(after, battery(store, project, CORE)) == []
    seal_all(store)
    assert differences(after, battery(store, project, CORE)) == []


@pytest.mark.parametrize(
    ("profiles", "person"), [("linked", "alice"), ("unlinked", "bob")], ids=["linked", "unlinked"]
)
def test_erasing_a_person_after_sealing(scratch_store: Store, profiles: str, person: str) -> None:
    store = scratch_store
    project = new_project()
    spread(store, project, profiles)
    seal_all(store)
    before = reports.metrics(store, queries(project)["week"])
    assert erase_person(store, project, person) is not None
    after = battery(store, project, CORE)
    assert after["week metrics previous"]["sessions"] < before["sessions"]
    unseal(store)
    assert differences(after, battery(store, project, CORE)) == []
    seal_all(store)
    assert differences(after, battery(store, project, CORE)) == []


@pytest.mark.parametrize(
    "cut",
    [
        datetime(2026, 3, 6, 5, 30, tzinfo=UTC),  # inside an hour inside a sealed day
        datetime(2026, 3, 6, tzinfo=UTC),  # midnight: a UTC project's cut
        cut_for(datetime(2026, 3, 13, 3, tzinfo=UTC), 7, "America/New_York"),  # off UTC
    ],
    ids=["mid-hour", "midnight", "New York"],
)
def test_a_retention_cut_after_sealing(scratch_store: Store, cut: datetime) -> None:
    store = scratch_store
    project = new_project()
    spread(store, project)
    seal_all(store)
    done = asyncio.run(expire(store, project, cut))
    assert "total_daily" in done.tables and "session_daily" in done.tables
    after = battery(store, project, CORE)
    unseal(store)
    assert differences(after, battery(store, project, CORE)) == []
    seal_all(store)
    assert differences(after, battery(store, project, CORE)) == []


def test_two_projects_keep_their_own_sealed_days(scratch_store: Store) -> None:
    store = scratch_store
    one, two = new_project(), new_project()
    spread(store, one)
    spread(store, two, scale=3)
    empty = new_project()
    raw = {p: battery(store, p, ("week", "7d")) for p in (one, two, empty)}
    assert raw[one]["week metrics previous"] != raw[two]["week metrics previous"]
    assert raw[empty]["week metrics previous"]["visitors"] == 0
    seal_all(store)
    for p in (one, two, empty):
        assert differences(raw[p], battery(store, p, ("week", "7d"))) == []
    # a late event and an erasure in one project leave the other's sealed days as they are
    events(store, two, late_events())
    asyncio.run(expire(store, two, datetime(2026, 3, 4, 6, tzinfo=UTC)))
    assert differences(raw[one], battery(store, one, ("week", "7d"))) == []
    assert sealed_units(store, one)["total_days"] == DAYS + 1


def test_the_sealed_days_stand_for_their_hours_and_filters_pass_them_by(
    scratch_store: Store,
) -> None:
    """Where each report reads: with the hourly rows and session rows of the sealed days gone
    and nothing touched, the unfiltered KPIs (both periods), the UTC daily, weekly and
    monthly visitors and the session breakdowns still answer from the sealed days; a zone
    off UTC reads the hours, and a filter reads the raw rows."""
    store = scratch_store
    project = new_project()
    spread(store, project)
    qs = queries(project)
    week, seoul, kr = qs["week"], qs["week Asia/Seoul"], qs["week, a session filter"]
    prev = build_like(week, compare="previous")
    by = {i: build_like(week, interval=i) for i in ("day", "week", "month")}

    def totals(q: Any) -> dict[str, Any]:
        got = reports.metrics(store, q)
        return {
            period: {k: kpis[k] for k in ("visitors", "pageviews", "events")}
            for period, kpis in (("current", got), ("previous", got["previous"]))
        }

    def read() -> dict[str, Any]:
        return {
            "metrics": totals(prev),
            **{i: reports.timeseries(store, q, "visitors") for i, q in by.items()},
            "countries": reports.breakdown(store, week, "countries", 50),
            "seoul": reports.timeseries(store, build_like(seoul, interval="day"), "visitors"),
            "filtered": totals(build_like(kr, compare="previous")),
        }

    raw = read()
    seal_all(store)
    for table in ("hourly", "session_hourly"):  # deletes insert nothing: nothing touched
        store.command(
            f"DELETE FROM {store.db}.{table} WHERE project_id = {{p:String}}", {"p": project}
        )
    got = read()
    for key in ("metrics", "day", "week", "month", "countries", "filtered"):
        assert got[key] == raw[key], key
    # the hours of Seoul's days: none left; the days themselves are not Seoul's
    assert {p["value"] for p in got["seoul"]["points"]} == {0}
    assert any(p["value"] for p in raw["seoul"]["points"])
    # the rollups' own rows gone, untouched: only the unfiltered reports lose them
    for table in ("total_daily", "session_daily"):
        store.command(
            f"DELETE FROM {store.db}.{table} WHERE project_id = {{p:String}}", {"p": project}
        )
    gone = read()
    assert gone["filtered"] == raw["filtered"]
    assert gone["metrics"]["current"]["visitors"] == gone["metrics"]["previous"]["visitors"] == 0
    assert gone["countries"]["rows"] == []
