"""The report pages in Chromium: a funnel built with the step builder, a retention grid and
paths, each showing the API's numbers for the URL the page pushed, the same after a reload;
a saved report reopened from the menu."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlparse, urlsplit

import pytest

from gatrix.clickhouse.store import Store

from ..conftest import LiveServer, needs_chromium
from .conftest import swapped
from .reports_data import funnel_rows, seed

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def seeded(owner: dict[str, Any], store: Store) -> dict[str, Any]:
    seed(store, owner["project_id"])
    return owner


def _table(page: Any, n: int = 0) -> list[list[str]]:
    rows = page.locator(f"table.report[data-table='{n}'] tr")
    return [
        [c.strip() for c in rows.nth(i).locator("th, td").all_inner_texts()]
        for i in range(rows.count())
    ]


def _api(owner: dict[str, Any], report: str, url: str) -> Any:
    reply = owner["web"].get(f"/insights/{owner['project_id']}/{report}?{urlsplit(url).query}")
    assert reply.status_code == 200, reply.text
    return reply.json()


def _drawn(page: Any, kind: str) -> None:
    page.wait_for_selector(f"#report-chart .main-svg .{kind}", timeout=10_000)


def test_a_funnel_built_in_the_page_shows_the_apis_numbers_after_a_reload(
    page: Any, site: LiveServer, seeded: dict[str, Any]
) -> None:
    project = seeded["project_id"]
    page.goto(f"{site.url}/dashboard/{project}")
    page.click(".dash-head a:text-is('Funnels')")
    page.wait_for_url(re.compile(r"/funnels\?range=30d$"))
    assert "Choose at least two steps" in page.inner_text("#report")
    rows = page.locator("ol.steps .step-row")
    assert rows.count() == 2
    rows.nth(0).locator("input[name=target]").fill("/")
    rows.nth(1).locator("input[name=target]").fill("/docs")
    page.click("button.add-step")  # in place: a third, empty row
    assert rows.count() == 3 and rows.nth(2).locator("input[name=target]").input_value() == ""
    rows.nth(2).locator("select[name=kind]").select_option("event")
    assert rows.nth(2).locator("input[name=target]").get_attribute("list") == "event-names"
    rows.nth(2).locator("input[name=target]").fill("signup")
    page.click("button.add-step")
    rows.nth(3).locator("input[name=target]").fill("/never")
    rows.nth(3).locator("button.remove-step").click()  # and gone again
    assert rows.count() == 3
    rows.nth(1).locator("input[name=target]").fill("/pricing")
    page.select_option("select[name=window]", "7d")
    page.click("text=Show funnel")
    swapped(page, r"/funnels\?.*step=event%3Asignup")
    url = page.url
    assert "window=7d" in url and "kind=" not in url  # the canonical URL was pushed
    shown = _table(page)
    steps = _api(seeded, "funnel", url)["steps"]
    assert shown[1:] == funnel_rows(steps) and steps[1]["visitors"] >= 4
    _drawn(page, "bars")
    bars = page.locator("#report-chart .bars .point").count()
    assert bars == 3
    page.reload()
    assert page.url == url
    assert _table(page) == shown
    assert [i.input_value() for i in page.locator("input[name=target]").all()] == [
        "/",
        "/pricing",
        "signup",
    ]
    _drawn(page, "bars")
    # with a breakdown: a table per value, the API's
    page.select_option("select[name=breakdown]", "countries")
    page.click("text=Show funnel")
    swapped(page, r"breakdown=countries")
    answer = _api(seeded, "funnel", page.url)
    assert page.locator("table.report").count() == 1 + len(answer["breakdown"]["rows"])
    assert _table(page, 1)[1:] == funnel_rows(answer["breakdown"]["rows"][0]["steps"])
    # Enter in a step's box shows the funnel; it must not press the first step's ✕
    page.select_option("select[name=window]", "14d")
    page.locator("input[name=target]").first.press("Enter")
    swapped(page, r"window=14d")
    assert [i.input_value() for i in page.locator("input[name=target]").all()] == [
        "/",
        "/pricing",
        "signup",
    ]
    assert not page.errors


def test_retention_and_paths_show_the_apis_numbers(
    page: Any, site: LiveServer, seeded: dict[str, Any]
) -> None:
    project = seeded["project_id"]
    page.goto(f"{site.url}/dashboard/{project}")
    page.click(".dash-head a:text-is('Retention')")
    page.wait_for_url(re.compile(r"/retention\?range=30d$"))
    _drawn(page, "hm")
    page.select_option("select[name=interval]", "day")
    page.click("#report button:text-is('Apply')")
    swapped(page, r"/retention\?.*interval=day")
    cohorts = _api(seeded, "retention", page.url)["cohorts"]
    grid = _table(page)
    assert [r[0] for r in grid[1:]] == [c["cohort"] for c in cohorts]
    for row, c in zip(grid[1:], cohorts, strict=True):
        assert row[1] == f"{c['size']:,}"
        assert row[2 : 2 + len(c["values"])] == [f"{v['share']:g}%" for v in c["values"]]
    _drawn(page, "hm")
    page.reload()
    assert _table(page) == grid
    page.click(".report-nav a:text-is('Paths')")
    page.wait_for_url(re.compile(r"/paths\?range=30d$"))
    page.fill("input[name=page]", "/")
    page.select_option("select[name=depth]", "2")
    page.click("text=Show paths")
    swapped(page, r"/paths\?.*from=%2F")
    assert "depth=2" in page.url
    answer = _api(seeded, "paths", page.url)
    names = {n["id"]: n["name"] for n in answer["nodes"]}
    expected = {
        (names[x["source"]], names[x["target"]], f"{x['sessions']:,}") for x in answer["links"]
    }
    rows = _table(page)
    assert {(r[1], r[2], r[3]) for r in rows[1:]} == expected
    _drawn(page, "sankey")
    assert page.locator("#report-chart .sankey-node").count() == len(answer["nodes"])
    page.reload()
    assert {(r[1], r[2], r[3]) for r in _table(page)[1:]} == expected
    assert not page.errors


def test_a_saved_report_reopens_its_state(
    page: Any, site: LiveServer, seeded: dict[str, Any]
) -> None:
    project = seeded["project_id"]
    page.goto(f"{site.url}/dashboard/{project}/paths?range=30d&to=%2Fpricing&depth=2")
    shown = _table(page)
    page.fill("form.save-report input[name=name]", "Before pricing")
    with page.expect_navigation():
        page.click("form.save-report button")
    assert "Saved “Before pricing”" in page.inner_text("main")
    # the one-time message token leaves the address bar; the report's state stays
    query = parse_qs(urlparse(page.url).query)
    assert "flash" not in query and query["to"] == ["/pricing"]
    page.goto(f"{site.url}/dashboard/{project}/paths")
    with page.expect_navigation():
        page.click("a.saved-report:text-is('Before pricing')")
    assert page.input_value("input[name=page]") == "/pricing"
    assert page.input_value("select[name=direction]") == "to"
    assert page.input_value("select[name=depth]") == "2"
    assert _table(page) == shown
    # delete it from the menu
    with page.expect_navigation():
        page.click("form.delete-saved button")
    assert not page.locator("a.saved-report").count()
    assert not page.errors


def test_the_builder_works_as_a_plain_form_without_javascript(
    browser: Any, site: LiveServer, seeded: dict[str, Any]
) -> None:
    project = seeded["project_id"]
    context = browser.new_context(java_script_enabled=False)
    context.add_cookies([{"name": "gatrix_session", "value": seeded["cookie"], "url": site.url}])
    tab = context.new_page()
    try:
        tab.goto(f"{site.url}/dashboard/{project}/funnels")
        tab.locator("input[name=target]").nth(0).fill("/")
        with tab.expect_navigation():
            tab.click("button.add-step")  # the server adds a row, keeping what was typed
        rows = tab.locator("ol.steps .step-row")
        assert rows.count() == 3
        assert rows.nth(0).locator("input[name=target]").input_value() == "/"
        rows.nth(1).locator("input[name=target]").fill("/pricing")
        rows.nth(2).locator("select[name=kind]").select_option("event")
        rows.nth(2).locator("input[name=target]").fill("signup")
        with tab.expect_navigation():
            tab.click("text=Show funnel")
        assert "kind=event" in tab.url  # the form's own fields: still a working address
        steps = _api(seeded, "funnel", f"?{FUNNEL_24H}")["steps"]
        assert _table(tab)[1:] == funnel_rows(steps)
        with tab.expect_navigation():
            rows.nth(0).locator("button.remove-step").click()
        assert [i.input_value() for i in tab.locator("input[name=target]").all()] == [
            "/pricing",
            "signup",
        ]
    finally:
        context.close()


FUNNEL_24H = "range=30d&step=page%3A%2F&step=page%3A%2Fpricing&step=event%3Asignup"
