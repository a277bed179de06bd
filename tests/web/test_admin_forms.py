"""Every admin form answers its success with 303 See Other (Post/Redirect/Get), so the page a
browser lands on is a GET and a refresh of it changes nothing; and the page a new project
lands on leads to that project's dashboard."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from gatrix.meta import accounts

from ..conftest import LiveServer, make_settings
from ..websession import PASSWORD, admin_session, csrf_of


@pytest.fixture(scope="module")
def admin(site: LiveServer) -> httpx.Client:
    return admin_session(site)


def submit(
    client: httpx.Client, page: str, action: str, state: Callable[[], Any], **fields: str
) -> httpx.Response:
    """Post the form on `page`; it must answer 303, and loading (then reloading) the page it
    leads to must leave `state` as the POST left it. Returns the landing page."""
    token = csrf_of(client.get(page).text)
    reply = client.post(action, data={"_csrf": token, **fields})
    assert reply.status_code == 303, (action, reply.status_code, reply.text[:300])
    after_post = state()
    landing = client.get(reply.headers["location"])
    assert landing.status_code == 200, (action, reply.headers["location"])
    refreshed = client.get(reply.headers["location"])  # what a refresh sends
    assert refreshed.status_code == 200
    assert state() == after_post, action
    return landing


def test_every_admin_form_redirects_with_303(site: LiveServer, admin: httpx.Client) -> None:
    engine = site.services.engine

    def projects() -> list[str]:
        return sorted(p["id"] for p in accounts.visible_projects(engine, admin_user()))

    def admin_user() -> Any:
        return accounts.authenticate(engine, "admin@gatrix.test", PASSWORD)

    name = f"Forms {uuid.uuid4().hex[:6]}"
    before = projects()
    landing = submit(
        admin, "/projects", "/projects", projects, name=name, origins="*", timezone="UTC"
    )
    (project_id,) = set(projects()) - set(before)
    settings = f"/projects/{project_id}/settings"
    assert landing.url.path == settings

    def view() -> dict[str, Any]:
        found = accounts.project_admin_view(engine, project_id)
        assert found is not None
        return found

    submit(
        admin, settings, settings, view, name=name, origins="a.example", timezone="UTC", kind="app"
    )
    assert view()["origins"] == ["a.example"] and view()["kind"] == "app"

    clients = len(view()["clients"])
    landing = submit(
        admin, settings, f"/projects/{project_id}/clients", view, type="write", name="w"
    )
    assert len(view()["clients"]) == clients + 1 and "new-client-secret" in landing.text
    client_id = view()["clients"][-1]["id"]
    submit(admin, settings, f"/projects/{project_id}/clients/{client_id}/revoke", view)
    assert view()["clients"][-1]["revoked"] is True

    landing = submit(admin, settings, f"/projects/{project_id}/share-links", view)
    assert len(view()["share_links"]) == 1 and "new-share" in landing.text
    token = view()["share_links"][0]["token"]
    submit(admin, settings, f"/projects/{project_id}/share-links/{token}/revoke", view)
    assert view()["share_links"] == []

    def users() -> list[dict[str, Any]]:
        return accounts.list_users(engine)

    email = f"forms-{uuid.uuid4().hex[:6]}@gatrix.test"
    submit(admin, "/users", "/users", users, email=email, password=PASSWORD)
    (user,) = [u for u in users() if u["email"] == email]
    submit(
        admin, "/users", f"/users/{user['id']}/grants", users, project_id=project_id, role="viewer"
    )
    (user,) = [u for u in users() if u["email"] == email]
    assert user["grants"] == [{"project_id": project_id, "role": "viewer"}]
    submit(admin, "/users", f"/users/{user['id']}/grants/{project_id}/delete", users)
    assert [u["grants"] for u in users() if u["email"] == email] == [[]]

    # logging in and out, and unlocking a share link, answer 303 as well
    viewer = httpx.Client(base_url=site.url, timeout=30)
    landing = submit(viewer, "/login", "/login", users, email=email, password=PASSWORD)
    assert landing.url.path == "/projects"
    landing = submit(viewer, "/projects", "/logout", users)
    assert landing.url.path == "/login"
    locked = accounts.create_share_link(engine, project_id, "pass-word-1")
    landing = submit(viewer, f"/share/{locked}", f"/share/{locked}", view, password="pass-word-1")
    assert landing.url.path == f"/share/{locked}" and name in landing.text

    landing = submit(admin, settings, f"/projects/{project_id}/delete", projects, confirm=name)
    assert landing.url.path == "/projects" and project_id not in projects()


def test_setup_redirects_with_303(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> None:
    own = Path(tmp_path_factory.mktemp("setup-303"))
    live = LiveServer(make_settings(own, clickhouse_url=f"chdb://{data_dir / 'clickhouse'}"))
    live.start()
    try:
        client = httpx.Client(base_url=live.url, timeout=30)
        engine = live.services.engine
        landing = submit(
            client,
            "/setup",
            "/setup",
            lambda: len(accounts.list_users(engine)),
            email="first@gatrix.test",
            password=PASSWORD,
        )
        assert landing.url.path == "/projects" and len(accounts.list_users(engine)) == 1
    finally:
        live.stop()


def test_a_new_project_leads_to_its_dashboard(site: LiveServer, admin: httpx.Client) -> None:
    name = f"Dash {uuid.uuid4().hex[:6]}"
    token = csrf_of(admin.get("/projects").text)
    created = admin.post(
        "/projects", data={"_csrf": token, "name": name, "origins": "*", "timezone": "UTC"}
    )
    landing = admin.get(created.headers["location"])
    project_id = re.search(r'action="/projects/([^/"]+)/settings"', landing.text).group(1)
    link = re.search(
        r'<a class="button" id="open-dashboard" href="([^"]+)">Open dashboard</a>', landing.text
    )
    assert link and link.group(1) == f"/dashboard/{project_id}"
    dashboard = admin.get(link.group(1))
    assert dashboard.status_code == 200 and name in dashboard.text
    # the projects list leads there too, by name and by an explicit link
    listed = admin.get("/projects").text
    assert f'<a href="/dashboard/{project_id}">{name}</a>' in listed
    assert f'<a href="/dashboard/{project_id}">Open dashboard</a>' in listed
