"""The settings page's snippets for other tools' senders, and the Umami website id form."""

from __future__ import annotations

import html as html_lib
import re
import uuid

import httpx

from ..conftest import CHROME_UA, LiveServer
from ..websession import post_form
from .test_admin import PASSWORD, admin, create_project, login  # noqa: F401  (admin: fixture)


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


def test_one_projects_admin_cannot_take_another_projects_umami_or_plausible_traffic(
    site: LiveServer,
    admin: httpx.Client,  # noqa: F811
) -> None:
    mine = create_project(admin, "Mine", origins="https://mine.example.com")
    theirs = create_project(
        admin,
        "Theirs",
        origins="https://theirs.example.com:8443 *.wild.example.org https://bücher.example",
    )
    email = f"owner-{uuid.uuid4().hex[:6]}@gatrix.test"
    assert post_form(admin, "/users", "/users", email=email, password=PASSWORD).status_code == 200
    user_id = re.search(
        rf"{re.escape(email)}.*?/users/(\d+)/grants", admin.get("/users").text, re.S
    ).group(1)
    post_form(admin, "/users", f"/users/{user_id}/grants", project_id=mine["id"], role="admin")
    owner = login(site, email)
    settings = f"/projects/{mine['id']}/settings"

    def save(client: httpx.Client, origins: str) -> httpx.Response:
        """Mine's settings form, saved by `client` with these allowed origins."""
        fields = {"name": "Mine", "origins": origins, "timezone": "UTC", "kind": "website"}
        return post_form(client, settings, settings, **fields)

    # their client id is what their Umami trackers send: it cannot become my website id
    for website_id in (theirs["client_id"], theirs["client_id"].upper()):
        taken = post_form(
            owner, settings, f"/projects/{mine['id']}/umami", umami_website_id=website_id
        )
        assert taken.status_code == 400 and "already answers" in taken.text
    # their sites, in any spelling, under their wildcard or under a wider one of mine, cannot
    # become my allowed origins
    for origin in (
        "theirs.example.com",
        "http://www.theirs.example.com",
        "https://THEIRS.example.com.",
        "shop.wild.example.org",
        "wild.example.org",
        "*.example.org",
        "*.org",
        "xn--bcher-kva.example",
        "*.example",
    ):
        claimed = save(owner, f"https://mine.example.com {origin}")
        assert claimed.status_code == 400, origin
        assert "names a site of another project" in html_lib.unescape(claimed.text), origin
    # what is no origin at all is refused as such (text after a colon that is no port)
    for junk in ("theirs.example.com:x", "*.wild.example.org:", "theirs.example.com?x", "u@x.org"):
        refused = save(owner, junk)
        assert refused.status_code == 400 and "invalid origin" in refused.text, junk
    body = {"n": "pageview", "u": "https://theirs.example.com/x", "d": "theirs.example.com"}
    headers = {"origin": "https://theirs.example.com:8443", "user-agent": CHROME_UA}
    assert httpx.post(f"{site.url}/api/event", json=body, headers=headers).status_code == 202
    # my own new sites, and saving again with what I have, are fine
    saved = save(owner, "https://mine.example.com https://new.example.com")
    assert saved.status_code == 200 and "new.example.com" in saved.text
    # the administrator of both may list one site in both
    shared = save(admin, "https://mine.example.com https://theirs.example.com")
    assert shared.status_code == 200


def test_a_projects_own_client_id_answers_for_it_before_another_projects_website_id(
    site: LiveServer,
) -> None:
    from sqlmodel import Session

    from gatrix.meta.models import Project
    from gatrix.meta.projects import create_project as make
    from gatrix.meta.projects import load_umami_client

    engine = site.services.engine
    first = make(engine, f"first {uuid.uuid4().hex[:6]}")
    second = make(engine, f"second {uuid.uuid4().hex[:6]}")
    with Session(engine) as db:  # as a database written before the settings form checked it
        project = db.get(Project, first.project_id)
        assert project is not None
        project.umami_website_id = second.client_id
        db.commit()
    found = load_umami_client(engine, second.client_id)
    assert found is not None and found.project_id == second.project_id
