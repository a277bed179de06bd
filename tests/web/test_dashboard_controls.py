"""The dashboard's controls do what they show, in a real Chromium: htmx swaps keep every part
of the view in the URL (tabs of other panels, filters), back returns to the previous view,
typed dates apply without choosing "Custom" first, hiding the previous period hides the
change figures, and the vendored htmx is served like plotly.js."""

from __future__ import annotations

import gzip
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from gatrix.meta.goals import create_goal
from gatrix.web.vendor import HTMX_PATH

from ..conftest import LiveServer, needs_chromium
from .conftest import api, kpi, swapped

pytestmark = needs_chromium


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query, keep_blank_values=True)


def test_a_tab_switch_keeps_the_other_panels_tabs_and_back_restores(
    page: Any, site: LiveServer, owner: dict[str, Any]
) -> None:
    page.goto(f"{site.url}/dashboard/{owner['project_id']}?range=7d")
    page.click("#panel-pages a[role=tab]:text-is('Entry pages')")
    swapped(page, r"tab_pages=entry")
    page.click("#panel-sources a[role=tab]:text-is('Referrers')")
    swapped(page, r"tab_sources=referrers")
    query = query_of(page.url)
    # the links of the sources panel were rendered before the pages tab changed
    assert query["tab_pages"] == ["entry"] and query["tab_sources"] == ["referrers"]
    page.click("#panel-devices a[role=tab]:text-is('OS')")
    swapped(page, r"tab_devices=os")
    assert {"tab_pages", "tab_sources", "tab_devices"} <= set(query_of(page.url))

    page.go_back()
    page.wait_for_url(re.compile(r"^(?!.*tab_devices)"))
    page.wait_for_selector("#panel-devices a[aria-selected='true']:text-is('Browsers')")
    assert page.locator("#panel-sources a[aria-selected='true']").inner_text() == "Referrers"
    assert page.errors == []


def test_choosing_a_range_writes_no_empty_parameters(
    page: Any, site: LiveServer, owner: dict[str, Any]
) -> None:
    page.goto(f"{site.url}/dashboard/{owner['project_id']}?range=7d&tab_pages=exit")
    page.select_option("#range", "30d")
    swapped(page, r"range=30d")
    query = query_of(page.url)
    assert "" not in [v for values in query.values() for v in values], page.url
    assert not {"start", "end", "interval"} & set(query)
    assert query["tab_pages"] == ["exit"]
    # the date boxes show the period in view
    today = datetime.now(UTC).date()
    assert page.input_value("input[name=end]") == today.isoformat()
    assert page.input_value("input[name=start]") == (today - timedelta(days=29)).isoformat()


def test_typed_dates_apply_without_choosing_custom(
    page: Any, site: LiveServer, owner: dict[str, Any]
) -> None:
    page.goto(f"{site.url}/dashboard/{owner['project_id']}?range=7d")
    assert kpi(page, "visitors") == "5"
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    page.fill("input[name=start]", yesterday)
    page.press("input[name=start]", "Enter")
    swapped(page, r"range=custom")
    query = query_of(page.url)
    assert query["start"] == [yesterday]
    expected = api(owner, "metrics", range="custom", start=yesterday, end=query["end"][0])
    assert kpi(page, "visitors") == str(expected["visitors"])
    assert expected["visitors"] < 5  # the numbers did change, not only the boxes
    assert page.input_value("#range") == "custom"
    # choosing a named range again drops the typed dates
    page.select_option("#range", "7d")
    swapped(page, r"range=7d")
    assert kpi(page, "visitors") == "5" and "start" not in query_of(page.url)
    assert page.errors == []


def test_typed_dates_apply_without_javascript_too(site: LiveServer, owner: dict[str, Any]) -> None:
    web = owner["web"]
    day = (datetime.now(UTC) - timedelta(days=2)).date().isoformat()
    pid = owner["project_id"]
    # the form as a browser without JavaScript submits it: range still says 7d
    html = web.get(
        f"/dashboard/{pid}", params={"range": "7d", "shown_range": "7d", "start": day, "end": day}
    ).text
    assert re.search(r'<option value="custom"\s+selected', html)
    # a new range chosen in the same form wins over the dates the boxes still held
    html = web.get(
        f"/dashboard/{pid}", params={"range": "30d", "shown_range": "7d", "start": day, "end": day}
    ).text
    assert re.search(r'<option value="30d"\s+selected', html)


def test_hiding_the_previous_period_hides_the_change(
    page: Any, site: LiveServer, owner: dict[str, Any]
) -> None:
    page.goto(f"{site.url}/dashboard/{owner['project_id']}?range=7d")
    assert page.locator("#kpis .change").count() == 6
    page.check("input[name=compare]")
    swapped(page, r"compare=off")
    assert page.locator("#kpis .change").count() == 0
    # and the KPI fragment that polls keeps it hidden
    fragment = owner["web"].get(
        f"/dashboard/{owner['project_id']}/fragments/kpis", params={"compare": "off"}
    )
    assert fragment.status_code == 200 and 'class="change' not in fragment.text
    assert page.errors == []


def test_htmx_comes_from_the_package_gzipped_and_immutable(site: LiveServer) -> None:
    plain = httpx.get(f"{site.url}{HTMX_PATH}", headers={"accept-encoding": "identity"})
    assert plain.status_code == 200 and b"htmx" in plain.content[:2000]
    assert "immutable" in plain.headers["cache-control"]
    zipped = httpx.get(f"{site.url}{HTMX_PATH}", headers={"accept-encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    raw = httpx.Client().send(
        httpx.Request("GET", f"{site.url}{HTMX_PATH}", headers={"accept-encoding": "gzip"}),
        stream=True,
    )
    wire = b"".join(raw.iter_raw())
    assert gzip.decompress(wire) == plain.content and len(wire) < 25_000
    assert httpx.get(f"{site.url}/assets/js/poll.js").status_code == 404


def test_no_dashboard_page_is_wider_than_a_phone(
    browser: Any, site: LiveServer, owner: dict[str, Any]
) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844})
    context.add_cookies([{"name": "gatrix_session", "value": owner["cookie"], "url": site.url}])
    tab = context.new_page()
    base = f"{site.url}/dashboard/{owner['project_id']}"
    # a chosen goal adds three columns to every panel
    goal = create_goal(site.services.engine, owner["project_id"], {"page": "/pricing*"})
    wide = []
    for url in (
        f"{base}?range=7d",
        f"{base}?range=7d&goal={goal.id}",
        f"{base}?range=7d&filter=countries:is:KR&tab_sources=referrers",
        f"{base}/realtime",
        f"{base}/people",
        f"{base}/funnels?range=7d&kind=page&target=/&kind=event&target=signup",
        f"{base}/retention?range=30d",
        f"{base}/paths?range=7d",
    ):
        tab.goto(url)
        tab.wait_for_selector(".htmx-request, .panel.loading", state="detached")
        width = tab.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        if width[0] > width[1]:
            wide.append((url, width))
    context.close()
    assert wide == []


def test_all_time_starts_at_the_first_event(
    page: Any, site: LiveServer, owner: dict[str, Any]
) -> None:
    page.goto(f"{site.url}/dashboard/{owner['project_id']}?range=all")
    page.wait_for_selector("#main-chart .main-svg")
    # the fixture's oldest event is four days back at 10:00 UTC (or five, before 10:00)
    first = date.fromisoformat(page.input_value("input[name=start]"))
    assert 4 <= (datetime.now(UTC).date() - first).days <= 5
    # so the automatic interval is a day, not a month counted from the year 2000
    points = int(page.get_attribute("#main-chart", "data-points") or 0)
    assert 5 <= points <= 6
    # submitted without JavaScript, the boxes' dates are All time's own: it stays All time
    last = page.input_value("input[name=end]")
    html = (
        owner["web"]
        .get(
            f"/dashboard/{owner['project_id']}",
            params={"range": "all", "shown_range": "all", "start": first.isoformat(), "end": last},
        )
        .text
    )
    assert re.search(r'<option value="all"\s+selected', html)
    assert page.errors == []
