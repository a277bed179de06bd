"""What the dashboard's browser tests share: an admin with a project and a week of known
events, a Chromium tab logged in as them (console errors collected), and small readers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from gatrix.clickhouse.store import Store

from ..conftest import CHROME_UA, LiveServer
from ..factory import events

PASSWORD = "correct horse battery"
EVIL = "<img src=x onerror=alert(1)>"


def _csrf(html: str) -> str:
    return re.search(r'name="_csrf" value="([^"]+)"', html).group(1)


@pytest.fixture(scope="module")
def owner(site: LiveServer, store: Store, request: pytest.FixtureRequest) -> dict[str, Any]:
    """An admin session, a project and a week of known events. ClickHouse is shared by the
    whole session, so each test module's project has a name (and so an id) of its own."""
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
            "name": "Dash " + request.module.__name__.rsplit(".", 1)[-1].replace("_", " "),
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


@contextmanager
def new_tab(browser: Any, cookies: list[dict[str, str]] | None = None) -> Iterator[Any]:
    """A tab of a fresh browser context whose console errors, page errors and dialogs are
    collected in `tab.errors`."""
    context = browser.new_context(user_agent=CHROME_UA)
    if cookies:
        context.add_cookies(cookies)
    tab = context.new_page()
    tab.errors = []
    tab.on("console", lambda m: tab.errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda exc: tab.errors.append(str(exc)))
    tab.on("dialog", lambda d: (tab.errors.append(f"dialog: {d.message}"), d.dismiss()))
    try:
        yield tab
    finally:
        context.close()


@pytest.fixture
def page(browser: Any, site: LiveServer, owner: dict[str, Any]) -> Iterator[Any]:
    """A tab logged in as the owner."""
    session = {"name": "gatrix_session", "value": owner["cookie"], "url": site.url}
    with new_tab(browser, [session]) as tab:
        yield tab


def kpi(page: Any, key: str) -> str:
    return page.inner_text(f"[data-kpi='{key}'] .value").strip()


def swapped(page: Any, url: str) -> None:
    """Wait until the address bar matches and htmx has finished swapping and settling."""
    page.wait_for_url(re.compile(url))
    page.wait_for_selector(
        ".htmx-request, .htmx-swapping, .htmx-settling, .panel.loading", state="detached"
    )


def api(owner: dict[str, Any], path: str, **params: Any) -> Any:
    return owner["web"].get(f"/insights/{owner['project_id']}/{path}", params=params).json()
