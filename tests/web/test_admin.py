"""Admin and access over real HTTP: first-run setup, login, CSRF, throttling, projects,
clients, install check, share links and the isolation matrix between projects."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from ..conftest import LiveServer, send_page_view, wait_for
from ..websession import post_form

PASSWORD = "correct horse battery"


def csrf_of(html: str) -> str:
    match = re.search(r'name="_csrf" value="([^"]+)"', html)
    assert match, "form without a CSRF token"
    return match.group(1)


def browser(site: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=site.url, timeout=30, follow_redirects=False)


def login(site: LiveServer, email: str, password: str = PASSWORD) -> httpx.Client:
    client = browser(site)
    reply = post_form(client, "/login", "/login", email=email, password=password)
    assert reply.status_code == 200 and reply.url.path == "/projects", reply.text
    return client


@pytest.fixture(scope="module")
def admin(site: LiveServer) -> httpx.Client:
    client = browser(site)
    assert client.get("/").headers["location"] == "/setup"
    page = client.get("/setup")
    assert page.status_code == 200 and "Create the administrator account" in page.text
    # a form post without the token is refused
    assert client.post("/setup", data={"email": "a@b.co", "password": PASSWORD}).status_code == 403
    reply = client.post(
        "/setup",
        data={"_csrf": csrf_of(page.text), "email": "admin@gatrix.test", "password": PASSWORD},
    )
    assert reply.status_code == 303 and reply.headers["location"] == "/projects"
    cookie = reply.headers["set-cookie"]
    assert "gatrix_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert client.get("/setup").status_code == 404  # setup is gone once a user exists
    return client


def create_project(admin: httpx.Client, name: str, origins: str = "shop.example.com") -> dict:
    reply = post_form(
        admin,
        "/projects",
        "/projects",
        name=name,
        origins=origins,
        timezone="Asia/Seoul",
        kind="website",
    )
    assert reply.status_code == 200, reply.text
    project_id = re.search(r'action="/projects/([^/"]+)/settings"', reply.text).group(1)
    return {
        "id": project_id,
        "client_id": re.search(r'id="new-client-id">([^<]+)<', reply.text).group(1),
        "client_secret": re.search(r'id="new-client-secret">([^<]+)<', reply.text).group(1),
        "html": reply.text,
    }


def test_setup_login_project_snippet_event_install_check(
    site: LiveServer, admin: httpx.Client
) -> None:
    project = create_project(admin, "Shop")
    html = project["html"]
    assert f'{site.url}/op1.js" data-client-id="{project["client_id"]}"' in html.replace(
        "&#34;", '"'
    ).replace("&lt;", "<").replace("&gt;", ">")
    assert "@openpanel/web" in html and "openpanel-client-secret" in html
    settings_url = f"/projects/{project['id']}/settings"
    check = admin.get(f"/projects/{project['id']}/install-check")
    assert "Waiting for the first event" in check.text and 'hx-trigger="every 2s' in check.text
    reply = send_page_view(site.url, project["client_id"], "https://shop.example.com/welcome")
    assert reply.status_code == 200

    def green() -> str | None:
        text = admin.get(f"/projects/{project['id']}/install-check").text
        return text if 'data-state="stored"' in text else None

    text = wait_for(green, timeout=15)
    assert text and "/welcome" in text and "hx-trigger" not in text
    health = admin.get(settings_url).text
    assert re.search(r'id="health-accepted">1<', health)


def test_csrf_is_required_on_every_form(site: LiveServer, admin: httpx.Client) -> None:
    project = create_project(admin, "CSRF target")
    for action in (
        "/projects",
        f"/projects/{project['id']}/settings",
        f"/projects/{project['id']}/clients",
        f"/projects/{project['id']}/delete",
        "/users",
        "/logout",
    ):
        reply = admin.post(action, data={"name": "x", "confirm": "CSRF target"})
        assert reply.status_code == 403, action
        assert "CSRF" in reply.text
        wrong = admin.post(action, data={"_csrf": "x" * 32, "name": "x"})
        assert wrong.status_code == 403, action
    assert admin.get(f"/projects/{project['id']}/settings").status_code == 200  # still exists


def test_login_failures_are_throttled(site: LiveServer, admin: httpx.Client) -> None:
    email = f"victim-{uuid.uuid4().hex[:6]}@gatrix.test"
    post_form(admin, "/users", "/users", email=email, password=PASSWORD)
    attacker = browser(site)
    statuses = [
        post_form(attacker, "/login", "/login", email=email, password="wrong-password").status_code
        for _ in range(6)
    ]
    assert statuses[:5] == [401] * 5 and statuses[5] == 429
    # even the right password is refused while throttled
    locked = post_form(attacker, "/login", "/login", email=email, password=PASSWORD)
    assert locked.status_code == 429 and "Too many failed logins" in locked.text


def test_isolation_matrix(site: LiveServer, admin: httpx.Client) -> None:
    a = create_project(admin, "Project A")
    b = create_project(admin, "Project B")
    email = f"viewer-{uuid.uuid4().hex[:6]}@gatrix.test"
    assert post_form(admin, "/users", "/users", email=email, password=PASSWORD).status_code == 200
    user_id = re.search(
        rf"{re.escape(email)}.*?/users/(\d+)/grants", admin.get("/users").text, re.S
    ).group(1)
    granted = post_form(
        admin, "/users", f"/users/{user_id}/grants", project_id=a["id"], role="viewer"
    )
    assert granted.status_code == 200
    viewer = login(site, email)
    projects = viewer.get("/projects").text
    assert "Project A" in projects and "Project B" not in projects
    # viewer of A: reads A's insights, nothing of B, no settings anywhere
    assert viewer.get(f"/insights/{a['id']}/metrics").status_code == 200
    for path in (
        f"/insights/{b['id']}/metrics",
        f"/insights/{b['id']}/live",
        f"/insights/{b['id']}/breakdown/pages",
    ):
        assert viewer.get(path).status_code == 403, path
    assert viewer.get(f"/projects/{b['id']}/settings").status_code == 404
    assert viewer.get(f"/projects/{b['id']}/install-check").status_code == 404
    assert viewer.get(f"/projects/{a['id']}/settings").status_code == 403
    token = csrf_of(viewer.get("/projects").text)
    assert viewer.post(f"/projects/{b['id']}/share-links", data={"_csrf": token}).status_code == 404
    assert (
        viewer.post(
            f"/projects/{a['id']}/delete", data={"_csrf": token, "confirm": "Project A"}
        ).status_code
        == 403
    )
    assert viewer.get("/users").status_code == 403
    # a write client cannot read insights; a revoked client can neither read nor write
    created = post_form(
        admin,
        f"/projects/{a['id']}/settings",
        f"/projects/{a['id']}/clients",
        type="write",
        name="site",
    )
    write_id = re.search(r'id="new-client-id">([^<]+)<', created.text).group(1)
    write_secret = re.search(r'id="new-client-secret">([^<]+)<', created.text).group(1)
    headers = {"openpanel-client-id": write_id, "openpanel-client-secret": write_secret}
    assert httpx.get(f"{site.url}/insights/{a['id']}/metrics", headers=headers).status_code == 403
    root = {"openpanel-client-id": a["client_id"], "openpanel-client-secret": a["client_secret"]}
    assert httpx.get(f"{site.url}/insights/{a['id']}/metrics", headers=root).status_code == 200
    assert httpx.get(f"{site.url}/insights/{b['id']}/metrics", headers=root).status_code == 403
    revoked = post_form(
        admin,
        f"/projects/{a['id']}/settings",
        f"/projects/{a['id']}/clients/{a['client_id']}/revoke",
    )
    assert revoked.status_code == 200
    assert httpx.get(f"{site.url}/insights/{a['id']}/metrics", headers=root).status_code == 401
    track = httpx.post(
        f"{site.url}/track", json={"type": "track", "payload": {"name": "x"}}, headers=root
    )
    assert track.status_code == 401
    # after logout the session cookie is worthless
    post_form(viewer, "/projects", "/logout")
    assert viewer.get(f"/insights/{a['id']}/metrics").status_code == 401


def test_share_links(site: LiveServer, admin: httpx.Client) -> None:
    project = create_project(admin, "Shared")
    settings_url = f"/projects/{project['id']}/settings"
    open_link = post_form(admin, settings_url, f"/projects/{project['id']}/share-links")
    token = re.search(r"/share/([A-Za-z0-9_-]{20,})", open_link.text).group(1)
    anonymous = browser(site)
    page = anonymous.get(f"/share/{token}")
    assert page.status_code == 200 and "Shared" in page.text and "Visitors" in page.text
    assert "Log out" not in page.text and "/settings" not in page.text  # read-only, no admin
    assert f'hx-get="/share/{token}/fragments/kpis' in page.text
    assert anonymous.get(f"/share/{token}/fragments/kpis").status_code == 200
    assert anonymous.get(f"/share/{token}/realtime").status_code == 200
    assert anonymous.get(f"/dashboard/{project['id']}").status_code in (302, 303, 307)
    assert anonymous.get(f"/projects/{project['id']}/settings").status_code in (302, 307)
    locked = post_form(
        admin, settings_url, f"/projects/{project['id']}/share-links", password="s3cret-pass"
    )
    locked_token = re.search(r'id="new-share">[^<]*/share/([^<]+)<', locked.text).group(1)
    assert anonymous.get(f"/share/{locked_token}").status_code == 401
    assert anonymous.get(f"/share/{locked_token}/fragments/kpis").status_code == 403
    wrong = post_form(
        anonymous, f"/share/{locked_token}", f"/share/{locked_token}", password="nope"
    )
    assert wrong.status_code == 401
    right = post_form(
        anonymous, f"/share/{locked_token}", f"/share/{locked_token}", password="s3cret-pass"
    )
    assert right.status_code == 200 and right.url.path == f"/share/{locked_token}"
    assert anonymous.get(f"/share/{locked_token}").status_code == 200
    # a locked link opened on a view comes back to that view once unlocked
    other = httpx.Client(base_url=site.url, follow_redirects=True)
    view = "range=7d&filter=countries%3Ais%3AKR&tab_pages=entry"
    form = other.get(f"/share/{locked_token}?{view}")
    assert (
        form.status_code == 401 and f'name="view" value="{view.replace("&", "&amp;")}"' in form.text
    )
    unlocked = post_form(
        other,
        f"/share/{locked_token}?{view}",
        f"/share/{locked_token}",
        password="s3cret-pass",
        view=view,
    )
    assert unlocked.status_code == 200 and unlocked.url.query.decode() == view
    post_form(admin, settings_url, f"/projects/{project['id']}/share-links/{token}/revoke")
    assert anonymous.get(f"/share/{token}").status_code == 404
    assert anonymous.get("/share/not-a-real-token").status_code == 404


def test_stored_xss_is_escaped(site: LiveServer, admin: httpx.Client, store: Any) -> None:
    evil = "<script>alert(1)</script>"
    project = create_project(admin, f"x{evil}", origins="evil.example")
    assert (
        evil not in project["html"] and "&lt;script&gt;alert(1)&lt;/script&gt;" in project["html"]
    )
    assert evil not in admin.get("/projects").text
    httpx.post(
        f"{site.url}/track",
        json={"type": "track", "payload": {"name": evil, "path": f"/{evil}"}},
        headers={
            "openpanel-client-id": project["client_id"],
            "openpanel-client-secret": project["client_secret"],
        },
    )

    def green() -> str | None:
        text = admin.get(f"/projects/{project['id']}/install-check").text
        return text if 'data-state="stored"' in text else None

    text = wait_for(green, timeout=15)
    assert text and evil not in text and "&lt;script&gt;" in text
    share = post_form(
        admin, f"/projects/{project['id']}/settings", f"/projects/{project['id']}/share-links"
    )
    token = re.search(r"/share/([A-Za-z0-9_-]{20,})", share.text).group(1)
    page = browser(site).get(f"/share/{token}").text
    assert evil not in page


def test_delete_project_removes_its_data(site: LiveServer, admin: httpx.Client, store: Any) -> None:
    project = create_project(admin, "Doomed")
    reply = httpx.post(
        f"{site.url}/track",
        json={"type": "track", "payload": {"name": "e"}},
        headers={
            "openpanel-client-id": project["client_id"],
            "openpanel-client-secret": project["client_secret"],
        },
    )
    assert reply.status_code == 200

    def stored() -> int:
        return store.query_rows(
            "SELECT count() FROM gatrix.events WHERE project_id = {p:String}", {"p": project["id"]}
        )[0][0]

    assert wait_for(lambda: stored() == 1, timeout=15)
    settings_url = f"/projects/{project['id']}/settings"
    refused = post_form(admin, settings_url, f"/projects/{project['id']}/delete", confirm="nope")
    assert refused.status_code == 400
    done = post_form(admin, settings_url, f"/projects/{project['id']}/delete", confirm="Doomed")
    assert done.status_code == 200 and done.url.path == "/projects"
    assert stored() == 0
    assert admin.get(settings_url).status_code == 404


def test_forms_redirect_after_post_so_a_refresh_changes_nothing(
    site: LiveServer, admin: httpx.Client
) -> None:
    token = csrf_of(admin.get("/projects").text)
    form = {"_csrf": token, "name": "Refresh Me", "origins": "*", "timezone": "UTC"}
    created = admin.post("/projects", data=form)
    assert created.status_code == 303  # Post/Redirect/Get: the browser lands on a GET
    landing = created.headers["location"]
    first = admin.get(landing)
    secret = re.search(r'id="new-client-secret">([^<]+)<', first.text).group(1)
    assert secret.startswith("sec_")
    # a refresh repeats the GET, not the POST: no second project, and the secret is gone
    again = admin.get(landing)
    assert again.status_code == 200 and secret not in again.text
    listed = admin.get("/projects").text
    assert listed.count(">Refresh Me<") == 1
    # the one-time result belongs to whoever submitted the form
    created = admin.post("/projects", data={**form, "name": "Mine Only"})
    stranger = browser(site)
    assert secret not in stranger.get(created.headers["location"]).text
    saved = admin.post(
        created.headers["location"].split("?")[0],
        data={**form, "name": "Mine Only", "kind": "website"},
    )
    assert saved.status_code == 303 and "Saved." in admin.get(saved.headers["location"]).text


def test_times_are_shown_in_the_projects_zone(site: LiveServer, admin: httpx.Client) -> None:
    project = create_project(admin, "Seoul Shop")  # Asia/Seoul, UTC+9 all year
    sent = send_page_view(site.url, project["client_id"], "https://shop.example.com/kr")
    assert sent.status_code == 200
    settings = f"/projects/{project['id']}/settings"
    assert wait_for(lambda: 'data-state="stored"' in admin.get(settings).text, timeout=20)
    page = admin.get(settings).text
    # the install check is green on the page's first render, not only after its first poll
    assert "Waiting for the first event" not in page
    shown = re.search(r'<time datetime="([^"]+)">([^<]+)</time>', page)
    assert shown, page
    local = datetime.fromisoformat(shown.group(1)).astimezone(ZoneInfo("Asia/Seoul"))
    assert shown.group(2) == f"{local:%b} {local.day}, {local:%H:%M}"  # not UTC, not ISO
    live = admin.get(f"/insights/{project['id']}/live").json()
    assert live["per_minute"][-1]["minute"].endswith("+09:00")
    assert live["recent"][0]["time"].endswith("+09:00")
    feed = admin.get(f"/dashboard/{project['id']}/fragments/realtime").text
    clock = re.search(r'<time datetime="([^"]+\+09:00)">(\d\d:\d\d:\d\d)</time>', feed)
    assert clock and clock.group(2) == clock.group(1)[11:19]


def test_backend_snippet_steers_away_from_a_root_secret(
    site: LiveServer, admin: httpx.Client
) -> None:
    from gatrix.meta.projects import create_project as create_in_db

    # a project made by the first start or the CLI has one client, and it is root
    made = create_in_db(site.services.engine, f"root only {uuid.uuid4().hex[:6]}", ["*"])
    settings = f"/projects/{made.project_id}/settings"
    assert "only client is a <strong>root</strong> client" in admin.get(settings).text
    added = post_form(admin, settings, f"/projects/{made.project_id}/clients", type="write")
    write_id = re.search(r'id="new-client-id">([^<]+)<', added.text).group(1)
    page = admin.get(settings).text
    assert "only client is a <strong>root</strong> client" not in page
    # the snippets now name the write client, whose secret can only send events
    assert (
        f"openpanel-client-id: {write_id}" in page
        and made.client_id not in page.split("From a backend")[1].split("</pre>")[0]
    )
