"""The settings page's snippets for other tools' senders, and the Umami website id form."""

from __future__ import annotations

import html as html_lib

import httpx

from ..conftest import CHROME_UA, LiveServer
from ..websession import post_form
from .test_admin import admin, create_project  # noqa: F401  (admin is a fixture)


def test_snippets_and_umami_website_id(site: LiveServer, admin: httpx.Client) -> None:  # noqa: F811
    project = create_project(admin, "Legacy", origins="https://shop.example.com")
    settings = f"/projects/{project['id']}/settings"
    page = html_lib.unescape(admin.get(settings).text)
    cid = project["client_id"]
    assert f'data-website-id="{cid}"' in page and f'data-host-url="{site.url}"' in page
    assert f"domain: 'shop.example.com', endpoint: '{site.url}/api/event'" in page
    assert f"writeKey: '{cid}:YOUR_CLIENT_SECRET'" in page and f"host: '{site.url}'" in page
    assert "dataPlaneUrl" in page

    saved = post_form(admin, settings, f"/projects/{project['id']}/umami", umami_website_id="old-1")
    assert saved.status_code == 200 and 'value="old-1"' in saved.text
    assert 'data-website-id="old-1"' in html_lib.unescape(saved.text)
    body = {"type": "event", "payload": {"website": "old-1", "url": "/"}}
    headers = {"origin": "https://shop.example.com", "user-agent": CHROME_UA}
    assert httpx.post(f"{site.url}/api/send", json=body, headers=headers).status_code == 200

    bad = post_form(admin, settings, f"/projects/{project['id']}/umami", umami_website_id="a b")
    assert bad.status_code == 400
    other = create_project(admin, "Other", origins="https://other.example.com")
    taken = post_form(
        admin,
        f"/projects/{other['id']}/settings",
        f"/projects/{other['id']}/umami",
        umami_website_id="old-1",
    )
    assert taken.status_code == 400 and "already answers" in taken.text
