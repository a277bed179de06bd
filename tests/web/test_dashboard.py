"""The dashboard in a real Chromium against a real server with seeded events: numbers equal
the insights API, charts draw the right points, clicks filter, the range picker drives the
URL, live numbers move, nothing is executed from event data. Screenshots in test-artifacts/."""

from __future__ import annotations

import re
from typing import Any

import httpx

from ..conftest import ARTIFACTS, LiveServer, needs_chromium, send_page_view, wait_for
from .conftest import EVIL, _csrf, api, kpi, swapped

pytestmark = needs_chromium


def test_overview_matches_the_api_and_filters_on_click(
    page: Any, site: LiveServer, owner: dict[str, Any]
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    base = f"{site.url}/dashboard/{owner['project_id']}"
    page.goto(f"{base}?range=7d")
    page.wait_for_selector("#main-chart .main-svg", timeout=15_000)
    expected = api(owner, "metrics", range="7d")
    assert kpi(page, "visitors") == str(expected["visitors"]) == "5"
    assert kpi(page, "pageviews") == str(expected["pageviews"])
    assert kpi(page, "sessions") == str(expected["sessions"])
    assert page.get_attribute("#main-chart", "data-points") == "7"  # one point a day
    page.screenshot(path=str(ARTIFACTS / "dashboard-overview.png"), full_page=True)

    # a breakdown row adds a filter: the URL and the numbers change
    page.click("#panel-locations a.row-filter:text-is('🇰🇷 South Korea')")
    swapped(page, r"filter=countries%3Ais%3AKR")
    page.wait_for_selector("#main-chart .main-svg")
    filtered = api(owner, "metrics", range="7d", filter="countries:is:KR")
    assert kpi(page, "visitors") == str(filtered["visitors"]) == "3"
    chip = page.inner_text(".chips")
    assert chip.startswith("Country is") and "Korea" in chip
    page.click(".chips a.chip")  # the chip removes it again
    swapped(page, r"^(?!.*filter=)")
    assert kpi(page, "visitors") == "5"

    # the range picker changes the URL and the data
    page.select_option("#range", "yesterday")
    swapped(page, r"range=yesterday")
    assert kpi(page, "visitors") == str(api(owner, "metrics", range="yesterday")["visitors"])

    # a KPI card switches the chart's metric; a panel tab swaps in place
    page.goto(f"{base}?range=7d")
    page.click("[data-kpi='pageviews']")
    swapped(page, r"metric=pageviews")
    page.click("#panel-pages a[role=tab]:text-is('Entry pages')")
    page.wait_for_selector("#panel-pages a[aria-selected='true']:text-is('Entry pages')")
    assert "tab_pages=entry" in page.url
    assert page.errors == []


def test_event_data_is_shown_escaped(page: Any, site: LiveServer, owner: dict[str, Any]) -> None:
    page.goto(f"{site.url}/dashboard/{owner['project_id']}?range=7d")
    page.wait_for_selector("#panel-events:not(.loading)")
    assert EVIL in page.inner_text("#panel-events")
    assert page.locator("#panel-events img").count() == 0
    page.goto(f"{site.url}/dashboard/{owner['project_id']}?range=7d&tab_pages=top")
    page.wait_for_selector("#panel-pages:not(.loading)")
    assert f"/{EVIL}" in page.inner_text("#panel-pages")
    assert page.errors == []


def test_live_badge_and_realtime_update(page: Any, site: LiveServer, owner: dict[str, Any]) -> None:
    page.goto(f"{site.url}/dashboard/{owner['project_id']}?range=today")
    before = int(page.inner_text("#live-badge .count"))
    reply = send_page_view(site.url, owner["client_id"], "https://dash.test/live-now")
    assert reply.status_code == 200
    # polled from here: wait_for_function evaluates a string, which the page's CSP refuses
    assert wait_for(lambda: int(page.inner_text("#live-badge .count")) > before, timeout=10)
    page.goto(f"{site.url}/dashboard/{owner['project_id']}/realtime")
    page.wait_for_selector("#minute-chart .main-svg", timeout=15_000)
    assert int(page.inner_text("#visitors-now")) >= 1
    assert "/live-now" in page.inner_text("#realtime")
    send_page_view(site.url, owner["client_id"], "https://dash.test/pricing", "signup_live")
    assert wait_for(lambda: "signup_live" in page.inner_text("#recent"), timeout=10)
    page.screenshot(path=str(ARTIFACTS / "dashboard-realtime.png"), full_page=True)
    assert page.errors == []


def test_empty_project_says_how_to_install(
    page: Any, site: LiveServer, owner: dict[str, Any]
) -> None:
    web = owner["web"]
    created = web.post(
        "/projects",
        data={"_csrf": _csrf(web.get("/projects").text), "name": "Empty", "origins": "*"},
    )
    created = web.get(created.headers["location"])  # Post/Redirect/Get
    project_id = re.search(r'action="/projects/([^/"]+)/settings"', created.text).group(1)
    page.goto(f"{site.url}/dashboard/{project_id}")
    assert "No data in this range yet" in page.inner_text("main")
    assert "op1.js" in page.inner_text(".empty")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    page.screenshot(path=str(ARTIFACTS / "dashboard-empty-phone.png"), full_page=True)
    assert page.errors == []


def test_other_users_cannot_see_the_dashboard(site: LiveServer, owner: dict[str, Any]) -> None:
    anonymous = httpx.Client(base_url=site.url)
    reply = anonymous.get(f"/dashboard/{owner['project_id']}")
    assert reply.status_code in (302, 303, 307)
    # the login comes back to the page asked for
    assert reply.headers["location"] == f"/login?next=%2Fdashboard%2F{owner['project_id']}"
    fragment = anonymous.get(f"/dashboard/{owner['project_id']}/fragments/kpis")
    assert fragment.status_code in (302, 303, 307, 401)
