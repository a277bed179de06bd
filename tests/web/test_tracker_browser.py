"""Our tracker (/op1.js) and OpenPanel's own @openpanel/web SDK in a real Chromium, on pages
served from another origin than the API, checked by the rows that reach ClickHouse."""

from __future__ import annotations

import functools
import gzip
import http.server
import os
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from gatrix.clickhouse.store import Store
from gatrix.insights import reports
from gatrix.insights.query import QueryParams, build_query
from gatrix.meta.projects import NewClient, create_project

from ..conftest import CHROME_UA, LiveServer, event_rows, free_port, needs_chromium, wait_for

SDK_DIR = os.environ.get("GATRIX_TEST_OPENPANEL_WEB", "")  # a folder holding node_modules/
pytestmark = needs_chromium


class Site:
    """A static web site on its own origin (localhost:PORT), like a customer's site."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.origin = f"http://localhost:{self.port}"
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def page(self, name: str, html: str) -> str:
        (self.root / name).write_text(html)
        return f"{self.origin}/{name}"

    def close(self) -> None:
        self.httpd.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def website(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("website")
    if SDK_DIR and (Path(SDK_DIR) / "node_modules").is_dir():
        (root / "node_modules").symlink_to(Path(SDK_DIR) / "node_modules")
    site = Site(root)
    yield site
    site.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    # a desktop Chrome UA: the headless one is (rightly) classified as a bot
    ctx = browser.new_context(user_agent=CHROME_UA)
    ctx.route("https://external.example/**", lambda route: route.fulfill(body="elsewhere"))
    yield ctx
    ctx.close()


@pytest.fixture
def website_project(server: LiveServer, website: Site) -> NewClient:
    """A project of the shared live server whose allowed origin is the test website's."""
    return create_project(
        server.services.engine, f"site {uuid.uuid4().hex[:6]}", origins=[website.origin]
    )


class TrackRequests:
    def __init__(self, page: Any) -> None:
        self.bodies: list[str] = []
        page.on("request", self._seen)

    def _seen(self, request: Any) -> None:
        if request.url.endswith("/track") and request.method == "POST":
            self.bodies.append(request.post_data or "")


def rows_named(store: Store, project_id: str, count: int) -> dict[str, list[dict]]:
    rows = wait_for(
        lambda: (r := event_rows(store, project_id)) and len(r) >= count and r, timeout=20
    )
    assert rows, "events did not reach ClickHouse"
    out: dict[str, list[dict]] = {}
    for row in rows:
        out.setdefault(row["name"], []).append(row)
    return out


def test_tracker_is_small_cached_and_versioned(server: LiveServer) -> None:
    reply = httpx.get(f"{server.url}/op1.js", headers={"accept-encoding": "gzip"})
    assert reply.status_code == 200 and "javascript" in reply.headers["content-type"]
    assert reply.headers["content-encoding"] == "gzip"
    compressed = len(gzip.compress(reply.content, 9))
    raw = httpx.get(f"{server.url}/op1.js", headers={"accept-encoding": "identity"})
    assert len(gzip.compress(raw.content, 9)) == compressed
    assert len(raw.headers.get("content-length", "0")) and int(
        raw.headers["content-length"]
    ) == len(raw.content)
    wire = httpx.get(
        f"{server.url}/op1.js", headers={"accept-encoding": "gzip"}, follow_redirects=True
    )
    assert int(wire.headers["content-length"]) <= 1536, "tracker must stay under 1.5 KB gzipped"
    etag = raw.headers["etag"].strip('"')
    assert httpx.get(f"{server.url}/tracker.js").content == raw.content
    assert (
        httpx.get(f"{server.url}/op1.js", headers={"if-none-match": f'"{etag}"'}).status_code == 304
    )
    versioned = httpx.get(f"{server.url}/op1.js?v={etag}")
    assert "immutable" in versioned.headers["cache-control"]


def test_our_tracker_end_to_end(
    server: LiveServer, website: Site, context: Any, website_project: NewClient, store: Store
) -> None:
    url = website.page(
        "shop.html",
        f"""<!doctype html><title>Shop</title>
<a id="out" href="https://external.example/partner">Partner site</a>
<button id="cta" data-track="cta_click" data-plan="pro" data-button-color="red">Buy</button>
<script src="{server.url}/op1.js" data-client-id="{website_project.client_id}" defer></script>""",
    )
    page = context.new_page()
    sent = TrackRequests(page)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(
        f"{url}?utm_source=newsletter&utm_medium=email&utm_campaign=spring",
        referer="https://www.google.com/",
    )
    page.wait_for_function("typeof window.op === 'function'")
    page.evaluate("history.pushState({}, '', '/spa/next')")
    page.evaluate("history.replaceState({}, '', '/spa/next')")  # same URL: no second view
    page.evaluate("op('track', 'signup', {plan: 'team', seats: 3})")
    page.click("#cta")
    page.evaluate("op('identify', {profileId: 'user-42', firstName: 'Ada'})")
    page.evaluate("op('track', 'after_identify')")
    page.evaluate("op('increment', 'logins', 2)")
    page.click("#out")
    page.wait_for_url("https://external.example/partner")
    events = rows_named(store, website_project.project_id, 6)
    assert errors == []
    views = sorted(events["screen_view"], key=lambda r: r["created_at"])
    assert [v["path"] for v in views] == ["/shop.html", "/spa/next"]
    landing = views[0]
    assert (landing["utm_source"], landing["utm_medium"], landing["utm_campaign"]) == (
        "newsletter",
        "email",
        "spring",
    )
    assert (landing["referrer_name"], landing["referrer_type"]) == ("Google", "search")
    assert landing["title"] == "Shop" and landing["browser"] == "Chrome"
    assert landing["os"] and landing["device"] == "desktop"
    assert landing["sdk_name"] == "gatrix-web" and landing["screen"]
    assert views[1]["referrer"] == ""  # SPA navigation: the previous page is internal
    assert views[0]["session_id"] == views[1]["session_id"]
    assert events["signup"][0]["properties"] == {"plan": "team", "seats": "3"}
    assert events["cta_click"][0]["properties"] == {"plan": "pro", "buttonColor": "red"}
    assert events["after_identify"][0]["profile_id"] == "user-42"
    assert events["link_out"][0]["properties"]["href"] == "https://external.example/partner"
    assert events["link_out"][0]["properties"]["text"] == "Partner site"
    track_calls = sum(1 for b in sent.bodies if '"type":"track"' in b)
    assert track_calls == 6  # no duplicates, no retries
    assert any('"type":"increment"' in b for b in sent.bodies)


def test_queue_form_and_opt_out(
    server: LiveServer, website: Site, context: Any, website_project: NewClient, store: Store
) -> None:
    queued = website.page(
        "queued.html",
        f"""<!doctype html><title>Queued</title>
<script>
window.op = window.op || function () {{ (window.op.q = window.op.q || []).push(arguments); }};
op('track', 'before_init', {{n: 1}});
op('init', {{clientId: '{website_project.client_id}', apiUrl: '{server.url}', trackScreenViews: true}});
</script>
<script src="{server.url}/op1.js" defer></script>""",
    )
    page = context.new_page()
    page.goto(queued)
    events = rows_named(store, website_project.project_id, 2)
    assert set(events) == {"before_init", "screen_view"}
    # opted out: nothing leaves the page
    page.evaluate("localStorage.setItem('op_disabled', '1')")
    sent = TrackRequests(page)
    page.reload()
    page.wait_for_function("typeof window.op === 'function'")
    page.evaluate("op('track', 'should_not_send')")
    page.wait_for_timeout(1500)
    assert sent.bodies == []
    assert "should_not_send" not in {
        r["name"] for r in event_rows(store, website_project.project_id)
    }


@pytest.mark.skipif(not SDK_DIR, reason="GATRIX_TEST_OPENPANEL_WEB (npm @openpanel/web) not set")
def test_openpanel_web_sdk_unmodified(
    server: LiveServer, website: Site, context: Any, website_project: NewClient, store: Store
) -> None:
    url = website.page(
        "sdk.html",
        f"""<!doctype html><title>SDK page</title>
<script type="importmap">{{"imports": {{
  "@openpanel/sdk": "/node_modules/@openpanel/sdk/dist/index.js"}}}}</script>
<script type="module">
import {{ OpenPanel }} from '/node_modules/@openpanel/web/dist/index.js';
const op = new OpenPanel({{clientId: '{website_project.client_id}', apiUrl: '{server.url}',
                          trackScreenViews: true, trackOutgoingLinks: true}});
window.sdk = op;
</script>""",
    )
    page = context.new_page()
    sent = TrackRequests(page)
    page.goto(url, referer="https://news.ycombinator.com/")
    page.wait_for_function("window.sdk !== undefined")
    page.evaluate("sdk.track('sdk_custom', {color: 'blue'})")
    page.evaluate("sdk.identify({profileId: 'sdk-user', firstName: 'Grace'})")
    page.evaluate("sdk.track('sdk_after_identify')")
    page.evaluate("sdk.increment({profileId: 'sdk-user', property: 'visits', value: 2})")
    events = rows_named(store, website_project.project_id, 3)
    assert {"screen_view", "sdk_custom", "sdk_after_identify"} <= set(events)
    view = events["screen_view"][0]
    assert view["path"] == "/sdk.html" and view["sdk_name"] == "web"
    assert view["referrer_name"] == "Hacker News"
    assert events["sdk_custom"][0]["properties"] == {"color": "blue"}
    assert events["sdk_after_identify"][0]["profile_id"] == "sdk-user"
    # logging in neither renames the visitor nor splits the visit
    rows = [row for group in events.values() for row in group]
    assert len({r["device_id"] for r in rows}) == 1 and rows[0]["device_id"] != "sdk-user"
    assert len({r["session_id"] for r in rows}) == 1
    today = build_query(
        website_project.project_id, "UTC", QueryParams(range="today"), datetime.now(UTC)
    )
    kpis = reports.metrics(store, today)
    assert (kpis["visitors"], kpis["sessions"]) == (1, 1)

    def counters() -> Any:
        rows = store.query_rows(
            "SELECT sum(value) FROM gatrix.profile_counters WHERE project_id = {p:String}",
            {"p": website_project.project_id},
        )
        return rows[0][0] == 2 or None

    assert wait_for(counters, timeout=15)
    page.wait_for_timeout(1000)
    # every SDK call reached us exactly once: our replies never triggered its retries
    assert len(sent.bodies) == 5
