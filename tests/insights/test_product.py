"""Product analytics against chDB with hand-built events and known answers: funnel order,
window, property conditions and breakdowns that add up; retention cohorts in the project's
zone; paths with exits and entries; goals and breakdowns by a goal."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gatrix.buffer.flush import Flusher
from gatrix.buffer.queue import Buffer
from gatrix.clickhouse.store import Store
from gatrix.ingest.enrich.geo import GeoLookup
from gatrix.ingest.pipeline import Context
from gatrix.ingest.salts import SaltBook
from gatrix.insights import cohorts, funnels, goals, paths
from gatrix.insights.query import InvalidQuery, Query, QueryParams, build_query
from gatrix.insights.steps import InvalidStep, like, parse_step
from gatrix.meta.goals import GoalDef, InvalidGoal, parse_goal

from ..factory import events
from .test_identity import Sender, send

NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
T = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def q(project: str, tz: str = "UTC", **params: Any) -> Query:
    params = {"range": "custom", "start": "2026-03-01", "end": "2026-03-14", **params}
    return build_query(project, tz, QueryParams(**params), NOW)


def new_project() -> str:
    return f"prod-{uuid.uuid4().hex[:8]}"


def minutes(n: float) -> datetime:
    return T + timedelta(minutes=n)


def view(device: str, at: datetime, path: str, **extra: Any) -> dict[str, Any]:
    return {"at": at, "device_id": device, "session_id": f"s-{device}", "path": path, **extra}


def act(device: str, at: datetime, name: str, **extra: Any) -> dict[str, Any]:
    return {"at": at, "device_id": device, "session_id": f"s-{device}", "name": name, **extra}


STEPS = ["page:/", "page:/pricing", "event:purchase[plan=pro]"]


@pytest.fixture(scope="module")
def shop(store: Store) -> str:
    project = new_project()
    events(
        store,
        project,
        [
            # A: all three in order, 1 and 2 minutes apart
            view("A", minutes(0), "/", browser="Chrome"),
            view("A", minutes(1), "/pricing", browser="Chrome"),
            act("A", minutes(3), "purchase", properties={"plan": "pro"}, browser="Chrome"),
            # B: pricing before the home page: step 1 only
            view("B", minutes(0), "/pricing", browser="Chrome"),
            view("B", minutes(5), "/", browser="Chrome"),
            # C: pricing two hours after the home page
            view("C", minutes(0), "/", browser="Firefox"),
            view("C", minutes(120), "/pricing", browser="Firefox"),
            # D: a purchase of another plan does not pass step 3
            view("D", minutes(0), "/", browser="Firefox"),
            view("D", minutes(3), "/pricing", browser="Firefox"),
            act("D", minutes(4), "purchase", properties={"plan": "free"}, browser="Firefox"),
            # E: other pages between the steps are allowed
            view("E", minutes(0), "/", browser="Safari"),
            view("E", minutes(1), "/docs", browser="Safari"),
            view("E", minutes(2), "/blog", browser="Safari"),
            view("E", minutes(5), "/pricing", browser="Safari"),
        ],
    )
    return project


def counts(result: dict[str, Any]) -> list[int]:
    return [s["visitors"] for s in result["steps"]]


def run_funnel(store: Store, project: str, steps: list[str], window: str = "1h", **kw: Any) -> Any:
    parsed = [parse_step(s) for s in steps]
    return funnels.funnel(store, q(project), parsed, funnels.parse_window(window), **kw)


def test_funnel_counts_order_window_and_conditions(store: Store, shop: str) -> None:
    result = run_funnel(store, shop, STEPS)
    assert counts(result) == [5, 3, 1]
    first, second, third = result["steps"]
    assert second["conversion"] == 60.0 and second["dropped"] == 2
    assert third["conversion"] == 20.0 and third["conversion_from_previous"] == 33.3
    assert first["median_seconds_from_previous"] is None
    # A 60 s, D 180 s, E 300 s
    assert second["median_seconds_from_previous"] == 180.0
    assert third["median_seconds_from_previous"] == 120.0
    # a wider window lets C's late pricing view count
    assert counts(run_funnel(store, shop, STEPS, "3h")) == [5, 4, 1]
    # any plan: D converts too
    assert counts(run_funnel(store, shop, ["page:/", "page:/pricing", "event:purchase"])) == [
        5,
        3,
        2,
    ]
    # a glob step
    assert counts(run_funnel(store, shop, ["page:/", "page:/pri*"])) == [5, 3]


def test_funnel_agrees_with_windowfunnel(store: Store, shop: str) -> None:
    # ClickHouse's own function, for the deepest step: same visitors at each level
    rows = store.query_rows(
        f"SELECT level, count() FROM (SELECT device_id, windowFunnel(3600)(toDateTime(created_at),"
        f" name = 'screen_view' AND path = '/', name = 'screen_view' AND path = '/pricing') "
        f"AS level FROM {store.db}.events WHERE project_id = {{p:String}} GROUP BY device_id) "
        f"GROUP BY level",
        {"p": shop},
    )
    levels = dict(rows)
    reached = [sum(n for level, n in levels.items() if level >= k) for k in (1, 2)]
    assert counts(run_funnel(store, shop, ["page:/", "page:/pricing"])) == reached


def test_one_event_never_counts_for_two_steps(store: Store) -> None:
    project = new_project()
    events(store, project, [view("A", minutes(0), "/"), view("B", minutes(0), "/")])
    events(store, project, [view("B", minutes(1), "/")])
    assert counts(run_funnel(store, project, ["page:/", "page:/"])) == [2, 1]


def test_funnel_breakdowns_add_up_to_the_total(store: Store, shop: str) -> None:
    result = run_funnel(store, shop, STEPS, breakdown="browsers")
    rows = {r["value"]: counts(r) for r in result["breakdown"]["rows"]}
    assert rows == {"Chrome": [2, 1, 1], "Firefox": [2, 1, 0], "Safari": [1, 1, 0]}
    assert [sum(c[k] for c in rows.values()) for k in range(3)] == counts(result)
    top = run_funnel(store, shop, STEPS, breakdown="browser", limit=1)
    rows = {r["value"]: counts(r) for r in top["breakdown"]["rows"]}
    assert list(rows) == ["Chrome", "(other)"] and rows["(other)"] == [3, 2, 0]
    # an event dimension: the page of the step that began the attempt
    pages = run_funnel(store, shop, ["event:screen_view", "page:/pricing"], breakdown="pages")
    by_page = {r["value"]: counts(r) for r in pages["breakdown"]["rows"]}
    assert sum(c[0] for c in by_page.values()) == counts(pages)[0] == 5


def test_funnel_refuses_bad_input(store: Store, shop: str) -> None:
    with pytest.raises(InvalidQuery):
        run_funnel(store, shop, ["page:/"])
    with pytest.raises(InvalidQuery):
        run_funnel(store, shop, ["page:/"] * 9)
    for window in ("0h", "1y", "91d", "30s", "1h;", "", "-1h", "999999999d"):
        with pytest.raises(InvalidQuery):
            funnels.parse_window(window or "x")
    with pytest.raises(InvalidQuery):
        run_funnel(store, shop, STEPS, breakdown="nope")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "page",
        "page:",
        "pages:/x",
        "event:",
        "page:pricing",
        "event:x[",
        "event:x]",
        "event:x[=1]",
        "event:x[a=1]junk",
        "event:x[a=1][b=2][c=3][d=4][e=5][f=6]",
        "event:" + "x" * 600,
        "event:a\x00b",
        "page:/a]",
    ],
)
def test_bad_steps_are_refused(text: str) -> None:
    with pytest.raises(InvalidStep):
        parse_step(text)


def test_steps_parse_and_globs_are_escaped() -> None:
    step = parse_step("event:purchase[plan=pro][coupon=]")
    assert step.conditions == (("plan", "pro"), ("coupon", ""))
    assert step.text() == "event:purchase[plan=pro][coupon=]"
    assert like("/a_b%c\\*?") == "/a\\_b\\%c\\\\%_"
    assert parse_step("page:/docs/*").is_glob and not parse_step("page:/docs").is_glob


def test_glob_metacharacters_match_only_themselves(store: Store) -> None:
    project = new_project()
    events(
        store,
        project,
        [
            view("A", minutes(0), "/a_b"),
            view("B", minutes(0), "/axb"),
            view("C", minutes(0), "/a%"),
        ],
    )
    for glob, expected in (("/a_b", 1), ("/a_*", 1), ("/a?b", 2), ("/a%", 1), ("/a*", 3)):
        result = run_funnel(store, project, [f"page:{glob}", "event:never"])
        assert counts(result)[0] == expected, glob


def test_retention_cohorts_in_seoul_days(store: Store) -> None:
    project = new_project()
    utc = lambda text: datetime.fromisoformat(text).replace(tzinfo=UTC)  # noqa: E731
    events(
        store,
        project,
        [
            # X: 00:30 on March 2 in Seoul (still March 1 in UTC)
            {"at": utc("2026-03-01T15:30:00"), "device_id": "X", "session_id": "x1"},
            # 23:59 the same Seoul day: offset 0, not a return
            {"at": utc("2026-03-02T14:59:00"), "device_id": "X", "session_id": "x2"},
            # 00:00 on March 3 in Seoul: offset 1
            {"at": utc("2026-03-02T15:00:00"), "device_id": "X", "session_id": "x3"},
            # Y: 23:59 on March 1 in Seoul, returns at 01:00 on March 3: offset 2
            {"at": utc("2026-03-01T14:59:00"), "device_id": "Y", "session_id": "y1"},
            {"at": utc("2026-03-02T16:00:00"), "device_id": "Y", "session_id": "y2"},
        ],
    )
    query = q(project, "Asia/Seoul", start="2026-03-01", end="2026-03-04")
    grid = cohorts.retention(store, query, "day")
    by_day = {c["cohort"]: c for c in grid["cohorts"]}
    assert list(by_day) == ["2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04"]
    assert by_day["2026-03-01"]["size"] == 1
    assert [v["visitors"] for v in by_day["2026-03-01"]["values"]] == [1, 0, 1, 0]
    assert by_day["2026-03-02"]["size"] == 1
    assert [v["visitors"] for v in by_day["2026-03-02"]["values"]] == [1, 1, 0]
    assert by_day["2026-03-02"]["values"][1]["share"] == 100.0
    # read in UTC both first visits are March 1
    utc_grid = cohorts.retention(store, q(project, start="2026-03-01", end="2026-03-04"), "day")
    assert utc_grid["cohorts"][0]["size"] == 2
    # weeks start on Monday in Seoul: Y's Sunday, X's Monday
    weeks = cohorts.retention(store, query, "week")["cohorts"]
    assert [(w["cohort"], w["size"]) for w in weeks] == [("2026-02-23", 1), ("2026-03-02", 1)]
    assert [v["visitors"] for v in weeks[0]["values"]] == [1, 1]


def test_retention_with_start_and_return_steps(store: Store) -> None:
    project = new_project()
    d = lambda day, device, **kw: {  # noqa: E731
        "at": datetime(2026, 3, day, 12, tzinfo=UTC),
        "device_id": device,
        "session_id": f"{device}{day}",
        **kw,
    }
    events(
        store,
        project,
        [
            d(2, "A", path="/"),
            d(3, "A", name="signup"),
            d(4, "A", path="/"),
            d(5, "A", path="/app"),
            d(3, "B", name="signup"),
            d(4, "B", path="/app"),
            d(5, "C", path="/app"),
        ],
    )
    grid = cohorts.retention(
        store,
        q(project, start="2026-03-01", end="2026-03-06"),
        "day",
        parse_step("event:signup"),
        parse_step("page:/app"),
    )
    by_day = {c["cohort"]: c for c in grid["cohorts"]}
    # A and B signed up on March 3 (C never did): B came back to the app a day later, A two
    assert by_day["2026-03-03"]["size"] == 2 and by_day["2026-03-02"]["size"] == 0
    assert [v["visitors"] for v in by_day["2026-03-03"]["values"]] == [2, 1, 1, 0]
    assert grid["start"] == "event:signup" and grid["return"] == "page:/app"
    with pytest.raises(InvalidQuery):
        cohorts.retention(store, q(project), "hour")
    with pytest.raises(InvalidQuery):
        cohorts.retention(store, q(project, range="12m"), "day")  # more than 180 cohorts


def test_paths_from_a_page_with_exits(store: Store) -> None:
    project = new_project()
    sessions = {
        "s1": ["/", "/pricing", "/signup"],
        "s2": ["/", "/pricing"],
        "s3": ["/", "/", "/docs", "/pricing", "/signup"],  # a reload counts once
        "s4": ["/"],
        "s5": ["/blog", "/", "/docs"],
    }
    specs = [
        {"at": minutes(i), "device_id": sid, "session_id": sid, "path": path}
        for sid, pages in sessions.items()
        for i, path in enumerate(pages)
    ]
    events(store, project, specs)
    result = paths.paths(store, q(project), paths.anchor_step("/"), "from", 2)
    nodes = {n["id"]: (n["level"], n["name"]) for n in result["nodes"]}
    links = {(nodes[lk["source"]], nodes[lk["target"]]): lk["sessions"] for lk in result["links"]}
    assert result["sessions"] == 5
    assert links == {
        ((0, "/"), (1, "/pricing")): 2,
        ((0, "/"), (1, "/docs")): 2,
        ((0, "/"), (1, "exit")): 1,
        ((1, "/pricing"), (2, "/signup")): 1,
        ((1, "/pricing"), (2, "exit")): 1,
        ((1, "/docs"), (2, "/pricing")): 1,
        ((1, "/docs"), (2, "exit")): 1,
    }
    assert {n["kind"] for n in result["nodes"]} == {"page", "exit"}
    # one page per level (ties by name): the others merge into "(other)"
    top = paths.paths(store, q(project), paths.anchor_step("/"), "from", 1, limit=1)
    assert sorted((n["name"], n["sessions"]) for n in top["nodes"] if n["level"] == 1) == [
        ("(other)", 2),
        ("/docs", 2),
        ("exit", 1),
    ]
    # before /pricing: where sessions came from, an entry when the session began there
    back = paths.paths(store, q(project), paths.anchor_step("/pricing"), "to", 1)
    nodes = {n["id"]: (n["level"], n["name"]) for n in back["nodes"]}
    links = {(nodes[lk["source"]], nodes[lk["target"]]): lk["sessions"] for lk in back["links"]}
    assert links == {((-1, "/"), (0, "/pricing")): 2, ((-1, "/docs"), (0, "/pricing")): 1}
    entry = paths.paths(store, q(project), paths.anchor_step("/blog"), "to", 2)
    assert [n["name"] for n in entry["nodes"] if n["kind"] == "entry"] == ["entry"]
    with pytest.raises(InvalidQuery):
        paths.paths(store, q(project), paths.anchor_step("/"), "from", 6)
    with pytest.raises(InvalidQuery):
        paths.anchor_step("/x[a=b]")


def test_goals_report_and_breakdown(store: Store) -> None:
    project = new_project()
    events(
        store,
        project,
        [
            view("A", minutes(0), "/", referrer_name="Google", country="KR"),
            view("A", minutes(1), "/thanks/pro", country="KR"),
            act("A", minutes(2), "purchase", properties={"amount": "30"}, revenue=5.0),
            act("A", minutes(3), "purchase", properties={"amount": "12.5"}),
            view("B", minutes(0), "/", referrer_name="Google", country="US"),
            view("C", minutes(0), "/", country="US"),
            act("C", minutes(1), "purchase", properties={"amount": "oops"}),
            view("D", minutes(0), "/", country="US"),
        ],
    )
    defs = [
        GoalDef(1, "Bought", "event:purchase", "amount"),
        GoalDef(2, "Thanked", "page:/thanks/*", ""),
        GoalDef(3, "Paid", "event:purchase", ""),
        GoalDef(4, "Never", "event:nothing", ""),
    ]
    report = goals.goals(store, q(project), defs)
    assert report["visitors"] == 4
    by_name = {g["name"]: g for g in report["goals"]}
    assert (by_name["Bought"]["visitors"], by_name["Bought"]["conversions"]) == (2, 3)
    assert by_name["Bought"]["conversion_rate"] == 50.0 and by_name["Bought"]["revenue"] == 42.5
    assert by_name["Thanked"]["visitors"] == 1 and by_name["Thanked"]["revenue"] is None
    assert by_name["Paid"]["revenue"] == 5.0
    assert by_name["Never"]["visitors"] == 0 and by_name["Never"]["conversion_rate"] == 0.0
    rows = goals.goal_breakdown(store, q(project), defs[0], "countries")["rows"]
    assert rows == [
        {"value": "KR", "visitors": 1, "conversions": 1, "conversion_rate": 100.0},
        {"value": "US", "visitors": 3, "conversions": 1, "conversion_rate": 33.3},
    ]
    rows = goals.goal_breakdown(store, q(project), defs[0], "referrers")["rows"]
    # C converted without a referrer (direct), A from Google
    assert rows == [
        {"value": "", "visitors": 2, "conversions": 1, "conversion_rate": 50.0},
        {"value": "Google", "visitors": 2, "conversions": 1, "conversion_rate": 50.0},
    ]
    rows = goals.goal_breakdown(store, q(project), defs[0], "pages")["rows"]
    assert rows[0] == {"value": "/", "visitors": 4, "conversions": 2, "conversion_rate": 50.0}


def test_goals_from_the_rollups_equal_goals_from_the_raw_events(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # an unfiltered, hour-aligned range with nobody linked reads page and event goals from
    # the hourly rollups; the raw-event pass must give the same answer
    project = new_project()
    rows = []
    for n in range(40):
        device, hour = f"v{n}", minutes(90 * (n % 9))
        rows.append(view(device, hour, f"/p{n % 13}", country="KR"))
        rows.append(view(device, hour + timedelta(minutes=1), "/a_b%c" if n % 5 else "/axbyc"))
        if n % 3 == 0:
            rows.append(act(device, hour + timedelta(minutes=2), "signup", revenue=n / 2))
        if n % 4 == 0:
            rows.append(act(device, hour + timedelta(minutes=3), "signup"))
    events(store, project, rows)
    defs = [
        GoalDef(1, "Pages one", "page:/p1*", ""),
        GoalDef(2, "Exact", "page:/p3", ""),
        GoalDef(3, "Odd path", "page:/a_b%c", ""),
        GoalDef(4, "Signup", "event:signup", ""),
        GoalDef(5, "Any view", "event:screen_view", ""),
        GoalDef(6, "Never", "page:/none*", ""),
    ]
    rolled = goals.goals(store, q(project), defs)
    assert [g["visitors"] for g in rolled["goals"]] == [12, 3, 32, 20, 40, 0]
    assert rolled["goals"][3]["conversions"] == 24
    assert rolled["goals"][3]["revenue"] == sum(n / 2 for n in range(0, 40, 3))
    used: list[bool] = []
    real = goals._from_rollups
    monkeypatch.setattr(goals, "_from_rollups", lambda *a: used.append(real(*a)) or False)
    assert goals.goals(store, q(project), defs) == rolled
    assert used == [True, True, True, True, False, True]


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {},
        {"name": "x"},
        {"event": "a", "page": "/b"},
        {"event": 3},
        {"page": "nope"},
        {"step": "event:x[", "name": "x"},
        {"event": "a", "extra": 1},
        {"event": "a", "name": "n" * 101},
        {"event": "a", "revenue_property": ["x"]},
    ],
)
def test_bad_goal_definitions_are_refused(body: Any) -> None:
    with pytest.raises(InvalidGoal):
        parse_goal(body)


def test_goal_definitions_are_read_into_steps() -> None:
    assert parse_goal({"event": "signup"}) == ("event:signup", "event:signup", "")
    assert parse_goal({"name": "Thanks", "page": "/thanks*", "revenue_property": "amt"}) == (
        "Thanks",
        "page:/thanks*",
        "amt",
    )


async def test_a_person_identified_mid_funnel_converts_once(
    redis: Any, prefix: str, sql_engine: Any, store: Store
) -> None:
    # anonymous step 1 on a device, then identify, then step 2 as the person
    buffer = Buffer(redis, prefix)
    ctx = Context(salts=SaltBook(sql_engine), geo=GeoLookup(), keys=buffer.keys)
    project = new_project()
    browser = Sender(ctx, project, "198.51.100.23")
    start = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
    await send(
        buffer,
        browser.page(start, "/pricing"),
        browser.identify(start + timedelta(minutes=1), "iris"),
        browser.page(start + timedelta(minutes=2), "/checkout", profile="iris"),
    )
    await Flusher(buffer, store).run()
    result = run_funnel(store, project, ["page:/pricing", "page:/checkout"])
    assert counts(result) == [1, 1]
    assert result["steps"][1]["median_seconds_from_previous"] == 120.0
    grid = cohorts.retention(store, q(project, start="2026-03-01", end="2026-03-04"), "day")
    assert sum(c["size"] for c in grid["cohorts"]) == 1
    report = goals.goals(store, q(project), [GoalDef(1, "Checkout", "page:/checkout", "")])
    assert report["visitors"] == 1 and report["goals"][0]["conversion_rate"] == 100.0


def test_repeated_steps_use_the_latest_start_and_the_first_arrival(store: Store) -> None:
    project = new_project()
    events(
        store,
        project,
        [
            view("A", minutes(0), "/"),
            view("A", minutes(10), "/"),
            view("A", minutes(65), "/pricing"),  # over the hour after the first start
            view("A", minutes(67), "/pricing"),
            act("A", minutes(68), "purchase", properties={"plan": "pro"}),
        ],
    )
    result = run_funnel(store, project, STEPS)
    assert counts(result) == [1, 1, 1]
    assert [s["median_seconds_from_previous"] for s in result["steps"]] == [None, 3300.0, 180.0]
