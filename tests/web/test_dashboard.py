"""The dashboard in a real Chromium against a real server with seeded events: numbers equal
the insights API, charts draw the right points, clicks filter, the range picker drives the
URL, live numbers move, nothing is executed from event data. Screenshots in test-artifacts/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from gatrix.clickhouse.store import Store

from ..conftest import ARTIFACTS, CHROME_UA, LiveServer, needs_chromium, send_page_view, wait_for
from ..factory import events

pytestmark = needs_chromium
PASSWORD = "correct horse battery"
EVIL = "<img src=x onerror=alert(1)>"


def _csrf(html: str) -> str:
    return re.search(r'name="_csrf" value="([^"]+)"', html).group(1)


@pytest.fixture(scope="module")
def owner(site: LiveServer, store: Store) -> dict[str, Any]:
    """An admin session, a project and a week of known events."""
    web = httpx.Client(base_url=site.url, timeout=30)
    web.post(
        "/setup",
        data={
            "_csrf": _csrf(web.get("/setup").text),
            "email": "dash@gatrix.test",
            "password": PASSWORD,
        },
    )
    created = web.post(
        "/projects",
        data={
            "_csrf": _csrf(web.get("/projects").text),
            "name": "Dash",
            "origins": "*",
            "timezone": "UTC",
        },
    )
    created = web.get(created.headers["location"])  # Post/Redirect/Get
    project_id = re.search(r'action="/projects/([^/"]+)/settings"', created.text).group(1)
    client_id = re.search(r'id="new-client-id">([^<]+)<', created.text).group(1)
    today = datetime.now(UTC).replace(hour=10, minute=0, second=0, microsecond=0)
    if today > datetime.now(UTC):
        today -= timedelta(days=1)
    specs = []
    for day in range(5):  # visitors v0..v4 on the last five days, KR for even days
        at = today - timedelta(days=day)
        specs += [
            {
                "at": at,
                "device_id": f"v{day}",
                "session_id": f"s{day}",
                "path": "/",
                "country": "KR" if day % 2 == 0 else "US",
                "referrer_name": "Google",
                "referrer_type": "search",
            },
            {
                "at": at + timedelta(minutes=2),
                "device_id": f"v{day}",
                "session_id": f"s{day}",
                "path": f"/p{day}",
                "country": "KR" if day % 2 == 0 else "US",
            },
        ]
    specs.append(
        {
            "at": today - timedelta(days=1, minutes=-5),
            "device_id": "v1",
            "session_id": "s1",
            "name": EVIL,
            "path": f"/{EVIL}",
            "country": "US",
        }
    )
    specs.append(
        {
            "at": today - timedelta(days=1, minutes=-6),
            "device_id": "v1",
            "session_id": "s1",
            "path": f"/{EVIL}",
            "country": "US",
        }
    )
    events(store, project_id, specs)
    return {
        "web": web,
        "project_id": project_id,
        "client_id": client_id,
        "cookie": web.cookies.get("gatrix_session"),
    }


@pytest.fixture
def page(browser: Any, site: LiveServer, owner: dict[str, Any]) -> Iterator[Any]:
    context = browser.new_context(user_agent=CHROME_UA)
    context.add_cookies([{"name": "gatrix_session", "value": owner["cookie"], "url": site.url}])
    tab = context.new_page()
    tab.errors = []
    tab.on("console", lambda m: tab.errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda exc: tab.errors.append(str(exc)))
    tab.on("dialog", lambda d: (tab.errors.append(f"dialog: {d.message}"), d.dismiss()))
    yield tab
    context.close()


def kpi(page: Any, key: str) -> str:
    return page.inner_text(f"[data-kpi='{key}'] .value").strip()


def api(owner: dict[str, Any], path: str, **params: Any) -> Any:
    return owner["web"].get(f"/insights/{owner['project_id']}/{path}", params=params).json()


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
    page.click("#panel-locations a.row-filter:text-is('KR')")
    page.wait_for_url(re.compile(r"filter=countries%3Ais%3AKR"))
    page.wait_for_selector("#main-chart .main-svg")
    filtered = api(owner, "metrics", range="7d", filter="countries:is:KR")
    assert kpi(page, "visitors") == str(filtered["visitors"]) == "3"
    chip = page.inner_text(".chips")
    assert chip.startswith("Country is") and "Korea" in chip
    page.click(".chips a.chip")  # the chip removes it again
    page.wait_for_url(re.compile(r"^(?!.*filter=)"))
    assert kpi(page, "visitors") == "5"

    # the range picker changes the URL and the data
    page.select_option("#range", "yesterday")
    page.wait_for_url(re.compile(r"range=yesterday"))
    assert kpi(page, "visitors") == str(api(owner, "metrics", range="yesterday")["visitors"])

    # a KPI card switches the chart's metric; a panel tab swaps in place
    page.goto(f"{base}?range=7d")
    page.click("[data-kpi='pageviews']")
    page.wait_for_url(re.compile(r"metric=pageviews"))
    page.click("#panel-pages a[role=tab]:text-is('Entry pages')")
    page.wait_for_selector("#panel-pages a[aria-selected='true']:text-is('Entry pages')")
    assert "tab_pages=entry" in page.url
    assert page.errors == []


def test_event_data_is_shown_escaped(page: Any, site: LiveServer, owner: dict[str, Any]) -> None:
    page.goto(f"{site.url}/dashboard/{owner['project_id']}?range=7d")
    page.wait_for_selector("#panel-events")
    assert EVIL in page.inner_text("#panel-events")
    assert page.locator("#panel-events img").count() == 0
    page.goto(f"{site.url}/dashboard/{owner['project_id']}?range=7d&tab_pages=top")
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
    assert reply.status_code in (302, 303, 307) and reply.headers["location"].endswith("/login")
    fragment = anonymous.get(f"/dashboard/{owner['project_id']}/fragments/kpis")
    assert fragment.status_code in (302, 303, 307, 401)
