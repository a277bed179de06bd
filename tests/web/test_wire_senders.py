"""The other tools' published senders, unmodified, against this server: Plausible's and
Umami's trackers in a real Chromium on a page of another origin, and Segment's and
RudderStack's Node server libraries against a real `gatrix serve`. Checked by the rows."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gatrix.clickhouse.store import Store
from gatrix.meta.projects import NewClient, create_project
from gatrix.pageviews import ENGAGEMENT_NAME

from ..conftest import LiveServer, needs_chromium, wait_for
from ..processes import ServeProcess, count_rows
from .test_tracker_browser import Site, context, rows_named  # noqa: F401  (context: fixture)

SENDERS = Path(os.environ.get("GATRIX_TEST_WIRE_SENDERS", "/nonexistent"))
UMAMI_SCRIPT = SENDERS / "umami" / "package" / "src" / "tracker" / "index.js"
needs_senders = pytest.mark.skipif(
    not (SENDERS / "node_modules").is_dir(),
    reason="GATRIX_TEST_WIRE_SENDERS unset: .ci/run installs the trackers and libraries with npm",
)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """A customer's site of its own (one origin per test, so one project per origin)."""
    (tmp_path / "node_modules").symlink_to(SENDERS / "node_modules")
    if UMAMI_SCRIPT.is_file():
        shutil.copy(UMAMI_SCRIPT, tmp_path / "umami.js")
    served = Site(tmp_path)
    yield served
    served.close()


def _project(server: LiveServer, origin: str) -> NewClient:
    project = create_project(server.services.engine, f"site {uuid.uuid4().hex[:6]}", [origin])
    server.services.directory.forget()
    return project


@needs_chromium
@needs_senders
def test_plausible_tracker(server: LiveServer, site: Site, context: Any, store: Store) -> None:  # noqa: F811
    project = _project(server, site.origin)
    domain = site.origin.removeprefix("http://")
    url = site.page(
        "pricing.html",
        f"""<!doctype html><title>Pricing</title><body style="height:3000px">
<a id="out" href="https://external.example/partner">Partner</a>
<script>window.__plausible = true; /* the tracker ignores automated browsers otherwise */</script>
<script type="module">
import {{ init, track }} from './node_modules/@plausible-analytics/tracker/plausible.js';
init({{ domain: '{domain}', endpoint: '{server.url}/api/event', captureOnLocalhost: true,
        outboundLinks: true }});
window.sendSignup = () => track('Signup', {{props: {{plan: 'pro'}},
                                           revenue: {{amount: 12.5, currency: 'EUR'}}}});
</script>""",
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{url}?utm_source=newsletter", referer="https://www.google.com/")
    page.wait_for_function("typeof window.sendSignup === 'function'")
    page.evaluate("window.scrollTo(0, 1500)")
    page.evaluate("window.sendSignup()")
    # a client-side navigation: the tracker reports the engagement of the page it leaves
    page.evaluate("history.pushState({}, '', '/docs')")
    page.click("#out")
    page.wait_for_url("https://external.example/partner")
    events = rows_named(store, project.project_id, 5)
    assert errors == []
    # by path, not by time: the two views are requests of their own, and a loaded machine
    # may store the second one first (each is stamped when it arrives)
    views = {v["path"]: v for v in events["pageview"]}
    assert sorted(views) == ["/docs", "/pricing.html"] and len(events["pageview"]) == 2
    landing = views["/pricing.html"]
    assert (landing["utm_source"], landing["referrer_type"]) == ("newsletter", "search")
    signup = events["Signup"][0]
    assert signup["properties"] == {"plan": "pro", "currency": "EUR"}
    assert signup["revenue"] == 12.5
    [engaged] = events[ENGAGEMENT_NAME]
    assert engaged["path"] == "/pricing.html" and int(engaged["properties"]["scroll_depth"]) > 0
    assert events["Outbound Link: Click"][0]["properties"] == {
        "url": "https://external.example/partner"
    }
    assert len({r["session_id"] for rows in events.values() for r in rows}) == 1


@needs_chromium
@needs_senders
def test_umami_tracker(server: LiveServer, site: Site, context: Any, store: Store) -> None:  # noqa: F811
    project = _project(server, site.origin)
    url = site.page(
        "shop.html",
        f"""<!doctype html><meta charset="utf-8"><title>Café shop</title>
<script defer src="umami.js" data-website-id="{project.client_id}"
        data-host-url="{server.url}"></script>""",
    )
    page = context.new_page()
    replies: list[int] = []
    page.on(
        "response",
        lambda r: replies.append(r.status) if r.url.endswith("/api/send") else None,
    )
    page.goto(f"{url}?utm_source=mail", referer="https://news.ycombinator.com/")
    page.wait_for_function("typeof window.umami === 'object'")
    wait_for(lambda: replies, timeout=10)
    # the tracker now echoes our reply in x-umami-cache: a header that needs a preflight
    page.evaluate("umami.track('signup', {plan: 'pro'})")
    page.evaluate("history.pushState({}, '', '/caf%C3%A9')")
    events = rows_named(store, project.project_id, 3)
    views = sorted(events["pageview"], key=lambda r: r["created_at"])
    assert [v["path"] for v in views] == ["/shop.html", "/caf%C3%A9"]
    assert views[0]["title"] == "Café shop" and views[0]["utm_source"] == "mail"
    assert views[0]["referrer_type"] == "social" and views[1]["referrer"] == ""
    assert events["signup"][0]["properties"] == {"plan": "pro"}
    assert len({r["session_id"] for rows in events.values() for r in rows}) == 1
    assert set(replies) <= {200, 204}


NODE_SCRIPT = r"""
const { Analytics } = require('@segment/analytics-node');
const RudderAnalytics = require('@rudderstack/rudder-sdk-node');
const [url, key] = process.argv.slice(2);
const segment = new Analytics({ writeKey: key, host: url, flushAt: 3 });
segment.on('http_response', (r) => console.log('segment', r.status, r.body.length));
segment.on('error', (e) => console.log('segment error', e.code, e.reason));
const context = { ip: '8.8.8.8', page: { url: 'https://shop.example.com/checkout', title: 'Checkout' } };
segment.track({ userId: 'user-1', anonymousId: 'anon-1', event: 'Order Completed',
                properties: { revenue: 42.5, currency: 'USD' }, context });
segment.page({ anonymousId: 'anon-1', name: 'Docs',
               properties: { url: 'https://shop.example.com/docs' } });
segment.identify({ userId: 'user-1', traits: { email: 'a@b.c', plan: 'pro' } });
const rudder = new RudderAnalytics(key, { dataPlaneUrl: url, flushAt: 2 });
rudder.track({ userId: 'user-2', event: 'Rudder Event', properties: { revenue: 1 }, context });
rudder.page({ anonymousId: 'anon-2', name: 'Home',
              properties: { url: 'https://shop.example.com/' } });
(async () => {
  await segment.closeAndFlush({ timeout: 20000 });
  await rudder.flush();
  console.log('sent');
})().catch((e) => { console.error(e); process.exit(1); });
"""


@needs_senders
@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_segment_and_rudderstack_node_libraries(tmp_path: Path) -> None:
    serve = ServeProcess(tmp_path / "data")
    try:
        serve.wait_ready()
        ids = json.loads(
            next(line for line in serve.stderr().splitlines() if line.startswith('{"project_id"'))
        )
        script = tmp_path / "send.js"
        script.write_text(NODE_SCRIPT)
        run = subprocess.run(
            ["node", str(script), serve.url, f"{ids['client_id']}:{ids['client_secret']}"],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "NODE_PATH": str(SENDERS / "node_modules")},
        )
        assert run.returncode == 0 and "sent" in run.stdout, run.stderr[-2000:]
        log = serve.stderr()
    finally:
        serve.stop()
    rows = count_rows(
        tmp_path / "data",
        "SELECT name, path, device_id, profile_id, revenue, country, sdk_name "
        "FROM gatrix.events ORDER BY name, device_id",  # two page views share a name
    )
    assert rows == [
        ["Order Completed", "/checkout", "anon-1", "user-1", 42.5, "US", "segment"],
        ["Rudder Event", "/checkout", "user-2", "user-2", 1.0, "US", "segment"],
        ["pageview", "/docs", "anon-1", "", 0.0, "", "segment"],
        ["pageview", "/", "anon-2", "", 0.0, "", "segment"],
    ]
    profiles = count_rows(tmp_path / "data", "SELECT profile_id, email FROM gatrix.profiles")
    assert profiles == [["user-1", "a@b.c"]], (run.stdout, log[-3000:])
