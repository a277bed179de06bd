"""What the reviews of the htmx dashboard found, kept found: an expired session under htmx,
deep links through the login, caching of a URL that answers page or fragment, dates out of
datetime's range, oversized filters, and the previous period across a DST change."""

from __future__ import annotations

import re
from typing import Any

import httpx

from ..conftest import LiveServer
from .conftest import PASSWORD, _csrf


def test_an_expired_session_under_htmx_moves_the_window_to_the_login(
    site: LiveServer, owner: dict[str, Any]
) -> None:
    anonymous = httpx.Client(base_url=site.url)
    page_url = f"{site.url}/dashboard/{owner['project_id']}?range=7d"
    reply = anonymous.get(
        f"/dashboard/{owner['project_id']}/fragments/kpis?range=7d",
        headers={"HX-Request": "true", "HX-Current-URL": page_url},
    )
    # not a redirect htmx would follow and swap into the page
    assert reply.status_code == 401 and "location" not in reply.headers
    back = f"%2Fdashboard%2F{owner['project_id']}%3Frange%3D7d"
    assert reply.headers["hx-redirect"] == f"/login?next={back}"


def test_a_deep_link_comes_back_after_the_login_and_only_to_our_pages(
    site: LiveServer, owner: dict[str, Any]
) -> None:
    wanted = f"/dashboard/{owner['project_id']}?range=7d&filter=countries:is:KR"
    for next_, lands in ((wanted, wanted), ("//evil.example/x", "/projects")):
        browser = httpx.Client(base_url=site.url)
        form = browser.get("/login", params={"next": next_}).text
        posted = browser.post(
            "/login",
            data={
                "_csrf": _csrf(form),
                "email": "dash@gatrix.test",
                "password": PASSWORD,
                "next": next_,
            },
        )
        assert posted.status_code == 303 and posted.headers["location"] == lands
    for hostile in ("https://evil.example/", "/\\evil.example", "/login\r\nX: y"):
        form = httpx.get(f"{site.url}/login", params={"next": hostile}).text
        assert 'name="next"' not in form


def test_page_or_fragment_urls_are_never_cached(site: LiveServer, owner: dict[str, Any]) -> None:
    web = owner["web"]
    for url in (
        f"/dashboard/{owner['project_id']}?range=7d",
        f"/dashboard/{owner['project_id']}/fragments/kpis?range=7d",
    ):
        reply = web.get(url, headers={"HX-Request": "true"})
        assert reply.headers["cache-control"] == "no-store"
        assert "HX-Request" in reply.headers["vary"]


def test_dates_outside_what_a_date_can_hold_are_a_400(
    site: LiveServer, owner: dict[str, Any]
) -> None:
    web = owner["web"]
    base = f"/dashboard/{owner['project_id']}"
    for params in (
        {"range": "custom", "start": "2020-01-01", "end": "9999-12-31"},
        {"range": "custom", "start": "0001-01-01", "end": "2020-01-01"},
        {"range": "custom", "start": "2020-01-01", "end": "9999-12-31T23:59:59-14:00"},
    ):
        for url in (base, f"{base}/fragments/kpis"):
            reply = web.get(url, params=params)
            assert reply.status_code == 400, (url, params, reply.status_code)
            assert "between 2000 and 2100" in reply.text


def test_too_many_or_too_long_filters_are_a_400(site: LiveServer, owner: dict[str, Any]) -> None:
    web = owner["web"]
    base = f"/dashboard/{owner['project_id']}/fragments/kpis"
    many = [("filter", f"pages:is:/p{i}") for i in range(21)]
    assert web.get(base, params=many).status_code == 400
    long = [("filter", "pages:contains:" + "x" * 600)]
    assert web.get(base, params=long).status_code == 400
    assert web.get(base, params=many[:20]).status_code == 200


def test_from_after_to_is_read_as_the_range_between(
    site: LiveServer, owner: dict[str, Any]
) -> None:
    html = (
        owner["web"]
        .get(
            f"/dashboard/{owner['project_id']}",
            params={"range": "custom", "start": "2026-11-25", "end": "2026-11-20"},
        )
        .text
    )
    assert re.search(r'name="start" value="2026-11-20"', html)
    assert re.search(r'name="end" value="2026-11-25"', html)
