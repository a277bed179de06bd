"""Saved segments, annotations and the Goals panel in a real Chromium against a real server
with the week of known events (tests/web/conftest.py: visitors v0…v4 on the last five days,
v0, v2 and v4 from South Korea, each on `/` and `/p<day>`)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx

from gatrix.meta import accounts, annotations, goals, segments

from ..conftest import ARTIFACTS, LiveServer, needs_chromium
from ..websession import post_form
from .conftest import _csrf, api, kpi, new_tab, swapped

pytestmark = needs_chromium

VIEWER_PASSWORD = "a viewer's password"
SHAPES = "() => (document.getElementById('main-chart').layout.shapes || []).map(s => s.x0)"
MARKS = (
    "() => (document.getElementById('main-chart').layout.annotations || []).map(a => a.hovertext)"
)


def today() -> date:
    # the fixture's events are at 10:00 UTC; before that hour its "today" is yesterday
    now = datetime.now(UTC)
    return (now - timedelta(days=1)).date() if now.hour < 10 else now.date()


def engine(site: LiveServer) -> Any:
    return site.services.engine


def test_a_saved_segment_applies_its_filters_from_the_menu(
    page: Any, site: LiveServer, owner: dict[str, Any]
) -> None:
    base = f"{site.url}/dashboard/{owner['project_id']}"
    # an admin saves the filters in view as a segment
    page.goto(f"{base}?range=7d&filter=countries%3Ais%3AKR")
    page.click("#segments summary")
    page.fill(".save-segment input[name=name]", "Korea")
    page.click(".save-segment button[type=submit]")
    page.wait_for_selector("#segments .notice")
    assert "Saved “Korea”" in page.inner_text("#segments .notice")
    assert page.inner_text("#segments .active-segment") == "Korea"
    made = segments.list_segments(engine(site), owner["project_id"])
    assert [(s.name, s.filters) for s in made] == [("Korea", ("countries:is:KR",))]

    # from an unfiltered view (with another filter in it), the menu applies the segment
    page.goto(f"{base}?range=7d&filter=devices%3Ais%3Adesktop")
    assert kpi(page, "visitors") == "5"
    page.click("#segments summary")
    page.click("#segments a.segment:text-is('Korea')")
    swapped(page, r"filter=countries%3Ais%3AKR")
    assert "devices" not in page.url  # the segment's filters replace the view's
    assert "range=7d" in page.url
    expected = api(owner, "metrics", range="7d", filter="countries:is:KR")
    assert kpi(page, "visitors") == str(expected["visitors"]) == "3"
    assert "Korea" in page.inner_text(".chips")
    assert page.inner_text("#segments .active-segment") == "Korea"
    # the URL is the shareable thing: opened afresh it shows the same numbers
    page.goto(page.url)
    assert kpi(page, "visitors") == "3"

    # and the admin deletes it
    page.click("#segments summary")
    page.click("#segments li:has(a.segment:text-is('Korea')) button[type=submit]")
    page.wait_for_selector("#segments .notice")
    assert segments.list_segments(engine(site), owner["project_id"]) == []
    assert "No saved segments" in page.inner_text("#segments")
    assert page.errors == []


def test_annotations_in_range_are_drawn_on_the_chart(
    page: Any, site: LiveServer, owner: dict[str, Any]
) -> None:
    inside = (today() - timedelta(days=2)).isoformat()
    outside = (today() - timedelta(days=40)).isoformat()
    annotations.create_annotation(
        engine(site), owner["project_id"], {"day": outside, "text": "old release"}
    )
    base = f"{site.url}/dashboard/{owner['project_id']}"
    page.goto(f"{base}?range=7d")
    # the form on the dashboard adds one inside the range
    page.click("#notes summary")
    page.fill(".note-form input[name=day]", inside)
    page.fill(".note-form input[name=text]", "v2.3 <b>released</b>")
    page.click(".note-form button[type=submit]")
    page.wait_for_selector("#notes .notice")
    page.wait_for_selector("#main-chart .main-svg")
    assert page.evaluate(SHAPES) == [f"{inside}T00:00:00"]
    assert page.evaluate(MARKS) == [f"{inside}: v2.3 &lt;b&gt;released&lt;/b&gt;"]
    # plotly.js drew the line and the marker
    assert page.locator("#main-chart .shapelayer path").count() == 1
    assert page.locator("#main-chart .annotation").count() == 1
    assert "v2.3 <b>released</b>" in page.inner_text("#notes .note-list")
    page.screenshot(path=str(ARTIFACTS / "dashboard-annotation.png"), full_page=True)

    # 90 days hold both notes; the chart's polled refresh keeps them
    page.goto(f"{base}?range=90d")
    page.wait_for_selector("#main-chart .main-svg")
    assert sorted(page.evaluate(SHAPES)) == [f"{outside}T00:00:00", f"{inside}T00:00:00"]

    # a bad date is refused with a message in the form, nothing stored
    page.goto(f"{base}?range=7d")
    page.click("#notes summary")
    page.fill(".note-form input[name=text]", "x" * 150)
    page.evaluate("() => { document.querySelector('.note-form input[name=day]').type = 'text'; }")
    page.fill(".note-form input[name=day]", "1999-01-01")
    page.click(".note-form button[type=submit]")
    page.wait_for_selector("#notes .error")
    assert "2000-01-01" in page.inner_text("#notes .error")
    assert page.input_value(".note-form input[name=text]") == "x" * 150
    assert len(annotations.list_annotations(engine(site), owner["project_id"])) == 2
    for note in annotations.list_annotations(engine(site), owner["project_id"]):
        annotations.delete_annotation(engine(site), owner["project_id"], note.id)
    assert page.errors == []


def test_goals_panel_shows_the_api_numbers_and_a_goal_shows_conversion_rates(
    page: Any, site: LiveServer, owner: dict[str, Any]
) -> None:
    project_id = owner["project_id"]
    web = owner["web"]
    settings = f"/projects/{project_id}/settings"
    # goals are added on the settings page; bad input comes back inline
    refused = post_form(
        web, settings, f"/projects/{project_id}/goals", kind="page", target="no-slash"
    )
    assert refused.status_code == 400
    assert re.search(r'<section id="goals">.*class="error" role="alert"', refused.text, re.S)
    assert 'value="no-slash"' in refused.text
    added = post_form(
        web,
        settings,
        f"/projects/{project_id}/goals",
        name="Saw page two",
        kind="page",
        target="/p2",
        revenue_property="",
    )
    assert "Goal “Saw page two” added" in added.text
    goal = next(g for g in goals.list_goals(engine(site), project_id) if g.step == "page:/p2")

    base = f"{site.url}/dashboard/{project_id}"
    page.goto(f"{base}?range=7d")
    page.wait_for_selector("#panel-goals:not(.loading)")
    report = api(owner, "goals", range="7d")
    row = next(g for g in report["goals"] if g["id"] == goal.id)
    cells = page.locator(f"#panel-goals tr[data-goal='{goal.id}'] td").all_inner_texts()
    assert cells == [
        "Saw page two",
        str(row["visitors"]),
        str(row["conversions"]),
        f"{row['conversion_rate']:g}%",
        "—",
    ]
    assert (row["visitors"], row["conversion_rate"]) == (1, 20.0)

    # choosing the goal puts it in the URL and the panels show its conversion rate
    page.click("#panel-goals a.goal-link:text-is('Saw page two')")
    swapped(page, rf"goal={goal.id}")
    page.wait_for_selector("#panel-locations .goal-hint")
    by_country = api(owner, "breakdown/countries", range="7d", goal=str(goal.id))["rows"]
    assert by_country[0]["value"] == "KR" and by_country[0]["conversion_rate"] == 33.3
    heads = page.locator("#panel-locations thead th").all_inner_texts()
    assert heads == ["Country", "Conversions", "Visitors", "Conversion rate"]
    first = page.locator("#panel-locations tbody tr").first.locator("td").all_inner_texts()
    assert "Korea" in first[0] and first[1:] == ["1", "3", "33.3%"]
    assert page.locator(f"#panel-goals tr.active[data-goal='{goal.id}']").count() == 1
    assert "Saw page two" in page.inner_text(".goal-chosen")
    # the goals CSV holds the same numbers
    csv = httpx.get(
        f"{base}/export/goals.csv?range=7d", cookies={"gatrix_session": owner["cookie"]}
    ).text
    assert "Saw page two,page:/p2,1,1,20.0," in csv
    # choosing it again clears it
    page.click("#panel-goals a.goal-link:text-is('Saw page two')")
    swapped(page, r"^(?!.*goal=)")
    page.wait_for_selector("#panel-locations:not(.loading)")
    assert page.locator("#panel-locations .goal-hint").count() == 0
    assert page.errors == []
    # the settings page deletes it
    gone = post_form(web, settings, f"/projects/{project_id}/goals/{goal.id}/delete")
    assert "Goal deleted." in gone.text and "Saw page two" not in gone.text
    assert goals.get_goal(engine(site), project_id, goal.id) is None


def test_share_links_show_notes_and_goals_read_only(
    browser: Any, site: LiveServer, owner: dict[str, Any]
) -> None:
    project_id = owner["project_id"]
    web = owner["web"]
    settings = f"/projects/{project_id}/settings"
    shared = post_form(web, settings, f"/projects/{project_id}/share-links")
    token = re.search(r'id="new-share">[^<]*/share/([^<]+)<', shared.text).group(1)
    day = (today() - timedelta(days=1)).isoformat()
    note = annotations.create_annotation(
        engine(site), project_id, {"day": day, "text": "shared note"}
    )
    goal = goals.create_goal(engine(site), project_id, {"name": "Home", "page": "/"})
    private = segments.create_segment(
        engine(site), project_id, {"name": "Private name", "filters": ["os:is:iOS"]}
    )
    with new_tab(browser) as tab:
        tab.goto(f"{site.url}/share/{token}?range=7d")
        tab.wait_for_selector("#main-chart .main-svg")
        tab.wait_for_selector("#panel-goals:not(.loading)")
        assert tab.evaluate(SHAPES) == [f"{day}T00:00:00"]
        assert "shared note" in tab.text_content("#notes .note-list")
        assert tab.inner_text(f"#panel-goals tr[data-goal='{goal.id}'] td:nth-child(2)") == "5"
        assert tab.locator("form[method=post]").count() == 0
        assert tab.locator("#segments").count() == 0
        assert "Private name" not in tab.content()
        # a goal chosen on a share link shows its rates there too
        tab.click("#panel-goals a.goal-link:text-is('Home')")
        swapped(tab, rf"/share/{token}\?.*goal={goal.id}")
        tab.wait_for_selector("#panel-locations .goal-hint")
        assert tab.errors == []
    # writes are refused on the share link's paths and without a session
    anonymous = httpx.Client(base_url=site.url)
    csrf = "not-a-session-token"  # a share page has no forms, so no token to send
    for path in (f"/share/{token}/annotations", f"/share/{token}/segments"):
        reply = anonymous.post(path, data={"_csrf": csrf, "day": day, "text": "x"})
        assert reply.status_code in (404, 405), (path, reply.status_code)
    for path in (f"/dashboard/{project_id}/annotations", f"/dashboard/{project_id}/segments"):
        reply = anonymous.post(path, data={"_csrf": csrf, "day": day, "text": "x", "name": "x"})
        assert reply.status_code in (401, 403), (path, reply.status_code)
    reply = anonymous.post(f"/insights/{project_id}/annotations", json={"day": day, "text": "x"})
    assert reply.status_code == 401
    notes = annotations.list_annotations(engine(site), project_id)
    assert [n.text for n in notes] == ["shared note"]
    annotations.delete_annotation(engine(site), project_id, note.id)
    segments.delete_segment(engine(site), project_id, private.id)
    goals.delete_goal(engine(site), project_id, goal.id)


def test_a_viewer_sees_segments_but_no_forms(site: LiveServer, owner: dict[str, Any]) -> None:
    project_id = owner["project_id"]
    made = segments.create_segment(
        engine(site), project_id, {"name": "iOS", "filters": ["os:is:iOS"]}
    )
    viewer_id = accounts.create_user(engine(site), "viewer@gatrix.test", VIEWER_PASSWORD).id
    accounts.grant(engine(site), viewer_id, project_id, "viewer")
    viewer = httpx.Client(base_url=site.url)
    form = {"email": "viewer@gatrix.test", "password": VIEWER_PASSWORD}
    viewer.post("/login", data={"_csrf": _csrf(viewer.get("/login").text), **form})
    html = viewer.get(f"/dashboard/{project_id}?range=7d").text
    assert 'class="segment"' in html and ">iOS</a>" in html
    assert f'action="/dashboard/{project_id}/' not in html  # no form that changes anything
    refused = viewer.post(
        f"/dashboard/{project_id}/segments/{made.id}/delete", data={"_csrf": _csrf(html)}
    )
    assert refused.status_code == 403
    assert [s.name for s in segments.list_segments(engine(site), project_id)] == ["iOS"]
    segments.delete_segment(engine(site), project_id, made.id)
