"""Retention against chDB with hand-built events and a fixed `now`: the cut rule, what is
deleted and what stays (events, sessions, rollups; people untouched), reports over the time
that remains unchanged, other projects untouched; and the stored-data figures."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from gatrix.clickhouse.footprint import footprint
from gatrix.clickhouse.store import Store
from gatrix.insights import breakdowns, reports
from gatrix.insights.query import QueryParams, build_query
from gatrix.meta import keeping, models
from gatrix.meta.projects import create_project
from gatrix.retention import cut_for, expire_all

from ..factory import events

NOW = datetime(2026, 3, 10, 14, 37, tzinfo=UTC)
TZ = "Europe/Berlin"  # UTC+1 in early March
CUT = datetime(2026, 3, 6, 23, 0, tzinfo=UTC)  # Mar 7 00:00 in Berlin: 3 days before Mar 10
ROLLUPS = ("hourly", "page_hourly", "event_hourly", "visitor_hourly")


@pytest.mark.parametrize(
    ("now", "days", "timezone", "cut"),
    [
        (NOW, 3, TZ, CUT),
        (NOW, 1, "UTC", datetime(2026, 3, 9, tzinfo=UTC)),
        # local midnight is 18:30 UTC: moved back to the whole UTC hour the rollups use
        (NOW, 2, "Asia/Kolkata", datetime(2026, 3, 7, 18, tzinfo=UTC)),
        # a local day after "today" in UTC: 23:30 UTC on Mar 10 is Mar 11 in Seoul
        (
            datetime(2026, 3, 10, 23, 30, tzinfo=UTC),
            1,
            "Asia/Seoul",
            datetime(2026, 3, 9, 15, tzinfo=UTC),
        ),
        # across the change to summer time: midnight stays local midnight (UTC+2 after)
        (datetime(2026, 4, 2, 8, tzinfo=UTC), 7, TZ, datetime(2026, 3, 25, 23, tzinfo=UTC)),
    ],
)
def test_the_cut_is_local_midnight_on_a_whole_utc_hour(
    now: datetime, days: int, timezone: str, cut: datetime
) -> None:
    assert cut_for(now, days, timezone) == cut


def at(delta: timedelta) -> datetime:
    return CUT + delta


def traffic() -> list[dict[str, Any]]:
    """Before the cut: visitor A (Mar 4, a page view and a download) and B (ends 1 ms before the cut). Across it: S, whose
    session began 10 minutes before the cut (KR, with a purchase after it). On the cut: C.
    After it: D (with a signup and a profile id) and E."""
    s = {"device_id": "S", "session_id": "s1", "country": "KR"}
    return [
        {"at": datetime(2026, 3, 4, 10, tzinfo=UTC), "device_id": "A", "session_id": "a1"},
        {
            "at": datetime(2026, 3, 4, 10, 5, tzinfo=UTC),
            "device_id": "A",
            "session_id": "a1",
            "name": "download",
        },
        {"at": at(-timedelta(milliseconds=1)), "device_id": "B", "session_id": "b1"},
        {**s, "at": at(-timedelta(minutes=10)), "path": "/"},
        {**s, "at": at(timedelta(minutes=10)), "path": "/x"},
        {**s, "at": at(timedelta(minutes=20)), "name": "purchase", "revenue": 12.5},
        {"at": CUT, "device_id": "C", "session_id": "c1", "path": "/on-the-cut"},
        {"at": datetime(2026, 3, 8, 12, tzinfo=UTC), "device_id": "D", "session_id": "d1"},
        {
            "at": datetime(2026, 3, 8, 12, 5, tzinfo=UTC),
            "device_id": "D",
            "session_id": "d1",
            "name": "signup",
            "profile_id": "user-d",
        },
        {"at": datetime(2026, 3, 10, 9, tzinfo=UTC), "device_id": "E", "session_id": "e1"},
    ]


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    # a metadata database of the test's own: a retention pass visits every project in it
    engine = models.make_engine(f"sqlite:///{tmp_path / 'meta.db'}")
    models.migrate(engine)
    return engine


def counts(store: Store, project: str) -> dict[str, int]:
    out = {}
    for table in ("events", "sessions", *ROLLUPS, "profiles", "identity_links"):
        rows = store.query_rows(
            f"SELECT count() FROM {store.db}.{table} WHERE project_id = {{p:String}}",
            {"p": project},
        )
        out[table] = rows[0][0]
    return out


def older(store: Store, project: str, table: str, column: str) -> int:
    return store.query_rows(
        f"SELECT count() FROM {store.db}.{table} WHERE project_id = {{p:String}}"
        f" AND {column} < {{cut:DateTime64(3, 'UTC')}}",
        {"p": project, "cut": CUT},
    )[0][0]


def reports_after_the_cut(store: Store, project: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, filters in (("all", []), ("kr", ["country:is:KR"]), ("buy", ["name:is:purchase"])):
        params = QueryParams(range="custom", start="2026-03-07", end="2026-03-10", filters=filters)
        q = build_query(project, TZ, params, NOW)
        assert q.range.start == CUT
        out[label] = reports.metrics(store, q)
        out[f"{label}-series"] = reports.timeseries(store, q, "pageviews")["points"]
        out[f"{label}-pages"] = breakdowns.breakdown(store, q, "pages")["rows"]
    return out


def test_retention_deletes_only_what_is_older_than_the_cut(store: Store, engine: Engine) -> None:
    kept = create_project(engine, f"keep {uuid.uuid4().hex[:6]}", timezone=TZ).project_id
    cut = create_project(engine, f"cut {uuid.uuid4().hex[:6]}", timezone=TZ).project_id
    keeping.set_retention(engine, cut, 3)
    for project in (kept, cut):
        events(store, project, traffic())
        profile = {"project_id": project, "profile_id": "user-a", "email": "a@example.test"}
        profile["updated_at"] = "2026-03-01 00:00:00.000"
        store.insert_json_rows("profiles", [json.dumps(profile).encode()], uuid.uuid4().hex)
    before = reports_after_the_cut(store, cut)
    untouched = counts(store, kept)
    assert older(store, cut, "events", "created_at") == 4

    done = asyncio.run(expire_all(engine, store, NOW))

    assert [(r.project_id, r.cut) for r in done] == [(cut, CUT)]
    # and the sealing job's records of when the cut hours and days last got rows (nothing
    # was sealed here, so its rollups hold nothing to cut)
    touches = {"session_touches", "session_day_touches", "page_touches", "total_touches"}
    tables = {"events", "sessions", "visitor_sessions", *ROLLUPS, *touches}
    assert set(done[0].tables) == tables and done[0].unfinished == 0
    after = counts(store, cut)
    # A's and B's events and the 22:50 page view of S go; the event on the cut stays
    assert after["events"] == 6 and older(store, cut, "events", "created_at") == 0
    assert store.query_rows(
        f"SELECT path FROM {store.db}.events WHERE project_id = {{p:String}}"
        " AND created_at = {cut:DateTime64(3, 'UTC')}",
        {"p": cut, "cut": CUT},
    ) == [("/on-the-cut",)]
    # sessions a1 and b1 go; s1 (still running at the cut) keeps its row
    sessions = store.query_rows(
        f"SELECT DISTINCT session_id FROM {store.db}.sessions WHERE project_id = {{p:String}}"
        " ORDER BY session_id",
        {"p": cut},
    )
    assert sessions == [("c1",), ("d1",), ("e1",), ("s1",)]
    for table in ROLLUPS:
        assert older(store, cut, table, "hour") == 0
    # people are not events: profiles and identity links stay
    assert (after["profiles"], after["identity_links"]) == (1, 1)
    # every report over the time that remains reads as before (rollups and raw events alike)
    assert reports_after_the_cut(store, cut) == before
    # retention 0 keeps everything; the other project's rows were not touched
    assert counts(store, kept) == untouched
    # a second pass finds nothing older and starts no mutation
    again = asyncio.run(expire_all(engine, store, NOW))
    assert [r.tables for r in again] == [[]]


def test_a_retention_of_zero_keeps_everything(store: Store, engine: Engine) -> None:
    project = create_project(engine, f"zero {uuid.uuid4().hex[:6]}", timezone="UTC").project_id
    keeping.set_retention(engine, project, 5)
    keeping.set_retention(engine, project, 0)
    events(store, project, traffic())
    before = counts(store, project)
    assert asyncio.run(expire_all(engine, store, NOW + timedelta(days=400))) == []
    assert counts(store, project) == before


def test_stored_figures_are_the_projects_own(store: Store) -> None:
    project = f"foot-{uuid.uuid4().hex[:8]}"
    events(store, project, traffic())
    figures = footprint(store, project)
    assert (figures.events, figures.sessions, figures.profiles) == (10, 6, 0)
    assert figures.oldest == datetime(2026, 3, 4, 10, tzinfo=UTC)
    total = store.query_rows(
        "SELECT sum(bytes_on_disk) FROM system.parts WHERE database = {db:String} AND active",
        {"db": store.db},
    )[0][0]
    assert 0 < figures.approx_bytes < total
    nothing = footprint(store, f"none-{uuid.uuid4().hex[:8]}")
    assert (nothing.events, nothing.approx_bytes, nothing.oldest) == (0, 0, None)
