"""Sealed session hours: the rollup answers exactly what `sessions` answers, is read for the
hours it sealed, and gives way at once to a late session, an erasure or a touch."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gatrix.clickhouse.store import Store
from gatrix.insights import reports, sealed
from gatrix.insights.erase import erase_person
from gatrix.insights.query import QueryParams, build_query
from gatrix.retention import expire
from tests.factory import events
from tools.bench.insights import RecordingStore

NOW = datetime(2026, 3, 9, 12, tzinfo=UTC)
DAY = datetime(2026, 3, 2, tzinfo=UTC)
REFERRERS = ["", "Google", "Bing", "X"]
COUNTRIES = ["US", "KR", "DE"]
SESSION_BREAKDOWNS = ("referrers", "entry_pages", "exit_pages", "countries", "browsers")
# units the seeded data seals: 10 session hours, and its one day of sessions, pages and totals
SEALED = 13


def seeded(store: Store, signed_in: bool = True) -> str:
    """40 sessions over 10 hours of one day: 1–4 page views each, a few custom events and
    purchases, one person signed in on two of them (unless not `signed_in`: then nobody is
    linked, and the reports read the hourly rollups)."""
    project = f"seal-{uuid.uuid4().hex[:8]}"
    specs: list[dict[str, Any]] = []
    for n in range(40):
        start = DAY + timedelta(hours=n % 10, minutes=n)
        common = {
            "session_id": f"s{n}",
            "device_id": f"d{n % 25}",
            "profile_id": "alice" if signed_in and n in (3, 17) else "",
            "country": COUNTRIES[n % 3],
            "browser": "Firefox" if n % 4 == 0 else "Chrome",
        }
        for k in range(1 + n % 4):
            specs.append(
                {
                    **common,
                    "at": start + timedelta(minutes=2 * k),
                    "path": f"/p{(n + k) % 6}",
                    "referrer_name": REFERRERS[n % 4] if k == 0 else "",
                }
            )
        if n % 5 == 0:
            specs.append({**common, "at": start + timedelta(minutes=9), "name": "signup"})
        if n % 7 == 0:
            specs.append(
                {**common, "at": start + timedelta(minutes=11), "name": "buy", "revenue": 9.5}
            )
    events(store, project, specs)
    return project


def week(project: str, **extra: str) -> Any:
    params = QueryParams(range="custom", start="2026-03-01", end="2026-03-07", **extra)
    return build_query(project, "UTC", params, NOW)


def answers(store: Store, project: str) -> dict[str, Any]:
    q = week(project, compare="previous")
    out: dict[str, Any] = {"metrics": reports.metrics(store, q)}
    for dimension in SESSION_BREAKDOWNS:
        for sort in ("visitors", "bounce_rate", "revenue"):
            out[f"{dimension}/{sort}"] = reports.breakdown(store, q, dimension, 50, sort=sort)
    for sort in ("pageviews", "visitors"):
        out[f"pages/{sort}"] = reports.breakdown(store, q, "pages", 50, sort=sort)
    for interval in ("hour", "day", "week"):
        by = week(project, interval=interval)
        out[f"visitors by {interval}"] = reports.timeseries(store, by, "visitors")
    return out


def unsealed(store: Store, project: str) -> dict[str, Any]:
    """What the reports say with every sealed unit set aside (read from the hourly tables)."""
    for marks in ("session_hours", "session_days", "page_days", "total_days"):
        store.command(f"TRUNCATE TABLE {store.db}.{marks}")
    return answers(store, project)


def seal_all(store: Store) -> int:
    # no margin: this process made every insert, and they are done
    built = 0
    while count := sealed.seal(store, margin=timedelta(0)):
        built += count
    return built


def sealed_hours(store: Store, project: str) -> int:
    return store.query_rows(
        f"SELECT uniqExact(hour) FROM {store.db}.session_hours WHERE project_id = {{p:String}}",
        {"p": project},
    )[0][0]


@pytest.mark.parametrize("signed_in", [True, False], ids=["linked", "nobody linked"])
def test_sealed_hours_answer_exactly_what_the_sessions_do(
    scratch_store: Store, signed_in: bool
) -> None:
    store = scratch_store
    project = seeded(store, signed_in)
    raw = answers(store, project)
    assert raw["metrics"]["sessions"] == 40 and raw["metrics"]["revenue"] == 57.0
    assert seal_all(store) == SEALED
    assert sealed_hours(store, project) == 10
    assert answers(store, project) == raw
    assert seal_all(store) == 0  # nothing touched since: nothing to build again


def test_a_sealed_hour_is_read_from_the_rollup_until_touched(scratch_store: Store) -> None:
    store = scratch_store
    project = seeded(store)
    seal_all(store)
    # a delete inserts nothing, so it does not reopen the hour: the rollup still answers
    store.command(
        f"DELETE FROM {store.db}.sessions WHERE project_id = {{p:String}} AND session_id = 's0'",
        {"p": project},
    )
    assert reports.metrics(store, week(project))["sessions"] == 40
    # whoever deletes touches the hour; it is read from `sessions` from then on
    sealed.touch(store, project, [DAY])
    assert reports.metrics(store, week(project))["sessions"] == 39
    assert seal_all(store) == 2  # the hour and its day of sessions
    assert reports.metrics(store, week(project))["sessions"] == 39


def test_a_late_session_in_a_sealed_hour_counts_at_once(scratch_store: Store) -> None:
    store = scratch_store
    project = seeded(store)
    seal_all(store)
    before = answers(store, project)
    events(
        store,
        project,
        [{"at": DAY + timedelta(hours=3, minutes=30), "session_id": "late", "country": "FR"}],
    )
    after = answers(store, project)
    assert after["metrics"]["sessions"] == before["metrics"]["sessions"] + 1
    countries = {r["value"]: r["sessions"] for r in after["countries/visitors"]["rows"]}
    assert countries["FR"] == 1
    # the hour the late session touched, and its day of sessions, pages and totals
    assert seal_all(store) == 4
    assert answers(store, project) == after


def test_erasing_a_person_reopens_their_hours(scratch_store: Store) -> None:
    store = scratch_store
    project = seeded(store)
    seal_all(store)
    assert erase_person(store, project, "alice") is not None
    now = answers(store, project)
    # her two sessions and session 28, on her device d3
    assert now["metrics"]["sessions"] == 37
    assert unsealed(store, project) == now
    seal_all(store)
    assert answers(store, project) == now


def test_filtered_and_unaligned_ranges_read_the_sessions(scratch_store: Store) -> None:
    store = scratch_store
    project = seeded(store)
    filtered = week(project, filters=["country:is:KR"])  # type: ignore[arg-type]
    before = reports.metrics(store, filtered)
    seal_all(store)
    assert reports.metrics(store, filtered) == before


def test_one_session_value_filter_reads_its_sealed_rows_and_answers_alike(
    scratch_store: Store,
) -> None:
    """KPIs filtered by one session dimension `is` one value count the sessions of sealed
    hours from that value's sealed rows: the same answers as from `sessions`, for entry and
    exit pages, sources (the empty one too), countries, browsers and a value nobody has.
    Other operators and a second filter still read `sessions`."""
    store = scratch_store
    project = seeded(store)
    by_value = [
        ["countries:is:KR"],
        ["country:is:US"],
        ["referrers:is:"],
        ["source:is:Google"],
        ["entry_page:is:/p1"],
        ["exit_pages:is:/p3"],
        ["browsers:is:Firefox"],
        ["countries:is:ZZ"],
    ]
    others = [["country:contains:K"], ["country:is_not:KR"], ["country:is:KR", "browser:is:Chrome"]]

    def kpis(target: Store) -> list[dict[str, Any]]:
        return [
            reports.metrics(target, week(project, compare="previous", filters=f))  # type: ignore[arg-type]
            for f in (*by_value, *others)
        ]

    before = kpis(store)
    assert before[0]["sessions"] > 0 and before[-1]["sessions"] > 0
    assert seal_all(store) == SEALED
    recording = RecordingStore(store)
    assert kpis(recording) == before
    statements = [sql for sql, _ in recording.statements if "period" in sql]
    assert len(statements) == len(by_value) + len(others)
    assert all("session_hourly" in sql for sql in statements[: len(by_value)])
    assert not any("session_hourly" in sql for sql in statements[len(by_value) :])


def test_the_previous_period_of_a_range_ending_now_counts_its_minutes(
    scratch_store: Store,
) -> None:
    store = scratch_store
    project = seeded(store)
    now = DAY + timedelta(days=7, hours=5, minutes=30)
    q = build_query(project, "UTC", QueryParams(range="7d", compare="previous"), now)
    previous = q.comparison()
    assert previous is not None
    span = previous.range
    # it ends at 05:30 of the seeded day: whole hours, then half of the sixth
    assert (span.end.hour, span.end.minute) == (5, 30) and span.end.date() == DAY.date()
    expected = store.query_dicts(
        f"SELECT uniqExact(device_id) AS visitors, countIf(name = 'screen_view') AS pageviews, "
        f"countIf(name != 'screen_view') AS events FROM {store.db}.events "
        "WHERE project_id = {p:String} AND created_at >= {s:DateTime64(3)} "
        "AND created_at < {e:DateTime64(3)}",
        {"p": project, "s": span.start, "e": span.end},
    )[0]
    started = store.query_rows(
        f"SELECT uniqExact(session_id) FROM {store.db}.events WHERE project_id = {{p:String}} "
        "AND session_start >= {s:DateTime64(3)} AND session_start < {e:DateTime64(3)}",
        {"p": project, "s": span.start, "e": span.end},
    )[0][0]
    assert started == 23  # 20 sessions in hours 0–4, and 05:05, 05:15, 05:25 (not 05:35)
    for _ in ("raw", "sealed"):
        got = reports.metrics(store, q)["previous"]
        assert {k: got[k] for k in expected} == expected
        assert got["sessions"] == started
        seal_all(store)


def test_pages_paged_from_the_rollup_match_one_long_page(scratch_store: Store) -> None:
    store = scratch_store
    project = seeded(store, signed_in=False)
    q = week(project)
    for sort in ("pageviews", "visitors"):
        whole = reports.breakdown(store, q, "pages", 10, sort=sort)["rows"]
        assert len(whole) == 6
        paged = [
            row
            for page in (1, 2, 3)
            for row in reports.breakdown(store, q, "pages", 2, page, sort=sort)["rows"]
        ]
        assert paged == whole


def test_a_sealed_page_day_is_read_from_its_rollup_until_touched(scratch_store: Store) -> None:
    store = scratch_store
    project = seeded(store, signed_in=False)
    seal_all(store)

    def top_page() -> int:
        return reports.breakdown(store, week(project), "pages", 1)["rows"][0]["pageviews"]

    before = top_page()
    store.command(  # no insert: the day stays sealed
        f"DELETE FROM {store.db}.page_hourly WHERE project_id = {{p:String}}", {"p": project}
    )
    assert top_page() == before
    sealed.touch_days(store, project, [DAY + timedelta(hours=3)])
    assert reports.breakdown(store, week(project), "pages", 1)["rows"] == []


def test_a_sealed_day_of_totals_is_read_from_its_rollup_until_touched(
    scratch_store: Store,
) -> None:
    store = scratch_store
    project = seeded(store, signed_in=False)
    raw = reports.metrics(store, week(project))
    assert seal_all(store) == SEALED
    built = store.query_rows(
        f"SELECT day, pageviews FROM {store.db}.total_daily WHERE project_id = {{p:String}}",
        {"p": project},
    )
    assert built == [(DAY.date(), raw["pageviews"])]
    store.command(  # no insert: the day stays sealed, and the totals come from it
        f"DELETE FROM {store.db}.hourly WHERE project_id = {{p:String}}", {"p": project}
    )
    got = reports.metrics(store, week(project))
    assert {k: got[k] for k in ("visitors", "pageviews", "events")} == {
        k: raw[k] for k in ("visitors", "pageviews", "events")
    }
    daily = reports.timeseries(store, week(project, interval="day"), "visitors")["points"]
    assert daily[1] == {"bucket": DAY.isoformat(), "value": raw["visitors"]}
    sealed.touch_days(store, project, [DAY + timedelta(hours=3)])
    got = reports.metrics(store, week(project))  # read by the hour: nothing left there
    assert (got["visitors"], got["pageviews"], got["events"]) == (0, 0, 0)
    daily = reports.timeseries(store, week(project, interval="day"), "visitors")["points"]
    assert daily[1]["value"] == 0


def test_a_retention_cut_inside_a_sealed_day_keeps_the_reports_consistent(
    scratch_store: Store,
) -> None:
    store = scratch_store
    project = seeded(store, signed_in=False)
    seal_all(store)
    cut = DAY + timedelta(hours=5)
    done = asyncio.run(expire(store, project, cut))
    assert "page_hourly" in done.tables  # the sealed day itself stays, touched
    after = answers(store, project)
    assert after["metrics"]["pageviews"] < 100
    assert unsealed(store, project) == after
    seal_all(store)
    assert answers(store, project) == after


def test_a_sealed_session_day_answers_for_its_hours(scratch_store: Store) -> None:
    store = scratch_store
    project = seeded(store, signed_in=False)
    raw = answers(store, project)

    def countries() -> Any:
        return reports.breakdown(store, week(project), "countries", 10)["rows"]

    seal_all(store)
    assert store.query_rows(
        f"SELECT count() FROM {store.db}.session_daily WHERE project_id = {{p:String}} "
        "AND dimension = 'country'",
        {"p": project},
    ) == [(3,)]
    store.command(  # the hours' rows gone, nothing touched: the day still answers
        f"DELETE FROM {store.db}.session_hourly WHERE project_id = {{p:String}}", {"p": project}
    )
    assert countries() == raw["countries/visitors"]["rows"]
    store.command(f"TRUNCATE TABLE {store.db}.session_days")  # the day unsealed: by the hour
    assert countries() == []
    hours = [DAY + timedelta(hours=h) for h in range(10)]
    sealed.touch(store, project, hours)  # the hours touched: read from `sessions`
    assert countries() == raw["countries/visitors"]["rows"]
