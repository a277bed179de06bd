"""A logged-in administrator on a module's own `site` server: first-run setup, projects made
through the admin form, share links. Shared by the tests that drive pages over plain HTTP."""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx

from gatrix.meta.projects import create_client

from .conftest import LiveServer

PASSWORD = "correct horse battery"


def csrf_of(html: str) -> str:
    match = re.search(r'name="_csrf" value="([^"]+)"', html)
    assert match, "form without a CSRF token"
    return match.group(1)


def post_form(client: httpx.Client, page: str, action: str, **fields: str) -> httpx.Response:
    """Submit a form as a browser does: a success answers 303 (Post/Redirect/Get), which is
    followed; the page it leads to is returned (an error page is returned as it is)."""
    reply = client.post(action, data={"_csrf": csrf_of(client.get(page).text), **fields})
    if reply.status_code == 303:
        return client.get(reply.headers["location"])
    return reply


@dataclass
class SiteProject:
    id: str
    client_id: str  # write client, as the admin form creates it
    read_id: str
    read_secret: str
    share_token: str

    @property
    def read_headers(self) -> dict[str, str]:
        return {"openpanel-client-id": self.read_id, "openpanel-client-secret": self.read_secret}


def admin_session(site: LiveServer) -> httpx.Client:
    client = httpx.Client(base_url=site.url, timeout=30, follow_redirects=False)
    reply = post_form(client, "/setup", "/setup", email="admin@gatrix.test", password=PASSWORD)
    assert reply.status_code == 200 and reply.url.path == "/projects", reply.text
    return client


def new_project(
    site: LiveServer, admin: httpx.Client, name: str, timezone: str = "UTC"
) -> SiteProject:
    created = post_form(
        admin, "/projects", "/projects", name=name, origins="*", timezone=timezone, kind="website"
    )
    assert created.status_code == 200, created.text
    project_id = re.search(r'action="/projects/([^/"]+)/settings"', created.text).group(1)
    client_id = re.search(r'id="new-client-id">([^<]+)<', created.text).group(1)
    settings = f"/projects/{project_id}/settings"
    shared = post_form(admin, settings, f"/projects/{project_id}/share-links")
    token = re.search(r'id="new-share">[^<]*/share/([^<]+)<', shared.text).group(1)
    reader = create_client(site.services.engine, project_id, "read")
    return SiteProject(project_id, client_id, reader.client_id, reader.client_secret, token)
