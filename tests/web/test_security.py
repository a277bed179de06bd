"""Web security over real HTTP (and Chromium): throttles that follow the real client,
session-bound CSRF tokens, security headers, the public URL rule and the /metrics token."""

from __future__ import annotations

import html
import http.server
import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gatrix.settings import Settings

from ..conftest import (
    LiveServer,
    free_port,
    make_settings,
    needs_chromium,
    send_page_view,
    wait_for,
)
from ..websession import post_form

PASSWORD = "correct horse battery"
METRICS_TOKEN = "metrics-" + "x" * 24
EMBED_PORT = free_port()
EMBEDDER = f"http://localhost:{EMBED_PORT}"  # another origin than the server's 127.0.0.1


def csrf_of(html: str) -> str:
    match = re.search(r'name="_csrf" value="([^"]+)"', html)
    assert match, "form without a CSRF token"
    return match.group(1)


def browser(server: LiveServer, client_ip: str = "") -> httpx.Client:
    """A browser; `client_ip` is what the (trusted) proxy in front of us says it is."""
    headers = {"x-forwarded-for": client_ip} if client_ip else {}
    return httpx.Client(base_url=server.url, timeout=30, headers=headers)


def log_in(client: httpx.Client, email: str, password: str = PASSWORD) -> httpx.Response:
    return post_form(client, "/login", "/login", email=email, password=password)


_ip_pool = [f"203.0.113.{n}" for n in range(1, 250)]
REDIRECT = (302, 303)


def landed(reply: httpx.Response, path: str) -> bool:
    """A form that succeeded: post_form followed its 303 to the page at `path`."""
    return reply.status_code == 200 and reply.url.path == path


def new_ip() -> str:
    """An address of its own for each simulated visitor, so throttles never collide."""
    return _ip_pool.pop()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[LiveServer]:
    """A server behind a trusted proxy (this host), with a share-page embedder and a
    metrics token configured."""
    own = Path(tmp_path_factory.mktemp("guarded"))
    settings = make_settings(
        own,
        clickhouse_url=f"chdb://{data_dir / 'clickhouse'}",
        trusted_proxies=["127.0.0.1/32"],
        share_frame_ancestors=[EMBEDDER],
        metrics_token=METRICS_TOKEN,
    )
    live = LiveServer(settings).start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def admin(guarded: LiveServer) -> httpx.Client:
    client = browser(guarded, new_ip())
    reply = post_form(client, "/setup", "/setup", email="root@gatrix.test", password=PASSWORD)
    assert landed(reply, "/projects"), reply.text
    return client


@pytest.fixture(scope="module")
def project(admin: httpx.Client) -> dict[str, str]:
    reply = post_form(
        admin, "/projects", "/projects", name="Guarded", origins="shop.example.com", timezone="UTC"
    )
    assert reply.status_code == 200, reply.text
    return {
        "id": re.search(r'action="/projects/([^/"]+)/settings"', reply.text).group(1),
        "client_id": re.search(r'id="new-client-id">([^<]+)<', reply.text).group(1),
    }


def add_user(admin: httpx.Client, email: str) -> None:
    assert post_form(admin, "/users", "/users", email=email, password=PASSWORD).status_code == 200


def share_link(admin: httpx.Client, project_id: str, password: str = "") -> str:
    settings = f"/projects/{project_id}/settings"
    fields = {"password": password} if password else {}
    reply = post_form(admin, settings, f"/projects/{project_id}/share-links", **fields)
    assert reply.status_code == 200, reply.text
    return re.search(r'id="new-share">[^<]*/share/([^<]+)<', reply.text).group(1)


# --- one spelling of an email


def test_a_locked_account_stays_locked_under_any_spelling(
    guarded: LiveServer, admin: httpx.Client
) -> None:
    email = f"victim-{uuid.uuid4().hex[:6]}@gatrix.test"
    add_user(admin, email)
    attacker = browser(guarded, new_ip())
    statuses = [log_in(attacker, email, "wrong-password").status_code for _ in range(5)]
    assert statuses == [401] * 5
    for spelling in (f" {email}", f"{email.upper()}  ", f"\t{email}"):
        locked = log_in(browser(guarded, new_ip()), spelling)
        assert locked.status_code == 429, spelling
        assert "Too many failed logins" in locked.text


def test_stored_emails_match_their_typed_spellings(
    guarded: LiveServer, admin: httpx.Client
) -> None:
    local = f"Mixed.Case-{uuid.uuid4().hex[:6]}"
    add_user(admin, f"{local}@Example.COM")  # stored lower-cased, as before
    reply = log_in(browser(guarded, new_ip()), f"  {local.upper()}@example.com ")
    assert landed(reply, "/projects")


# --- throttles follow the client through the trusted proxy


def test_the_ip_throttle_follows_the_forwarded_client(
    guarded: LiveServer, admin: httpx.Client
) -> None:
    email = f"user-{uuid.uuid4().hex[:6]}@gatrix.test"
    add_user(admin, email)
    attacker = browser(guarded, new_ip())
    for n in range(20):  # a different account each time: only the address adds up
        reply = log_in(attacker, f"nobody-{n}-{uuid.uuid4().hex[:4]}@gatrix.test", "guess")
        assert reply.status_code == 401
    assert log_in(attacker, email).status_code == 429  # right password, locked address
    # everyone else behind the same proxy still gets in
    assert landed(log_in(browser(guarded, new_ip()), email), "/projects")


def test_rotating_through_an_ipv6_64_does_not_dodge_the_ip_throttle(
    guarded: LiveServer,
) -> None:
    for n in range(20):
        client = browser(guarded, f"2001:db8:7:7::{n + 1:x}")
        assert log_in(client, f"v6-{n}@gatrix.test", "guess").status_code == 401
    assert (
        log_in(browser(guarded, "2001:db8:7:7::ff"), "v6@gatrix.test", "guess").status_code == 429
    )
    assert log_in(browser(guarded, "2001:db8:7:8::1"), "v6@gatrix.test", "guess").status_code == 401


def test_an_untrusted_peer_cannot_dodge_the_ip_throttle(site: LiveServer) -> None:
    # `site` trusts no proxy: the forwarded address is the attacker's own invention
    for n in range(20):
        reply = log_in(browser(site, f"192.0.2.{n + 1}"), f"x{n}@gatrix.test", "guess")
        assert reply.status_code == 401
    assert log_in(browser(site, "192.0.2.99"), "x@gatrix.test", "guess").status_code == 429


def test_share_passwords_are_throttled(
    guarded: LiveServer, admin: httpx.Client, project: dict[str, str]
) -> None:
    token = share_link(admin, project["id"], password="s3cret-pass")
    guesser = browser(guarded, new_ip())
    page = f"/share/{token}"
    for _ in range(10):
        assert post_form(guesser, page, page, password="nope").status_code == 401
    for client in (guesser, browser(guarded, new_ip())):  # the link is locked for everyone
        locked = post_form(client, page, page, password="s3cret-pass")
        assert locked.status_code == 429
        assert "Too many wrong passwords" in locked.text
    # and one address cannot guess its way through many links either
    other_links = [share_link(admin, project["id"], password="other-pass") for _ in range(3)]
    roamer = browser(guarded, new_ip())
    statuses = [
        post_form(roamer, f"/share/{t}", f"/share/{t}", password="nope").status_code
        for t in other_links
        for _ in range(7)
    ]
    assert statuses[:20] == [401] * 20 and statuses[20] == 429


# --- CSRF tokens belong to one session


def test_csrf_tokens_are_bound_to_the_session(guarded: LiveServer, admin: httpx.Client) -> None:
    email = f"csrf-{uuid.uuid4().hex[:6]}@gatrix.test"
    add_user(admin, email)
    alice = browser(guarded, new_ip())
    planted = csrf_of(alice.get("/login").text)  # the double-submit token before login
    logged_in = alice.post("/login", data={"_csrf": planted, "email": email, "password": PASSWORD})
    assert logged_in.status_code == 303
    # the cookie still holds the pre-login token; after login it opens nothing
    assert alice.cookies.get("gatrix_csrf") == planted
    users_page = admin.get("/users")
    assert alice.post("/logout", data={"_csrf": planted}).status_code == 403
    assert alice.post("/logout", headers={"x-csrf-token": planted}).status_code == 403
    # another session's token is refused too
    other = csrf_of(users_page.text)
    assert alice.post("/logout", data={"_csrf": other}).status_code == 403
    assert alice.get("/projects").status_code == 200  # still logged in
    # her own session's token works, and it is not the other session's
    own = csrf_of(alice.get("/projects").text)
    assert own != other and own != planted
    assert alice.post("/logout", data={"_csrf": own}).status_code == 303
    assert alice.get("/projects").status_code in (*REDIRECT, 307)


# --- security headers


def assert_locked_down(reply: httpx.Response) -> None:
    csp = reply.headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp, reply.url
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp, reply.url
    assert reply.headers.get("x-frame-options") == "DENY", reply.url
    assert reply.headers.get("x-content-type-options") == "nosniff", reply.url
    assert reply.headers.get("referrer-policy") == "same-origin", reply.url


def test_security_headers_on_pages_errors_and_assets(
    guarded: LiveServer, admin: httpx.Client, project: dict[str, str]
) -> None:
    anonymous = browser(guarded)
    for reply in (
        anonymous.get("/login"),
        admin.get("/projects"),
        admin.get(f"/projects/{project['id']}/settings"),
        admin.get(f"/dashboard/{project['id']}"),
        admin.get(f"/dashboard/{project['id']}/realtime"),
        admin.get(f"/dashboard/{project['id']}/fragments/kpis"),
        admin.get("/projects/no-such-project/settings"),  # an HTML error page
        anonymous.get("/no/such/page"),
        anonymous.get("/assets/css/admin.css"),
        anonymous.get("/health"),
        anonymous.post("/logout"),  # 403 CSRF page
    ):
        assert_locked_down(reply)
    assert admin.get("/projects/no-such-project/settings").status_code == 404
    # the ingest path is answered before the framework, with its own CORS headers
    track = anonymous.post("/track", json={"type": "track", "payload": {"name": "x"}})
    assert "content-security-policy" not in track.headers


def test_share_pages_may_be_framed_by_the_configured_origin(
    guarded: LiveServer, admin: httpx.Client, project: dict[str, str]
) -> None:
    anonymous = browser(guarded)
    open_token = share_link(admin, project["id"])
    locked_token = share_link(admin, project["id"], password="s3cret-pass")
    for path in (
        f"/share/{open_token}",
        f"/share/{open_token}/realtime",
        f"/share/{open_token}/fragments/kpis",
        f"/share/{locked_token}",  # the password form
        "/share/not-a-link",  # the 404 page
    ):
        reply = anonymous.get(path)
        csp = reply.headers["content-security-policy"]
        assert f"frame-ancestors {EMBEDDER}" in csp and "default-src 'self'" in csp, path
        assert "x-frame-options" not in reply.headers, path
        assert reply.headers["x-content-type-options"] == "nosniff"


def test_share_framing_needs_the_setting(site: LiveServer) -> None:
    reply = httpx.get(f"{site.url}/share/not-a-link")
    assert reply.status_code == 404
    assert_locked_down(reply)


def test_frame_ancestors_setting_rejects_policy_injection() -> None:
    assert Settings(share_frame_ancestors="https://a.example, https://*.b.example:8443")
    for bad in ("https://a.example; script-src *", "https://a.example https://b.example", "data:"):
        with pytest.raises(ValueError):
            Settings(share_frame_ancestors=bad)


# --- absolute URLs never come from an unknown Host header


def test_unknown_host_headers_do_not_reach_snippets_or_share_links(
    guarded: LiveServer, admin: httpx.Client, project: dict[str, str]
) -> None:
    settings = f"/projects/{project['id']}/settings"
    evil = {"host": "evil.example"}
    page = admin.get(settings, headers=evil)
    assert page.status_code == 200 and "op1.js" in page.text
    assert "evil.example" not in page.text
    assert f"http://127.0.0.1:{guarded.port}/op1.js" in page.text.replace("&#34;", '"')
    created = admin.post(
        f"/projects/{project['id']}/share-links",
        data={"_csrf": csrf_of(page.text)},
        headers={"host": "evil.example:443"},
    )
    assert created.status_code == 303
    created = admin.get(created.headers["location"], headers={"host": "evil.example:443"})
    assert "evil.example" not in created.text
    assert re.search(rf'id="new-share">http://127\.0\.0\.1:{guarded.port}/share/', created.text)
    # a host this server knows itself by is used as sent
    local = admin.get(settings, headers={"host": f"localhost:{guarded.port}"})
    assert f"http://localhost:{guarded.port}/op1.js" in local.text


def test_public_url_wins_and_allowed_hosts_are_configurable() -> None:
    from gatrix.web.hosts import public_base_url

    plain: dict[str, Any] = {"public_url": "", "allowed_hosts": [], "root_path": ""}
    listening = Settings(**{**plain, "host": "10.1.2.3", "port": 4000})
    assert public_base_url(listening, "http", "10.1.2.3:4000") == "http://10.1.2.3:4000"
    assert public_base_url(listening, "https", "evil.example") == "http://10.1.2.3:4000"
    assert public_base_url(listening, "http", "localhost@evil.example") == "http://10.1.2.3:4000"
    allowed = Settings(
        **{
            **plain,
            "host": "127.0.0.1",
            "port": 3002,
            "allowed_hosts": "Stats.Example.com",
            "root_path": "/a",
        }
    )
    assert public_base_url(allowed, "https", "stats.example.com") == "https://stats.example.com/a"
    assert public_base_url(allowed, "http", "localhost:3002") == "http://127.0.0.1:3002/a"
    public = Settings(public_url="https://stats.example.com/", allowed_hosts="localhost")
    assert public_base_url(public, "http", "localhost") == "https://stats.example.com"


# --- /metrics behind a bearer token


def test_metrics_need_the_token_when_one_is_configured(guarded: LiveServer) -> None:
    anonymous = browser(guarded)
    for headers in (
        {},
        {"authorization": "Bearer wrong"},
        {"authorization": f"Basic {METRICS_TOKEN}"},
        {"authorization": f"Bearer {METRICS_TOKEN}x"},
    ):
        reply = anonymous.get("/metrics", headers=headers)
        assert reply.status_code == 401, headers
        assert reply.json()["error"] == "unauthenticated"
        assert "gatrix_" not in reply.text
    ok = anonymous.get("/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"})
    assert ok.status_code == 200 and "gatrix_buffer_depth" in ok.text


def test_metrics_are_open_without_a_token(site: LiveServer) -> None:
    assert httpx.get(f"{site.url}/metrics").status_code == 200


# --- the policy in a real browser


@needs_chromium
def test_pages_work_under_the_policy_in_chromium(
    guarded: LiveServer, admin: httpx.Client, project: dict[str, str], browser: Any
) -> None:
    for n in range(3):
        reply = send_page_view(guarded.url, project["client_id"], f"https://shop.example.com/p{n}")
        assert reply.status_code == 200
    token = share_link(admin, project["id"])
    context = browser.new_context()
    context.add_cookies(
        [{"name": "gatrix_session", "value": admin.cookies["gatrix_session"], "url": guarded.url}]
    )
    tab = context.new_page()
    errors: list[str] = []
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.add_init_script(
        "window.__violations = [];"
        "document.addEventListener('securitypolicyviolation',"
        " e => window.__violations.push(e.violatedDirective + ' ' + e.sourceFile));"
    )

    def has_events() -> bool:
        tab.goto(f"{guarded.url}/dashboard/{project['id']}?range=24h")
        return tab.locator("#panel-pages .row-filter").count() > 0

    assert wait_for(has_events, timeout=20, interval=0.5)
    tab.wait_for_selector("#main-chart .main-svg")
    tab.select_option("#range", "7d")  # the auto-submit listener, no inline handler
    tab.wait_for_url("**range=7d**")
    tab.wait_for_selector("#main-chart .main-svg")
    assert tab.evaluate("window.__violations") == []
    tab.goto(f"{guarded.url}/dashboard/{project['id']}/realtime")
    tab.wait_for_selector("#minute-chart .main-svg", timeout=15_000)
    assert tab.evaluate("window.__violations") == []

    # framing: the embedder may show the share page, nobody may show an admin page
    site = EmbedderSite(
        frames_of={"/allowed": f"{guarded.url}/share/{token}", "/denied": f"{guarded.url}/projects"}
    )
    try:
        tab.goto(f"{EMBEDDER}/allowed")
        shown = wait_for(lambda: _framed_text(tab, guarded.url), timeout=15)
        assert "Guarded" in shown and "Visitors" in shown
        errors.clear()
        tab.goto(f"{EMBEDDER}/denied")
        refused = wait_for(lambda: any("frame-ancestors 'none'" in e for e in errors), timeout=10)
        assert refused, errors
        assert _framed_text(tab, guarded.url) == ""
    finally:
        site.close()
        context.close()


class EmbedderSite:
    """Another site's page that frames one of ours (an iframe per path)."""

    def __init__(self, frames_of: dict[str, str]) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                src = html.escape(frames_of.get(self.path, "about:blank"))
                body = f'<iframe src="{src}" width="900" height="600"></iframe>'.encode()
                self.send_response(200)
                self.send_header("content-type", "text/html")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", EMBED_PORT), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _framed_text(tab: Any, origin: str) -> str:
    """The text of a child frame showing a page of ours ("" when the browser refused it)."""
    for frame in tab.frames[1:]:
        if frame.url.startswith(origin):
            try:
                return frame.inner_text("body")
            except Exception:  # the frame is navigating or went away
                return ""
    return ""
