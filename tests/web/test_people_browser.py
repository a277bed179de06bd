"""The People pages in Chromium: from the overview to the list, a search, a person with the
events their device sent before the login, and an erasure confirmed by typing the id; the
form's guards over plain HTTP; and share links that never show people."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from gatrix.clickhouse.store import Store
from gatrix.ingest.pipeline import ch_time
from gatrix.meta import audit

from ..conftest import LiveServer, needs_chromium
from ..factory import events
from .conftest import _csrf, swapped


def _seed(store: Store, project: str) -> None:
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    events(
        store,
        project,
        [
            {"at": at, "device_id": "laptop-1", "session_id": "pp1", "path": "/before-login"},
            {
                "at": at + timedelta(minutes=1),
                "device_id": "laptop-1",
                "profile_id": "user-ada",
                "session_id": "pp1",
                "path": "/after-login",
            },
            {
                "at": at + timedelta(minutes=3),
                "device_id": "phone-9",
                "profile_id": "user-bo",
                "session_id": "pp2",
                "path": "/bo",
            },
        ],
    )
    row = {
        "project_id": project,
        "profile_id": "user-ada",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": "ada@example.com",
        "properties": {"plan": "enterprise"},
        "updated_at": ch_time(int((at + timedelta(minutes=1)).timestamp() * 1000)),
    }
    store.insert_json_rows("profiles", [json.dumps(row).encode()], f"t-{uuid.uuid4()}")


@needs_chromium
def test_search_open_a_person_and_erase_them(
    page: Any, site: LiveServer, owner: dict[str, Any], store: Store
) -> None:
    project = owner["project_id"]
    _seed(store, project)
    page.goto(f"{site.url}/dashboard/{project}")
    page.click("a:text-is('People')")
    page.wait_for_url(re.compile(r"/people$"))
    assert page.locator("#people table a.person").count() == 2
    # on a phone the list keeps who, how much and when; the email moves under the name
    page.set_viewport_size({"width": 390, "height": 844})
    shown = page.evaluate(
        "[...document.querySelectorAll('table.people thead th')]"
        ".filter(th => th.offsetWidth > 0).map(th => th.textContent)"
    )
    assert shown == ["Person", "Events", "Last seen"]
    ada = page.locator("table.people tr:has-text('Ada Lovelace') td").first
    assert ada.bounding_box()["width"] >= 150 and "ada@example.com" in ada.inner_text()
    page.set_viewport_size({"width": 1280, "height": 800})
    page.fill("input[name=q]", "lovelace")
    page.click("#people button[type=submit]")
    swapped(page, r"/people\?q=lovelace")
    rows = page.locator("#people table a.person")
    assert rows.count() == 1 and "Ada Lovelace" in rows.first.inner_text()
    rows.first.click()
    page.wait_for_url(re.compile(r"/people/user-ada$"))
    assert page.inner_text("h1") == "Ada Lovelace"
    assert page.inner_text(".avatar.big") == "AL"
    timeline = page.inner_text("#timeline")
    assert "/after-login" in timeline and "/before-login" in timeline
    # a visit says when it began, how long it lasted and how many pages it saw
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d · 1 min · 2 page views", timeline)
    assert "enterprise" in page.inner_text("section[aria-label=Properties]")
    # a wrong confirmation erases nothing
    page.fill("input[name=confirm]", "user-bo")
    page.click("form.danger button")
    page.wait_for_load_state()
    assert "Nothing was erased" in page.inner_text("main")
    assert "/before-login" in page.inner_text("#timeline")
    page.fill("input[name=confirm]", "user-ada")
    page.click("form.danger button")
    page.wait_for_url(re.compile(r"/people$"))  # the one-time flash token is taken off
    assert "Erased user-ada" in page.inner_text("[role=status]")
    left = page.locator("#people a.person")
    assert left.count() == 1 and "user-bo" in left.inner_text()
    assert left.locator(".avatar").inner_text() == "UB"
    assert not page.errors
    assert page.goto(f"{site.url}/dashboard/{project}/people/user-ada").status == 404
    entries = audit.entries(site.services.engine, project)
    assert entries[0]["actor"] == "dash@gatrix.test" and entries[0]["subject"] == "user-ada"


def test_the_erase_form_needs_its_csrf_token_and_the_typed_id(
    site: LiveServer, owner: dict[str, Any], store: Store
) -> None:
    project = owner["project_id"]
    _seed(store, project)
    web: httpx.Client = owner["web"]
    url = f"/dashboard/{project}/people/person/erase?id=user-bo"
    assert web.post(url, data={"confirm": "user-bo"}).status_code == 403  # no CSRF token
    # the API's DELETE is for root clients; a logged-in admin is told where to erase
    api = web.delete(f"/insights/{project}/profiles/user-bo")
    assert api.status_code == 403 and api.json()["error"] == "client_not_root"
    assert "erase form" in api.json()["detail"]
    token = _csrf(web.get(f"/dashboard/{project}/people/user-bo").text)
    kept = web.post(url, data={"_csrf": token, "confirm": "USER-BO"})
    assert kept.status_code == 303 and "/people/user-bo?flash=" in kept.headers["location"]
    assert web.get(f"/dashboard/{project}/people/user-bo").status_code == 200
    gone = web.post(url, data={"_csrf": token, "confirm": "user-bo"})
    assert gone.status_code == 303 and gone.headers["location"].startswith(
        f"/dashboard/{project}/people?flash="
    )
    assert web.get(f"/dashboard/{project}/people/user-bo").status_code == 404
    # a bad page number is this page's own message, not a framework error
    # the by-query pages without their id: this site's error page, not a framework's JSON
    no_id = web.get(f"/dashboard/{project}/people/person")
    assert no_id.status_code == 400 and no_id.headers["content-type"].startswith("text/html")
    no_id = web.post(f"/dashboard/{project}/people/person/erase", data={"_csrf": token})
    assert no_id.status_code == 400 and no_id.headers["content-type"].startswith("text/html")
    for page_no in ("abc", "²", "٣"):  # characters str.isdigit() takes for digits too
        bad = web.get(f"/dashboard/{project}/people", params={"page": page_no})
        assert bad.status_code == 400 and "page must be a number" in bad.text
    assert "page_no" not in bad.text and bad.headers["content-type"].startswith("text/html")
    # an id a path segment cannot carry has its page and erase form by query
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    one = {"at": at, "device_id": "t42", "profile_id": "team/42", "session_id": "st42"}
    events(store, project, [{**one, "path": "/"}])
    odd = f"/dashboard/{project}/people/person?id=team%2F42"
    page = web.get(odd)
    assert page.status_code == 200 and "team/42" in page.text
    assert 'action="/dashboard/' in page.text and "person/erase?id=team%2F42" in page.text
    erased = web.post(
        f"/dashboard/{project}/people/person/erase?id=team%2F42",
        data={"_csrf": _csrf(page.text), "confirm": "team/42"},
    )
    assert erased.status_code == 303 and web.get(odd).status_code == 404
    # logged out: no people at all
    with httpx.Client(base_url=site.url) as stranger:
        assert stranger.get(f"/dashboard/{project}/people").status_code in (401, 302, 303)


def test_share_links_show_no_people(site: LiveServer, owner: dict[str, Any], store: Store) -> None:
    project = owner["project_id"]
    _seed(store, project)
    web: httpx.Client = owner["web"]
    settings = web.get(f"/projects/{project}/settings").text
    made = web.post(
        f"/projects/{project}/share-links", data={"_csrf": _csrf(settings), "password": ""}
    )
    shown = web.get(made.headers["location"]).text
    token = re.search(r'id="new-share">[^<]*/share/([^<"/\s]+)', shown).group(1)
    with httpx.Client(base_url=site.url) as visitor:
        overview = visitor.get(f"/share/{token}")
        assert overview.status_code == 200
        assert "/people" not in overview.text and ">People<" not in overview.text
        assert "/people" not in visitor.get(f"/share/{token}/realtime").text
        for path in ("people", "people/user-ada", "fragments/people"):
            reply = visitor.get(f"/share/{token}/{path}")
            assert reply.status_code == 404, path
            assert "ada@example.com" not in reply.text and "user-ada" not in reply.text
        assert visitor.get(f"/dashboard/{project}/people/user-ada").status_code in (401, 302, 303)
        assert visitor.get(f"/insights/{project}/profiles").status_code == 401


def test_only_a_web_address_avatar_becomes_a_link(owner: dict[str, Any], store: Store) -> None:
    project = owner["project_id"]
    web: httpx.Client = owner["web"]
    at = ch_time(int(datetime.now(UTC).timestamp() * 1000) - 60_000)
    for person, avatar in (
        ("av-js", "JavaScript:alert(document.cookie)"),
        ("av-web", "https://a.test/p.png"),
    ):
        row = {"project_id": project, "profile_id": person, "avatar": avatar, "updated_at": at}
        store.insert_json_rows("profiles", [json.dumps(row).encode()], f"t-{uuid.uuid4()}")
    hostile = web.get(f"/dashboard/{project}/people/av-js")
    assert hostile.status_code == 200 and "JavaScript:alert(document.cookie)" in hostile.text
    assert 'href="javascript' not in hostile.text.lower()
    safe = web.get(f"/dashboard/{project}/people/av-web").text
    assert 'href="https://a.test/p.png"' in safe
